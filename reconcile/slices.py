"""A day too large to hold whole, matched slice by slice of time in bounded memory.

The day's journal records are cut into slices of about `SLICE_RECORDS` records by the time of
their result (`at`; the edges come from one aggregate query per journal). One streaming pass over
the journals, the HIS ledger, the platform's ledger and the bills writes every record and row,
parsed, to a spill file, each to the one slice its time falls in (a row whose time cannot be read
is kept for the last pass). Each slice is then matched by the `Matcher` as it is. A record whose
every side came in its slice and agrees (nearly all of a day) is concluded there: counted in the
totals, its columns written to the slice's state file, and dropped. What is left (records that
disagree or lack a side, rows that matched nothing in their slice, duplicates) is kept, and one
last `Matcher` over the kept records and rows runs the exact joins again (a row and its record
parted by a slice edge meet there), the second chances and the outcomes, as a one-pass run does.
A concluded record comes back to the last pass, read from its slice's state file, only where a
kept row names it (a duplicate row) or may be attached to it by amount and time (a second
payment). The differences are made in the last pass only, in the one-pass order, so their IDs
and the reports are the same bytes as a one-pass run's (tests/reconcile/test_slices.py).

Peak memory is one slice's columns plus the kept records and rows, whatever the day's size.
"""

from __future__ import annotations

import datetime
import pickle
import tempfile
from array import array
from bisect import bisect_left, bisect_right
from itertools import compress, repeat
from operator import add, eq, gt, itemgetter, mul
from pathlib import Path
from concurrent.futures import ProcessPoolExecutor
from typing import IO, Callable, Iterable, Iterator

from reconcile.alipay_bill import read_alipay_bill
from reconcile.attribution import Attribution, OtherSink, OtherTrade
from reconcile.match import MatchResult, Matcher
from reconcile.model import FLAG_LATE, Channel, Columns, Entry, State, funds_key
from reconcile.ours import duplicate_seqs, iter_ours, time_histogram
from reconcile.outcome import PROBABLE_WINDOW_S
from reconcile.units import CONFLICT, DUP_OURS, EQ, MAIN_ROW, PROBABLE
from reconcile.wechat_bill import read_wechat_bill

# Records per slice: about 190 MiB of columns (docs/reconciliation.md §8). A day that fits in one
# slice is matched in one pass, as before: that is faster (nothing spilled; a third less CPU at a
# million), so the slice is as large as keeps the peak well under the 1 GiB goal.
SLICE_RECORDS = 1_500_000
BATCH = 4096  # rows per spilled batch (per slice and source: bounds the routing buffers)

OURS = ("_o_line", "_o_mkey", "_o_okey", "_o_fkey", "_o_at", "_o_dir", "_o_fen", "_o_state", "_o_chan", "_o_flags", "_o_origin", "_o_eff")
HIS = ("_h_line", "_h_eff", "_h_fen", "_h_state", "_h_origin")
CHAN = ("_c_line", "_c_eff", "_c_fen", "_c_state", "_c_origin", "_c_kind")
PLAT = ("_p_line", "_p_eff", "_p_fen", "_p_state", "_p_origin")
FIELDS = (("line", "_o_line"), ("msg_key", "_o_mkey"), ("order_key", "_o_okey"), ("funds", "_o_fkey"), ("direction", "_o_dir"),
          ("fen", "_o_fen"), ("state", "_o_state"), ("channel", "_o_chan"), ("at", "_o_at"), ("flags", "_o_flags"))
UNSETTLED = CONFLICT | DUP_OURS | PROBABLE | FLAG_LATE
PENDING = int(State.PENDING)
KEEP = bytes([1, 0]) + bytes(254)  # settled byte -> kept byte
NOT_PENDING = bytes(0 if b == PENDING else 1 for b in range(256))
SETTLED_FLAGS = bytes(0 if b & UNSETTLED else 1 for b in range(256))


def slice_edges(journals: Iterable[Path], day: datetime.date, tz: datetime.tzinfo, size: int) -> list[int]:
    """Epoch seconds cutting the day's records into slices of about `size` records (a slice holds
    edge[k-1] <= at < edge[k]); empty when the day fits in one slice."""
    counts: dict[int, int] = {}
    for journal in journals:
        for at, n in time_histogram(journal, day, tz).items():
            if at is not None:
                counts[at] = counts.get(at, 0) + n
    if sum(counts.values()) <= size:
        return []
    edges: list[int] = []
    running = 0
    for at in sorted(counts):
        if running >= size:
            edges.append(at)
            running = 0
        running += counts[at]
    return edges


class Spill:
    """Pickled batches in one temporary file, found again by slice."""

    def __init__(self, folder: Path, name: str) -> None:
        self._f: IO[bytes] = open(folder / name, "w+b")  # a worker may fill it (spill_bills): then only read here
        self._where: dict[int, list[int]] = {}

    def put(self, key: int, obj: object) -> None:
        self._f.seek(0, 2)
        self._where.setdefault(key, []).append(self._f.tell())
        pickle.dump(obj, self._f, pickle.HIGHEST_PROTOCOL)

    def get(self, key: int) -> Iterator:
        for offset in self._where.get(key, ()):
            self._f.seek(offset)
            yield pickle.load(self._f)

    def item(self, key: int, k: int) -> object:
        """The k-th object put under `key` alone."""
        self._f.seek(self._where[key][k])
        return pickle.load(self._f)

    def close(self) -> None:
        self._f.close()


def _is_stamp(at: object) -> bool:
    return type(at) is str and len(at) == 19 and at[4] == "-" and at[10] == " "  # "YYYY-MM-DD HH:MM:SS"


def _one_slice(batch: list[tuple], edges: list[str]) -> int | None:
    """The slice every row of the batch falls in, if there is one (else each row is routed alone)."""
    try:
        times = list(map(itemgetter(9), batch))
        first, last = min(times), max(times)
    except (TypeError, ValueError):
        return None
    # A text that is not a time sorts outside the others' range or makes them differ (""
    # first, "2026/..." after "2026-..."): then each row is routed alone. Routing never
    # changes a result, only where a row meets its record.
    if not (_is_stamp(first) and _is_stamp(last)):
        return None
    s = bisect_right(edges, first)
    return s if s == bisect_right(edges, last) else None


def spill_rows(batches: Iterable[list[tuple]], edges: list[str], spill: Spill) -> list[tuple]:
    """Each row to the slice of its time (text compares as time in this format); the rows whose time
    cannot be read are returned, for the last pass."""
    kept: list[tuple] = []
    buffers: dict[int, list[tuple]] = {}
    for batch in batches:
        whole = _one_slice(batch, edges)
        if whole is not None:  # the usual case (files are in time order): the batch as it is, at C speed
            buf = buffers.setdefault(whole, [])
            buf.extend(batch)
            if len(buf) >= BATCH:
                spill.put(whole, buf)
                buffers[whole] = []
            continue
        for t in batch:
            at = t[9]
            if not _is_stamp(at):
                kept.append(t)
                continue
            s = bisect_right(edges, at)
            buf = buffers.setdefault(s, [])
            buf.append(t)
            if len(buf) >= BATCH:
                spill.put(s, buf)
                buffers[s] = []
    for s, buf in buffers.items():
        if buf:
            spill.put(s, buf)
    return kept


class SlicedDay:
    """One day matched slice by slice; `run` returns what Matcher.finish returns for the whole day."""

    def __init__(self, folder: Path, edges: list[int], tz: datetime.tzinfo, labels: list[str], his_name: str,
                 platform_name: str | None, bill_names: list[str], make_final: Callable[[], Matcher], day_id: str) -> None:
        self.folder, self.edges, self.labels = folder, edges, labels
        self.edge_text = [datetime.datetime.fromtimestamp(e, tz).strftime("%Y-%m-%d %H:%M:%S") for e in edges]
        self.his_name, self.platform_name, self.bill_names = his_name, platform_name, bill_names
        self.origins = labels + [his_name] + ([platform_name] if platform_name else []) + bill_names
        self.columns = OURS + HIS + CHAN + (PLAT if platform_name else ())
        self.make_final, self.day_id = make_final, day_id
        self.journal = Spill(folder, "journal")
        self.his = Spill(folder, "his")
        self.platform = Spill(folder, "platform")
        self.bills = [Spill(folder, f"bill{k}") for k in range(len(bill_names))]
        self.states = Spill(folder, "states")
        self.dup_given: dict[str, set[int]] | None = None
        # What the last pass gets: the kept records' columns, where they are in the day, the kept rows.
        self.kept = {name: array(typecode) for name, typecode in _typecodes(self.columns).items()}
        self.kept_pos = array("q")
        self.rows: dict[str, list[tuple]] = {name: [] for name in [his_name] + ([platform_name] if platform_name else []) + bill_names}
        self.his_dup: list[tuple[int, Entry]] = []
        self.chan_dup: list[tuple[int, Entry]] = []
        self.c_ref: dict[int, str] = {}
        self.c_extra: dict[int, list[str]] = {}
        self.settled: dict[int, list[int]] = {}  # channel -> [records, collected, refunded, moved]
        self.others: list[OtherTrade] = []  # bill rows that are not the POS's, listed apart
        self._cache: dict[int, tuple[bytes, array, dict[str, array], dict[int, array]]] = {}
        self._in_final: set[int] = set()

    def close(self) -> None:
        for spill in [self.journal, self.his, self.platform, self.states, *self.bills]:
            spill.close()

    # -- spilling --------------------------------------------------------------------------------
    def spill_journals(self, journals: list[Path], day: datetime.date, tz: datetime.tzinfo) -> None:
        if len(journals) > 1:
            self.dup_given = {label: seqs for label, seqs in zip(self.labels, duplicate_seqs(journals, day, tz))}
        pos = 0
        edges = self.edges
        for j, journal in enumerate(journals):
            for cols in iter_ours(journal, day, tz):
                n = len(cols)
                fields = {f: getattr(cols, f) for f, _ in FIELDS}
                positions = array("q", range(pos, pos + n))
                first, last = bisect_right(edges, min(cols.at)), bisect_right(edges, max(cols.at))
                if first == last:
                    self.journal.put(first, (j, fields, positions))
                else:
                    which = [bisect_right(edges, a) for a in cols.at]
                    for s in range(first, last + 1):
                        mask = bytes(w == s for w in which)
                        if any(mask):
                            self.journal.put(s, (j, {f: array(v.typecode, compress(v, mask)) for f, v in fields.items()},
                                                 array("q", compress(positions, mask))))
                pos += n

    def spill_source(self, name: str, batches: Iterable[list[tuple]]) -> None:
        spill: Spill
        if name == self.his_name:
            spill = self.his
        elif name == self.platform_name:
            spill = self.platform
        else:
            spill = self.bills[self.bill_names.index(name)]
        self.rows[name].extend(spill_rows(batches, self.edge_text, spill))

    # -- matching --------------------------------------------------------------------------------
    def run(self) -> MatchResult:
        for s in range(len(self.edges) + 1):
            matcher, pos = self._match_slice(s)
            self._conclude(s, matcher, pos)
            del matcher
        return self._last_pass()

    def _matcher(self, final: bool) -> Matcher:
        m = self.make_final() if final else Matcher(self.day_id)
        for name in self.origins:  # the same origin numbers in every slice and the last pass
            m._origin(name)
        m._dup_given = self.dup_given
        return m

    def _match_slice(self, s: int) -> tuple[Matcher, array]:
        m = self._matcher(False)
        cols = [Columns.empty() for _ in self.labels]
        places = [array("q") for _ in self.labels]
        for j, fields, positions in self.journal.get(s):  # one piece at a time: never two copies of a slice
            for f, _ in FIELDS:
                getattr(cols[j], f).extend(fields[f])
            places[j].extend(positions)
            del fields
        pos = array("q")
        for j, label in enumerate(self.labels):
            m.add_ours(cols[j], label)
            pos.extend(places[j])
        del cols, places
        m.add_his(self.his.get(s), self.his_name)
        if self.platform_name:
            m.add_platform(self.platform.get(s), self.platform_name)
        for name, spill in zip(self.bill_names, self.bills):
            m.add_channel(spill.get(s), name)
        m._his_columns()
        m._chan_columns()
        if self.platform_name:
            m._plat_columns()
        m._effects()
        return m, pos

    def _conclude(self, s: int, m: Matcher, pos: array) -> None:
        """Conclude what the slice settles; keep the rest for the last pass."""
        n = len(m._o_line)
        plat = self.platform_name is not None
        p_line, p_eff, p_state = (m._p_line, m._p_eff, m._p_state) if plat else (m._o_line, m._o_eff, array("b", bytes(n)))
        # Every side has its row and says what ours says: Matched, whatever the last pass finds. As
        # byte masks and-ed as ints (C speed: a slice is a million records).
        masks = [bytes(map(eq, m._o_eff, m._h_eff)), bytes(map(eq, m._h_eff, m._c_eff)), bytes(map(eq, m._c_eff, p_eff)),
                 bytes(map(bool, m._h_line)), m._c_kind.tobytes().translate(EQ[MAIN_ROW]), bytes(map(bool, p_line)),
                 bytes(map(gt, m._o_fen, repeat(0))), p_state.tobytes().translate(NOT_PENDING), m._o_flags.tobytes().translate(SETTLED_FLAGS)]
        bits = -1
        for mask in masks:
            bits &= int.from_bytes(mask, "little")
        del masks
        settled = bytearray(bits.to_bytes(n, "little")) if n else bytearray()
        for i in {i for i, _ in m._his_dup} | {i for i, _ in m._chan_dup} | set(m._c_extra):
            settled[i] = 0
        self._count_settled(m, bytes(settled))
        state = {name: getattr(m, name) for name in self.columns}
        # Column by column: the last pass reads back only the columns it needs (self._column).
        self.states.put(s, (bytes(settled), pos))
        for name in self.columns:
            self.states.put(s, state[name])
        keep = bytes(settled).translate(KEEP)
        base = len(self.kept_pos)
        remap = {i: base + k for k, i in enumerate(compress(range(n), keep))}
        for name in self.columns:
            self.kept[name].extend(compress(state[name], keep))
        self.kept_pos.extend(compress(pos, keep))
        self.his_dup.extend((remap[i], e) for i, e in m._his_dup)
        self.chan_dup.extend((remap[i], e) for i, e in m._chan_dup)
        self.c_ref.update((remap[i], ref) for i, ref in m._c_ref.items() if i in remap)
        self.c_extra.update((remap[i], extra) for i, extra in m._c_extra.items())
        for e in m._his_left + m._plat_left + m._chan_left:
            self.rows[e.origin].append(tuple(e[:10]))

    def _head(self, s: int) -> tuple[bytes, array]:
        """A slice's settled mask and its records' positions in the day."""
        head: tuple[bytes, array] = self.states.item(s, 0)  # type: ignore[assignment]  # a state file holds (mask, positions) first
        return head

    def _column(self, s: int, name: str) -> array:
        return self.states.item(s, 1 + self.columns.index(name))  # type: ignore[return-value]  # then one array per column, in order

    def _count_settled(self, m: Matcher, settled: bytes) -> None:
        """The totals of the records concluded in a slice: every side the same (ours)."""
        n = len(settled)
        bits = int.from_bytes(settled, "little")
        moved = int.from_bytes(bytes(map(bool, m._o_eff)), "little")
        chan, dirs = m._o_chan.tobytes(), m._o_dir.tobytes()
        for code in set(chan):
            mine = bits & int.from_bytes(chan.translate(EQ[code]), "little")
            if not mine:
                continue
            acc = self.settled.setdefault(code, [0, 0, 0, 0])
            acc[0] += mine.bit_count()
            acc[3] += (mine & moved).bit_count()
            for d, k in ((1, 1), (-1, 2)):
                part = mine & int.from_bytes(dirs.translate(EQ[d & 0xFF]), "little")
                if part:
                    acc[k] += abs(sum(compress(m._o_eff, part.to_bytes(n, "little"))))

    def _slice_index(self, s: int) -> tuple[bytes, array, dict[str, array], dict[int, array]]:
        """What finding a record by amount and time needs of a slice (the two most recent kept:
        bill trades come in time order)."""
        got = self._cache.get(s)
        if got is None:
            settled, pos = self._head(s)
            got = self._cache[s] = (settled, pos, {name: self._column(s, name) for name in ("_o_fen", "_o_chan", "_o_dir", "_o_at")}, {})
            while len(self._cache) > 2:
                del self._cache[next(iter(self._cache))]
        return got

    def _records(self, s: int, pos: array, wanted: list[int]) -> list[dict[str, object]]:
        """Whole records of a slice, read back one column at a time."""
        out: list[dict[str, object]] = [{"_o_pos": pos[i]} for i in wanted]
        for name in self.columns:
            column = self._column(s, name)
            for values, i in zip(out, wanted):
                values[name] = column[i]
            del column
        return out

    def _settle_back(self, values: dict[str, object]) -> None:
        """A concluded record taken back into the last pass: no longer counted with its slice."""
        acc, oe = self.settled[int(values["_o_chan"])], int(values["_o_eff"])  # type: ignore[call-overload]  # _o_* fields are ints
        acc[0] -= 1
        if oe:
            acc[1 if oe > 0 else 2] -= abs(oe)
            acc[3] -= 1

    def _ghosts_by_key(self) -> list[dict[str, object]]:
        """Concluded records a kept row names by msg_id or channel id: the row is their duplicate."""
        msg = {hash(t[2]) for t in self.rows[self.his_name] if t[2]}
        funds = {funds_key(t[7], t[3]) for name in self.bill_names + ([self.platform_name] if self.platform_name else [])
                 for t in self.rows[name]} - {0}
        ghosts: list[dict[str, object]] = []
        if not msg and not funds:
            return ghosts
        for s in range(len(self.edges) + 1):
            settled, pos = self._head(s)
            named = map(add, map(msg.__contains__, self._column(s, "_o_mkey")), map(funds.__contains__, self._column(s, "_o_fkey")))
            wanted = [i for i in compress(range(len(settled)), named) if settled[i]]
            for values in self._records(s, pos, wanted) if wanted else ():
                self._settle_back(values)
                ghosts.append(values)
        return ghosts

    def find_paid(self, channel: int, direction: int, fen: int, when: int) -> tuple[int, int, dict[str, object]] | None:
        """The concluded record closest in time to a bill trade of this channel and amount, within
        the probable-match window: (distance, position in the day, its columns), or None."""
        lo, hi = when - PROBABLE_WINDOW_S, when + PROBABLE_WINDOW_S
        key = fen * 8 + channel * 2 + (direction > 0)
        best: tuple[int, int, int, int] | None = None
        for s in range(bisect_right(self.edges, lo), bisect_right(self.edges, hi) + 1):
            settled, pos, state, by_key = self._slice_index(s)
            timed = by_key.get(key)
            if timed is None:
                amount = map(add, map(mul, state["_o_fen"], repeat(8)), map(add, map(mul, state["_o_chan"], repeat(2)), map(gt, state["_o_dir"], repeat(0))))
                at = state["_o_at"]
                order = sorted((at[i], pos[i], i) for i in compress(range(len(settled)), map(key.__eq__, amount)) if settled[i])
                timed = by_key[key] = array("q", [v for item in order for v in item])
            ats = timed[0::3]
            for k in range(bisect_left(ats, lo), bisect_right(ats, hi)):
                cand = (abs(ats[k] - when), timed[3 * k + 1], s, timed[3 * k + 2])
                if cand[1] not in self._in_final and (best is None or cand < best):
                    best = cand
        if best is None:
            return None
        dist, p, s, i = best
        return dist, p, self._records(s, self._slice_index(s)[1], [i])[0]

    def _last_pass(self) -> MatchResult:
        ghosts = self._ghosts_by_key()
        columns = {name: array(self.kept[name].typecode, self.kept[name]) for name in self.columns}
        pos = array("q", self.kept_pos)
        for values in ghosts:
            for name in self.columns:
                columns[name].append(values[name])  # type: ignore[arg-type]  # a ghost holds values of these same columns
            pos.append(values["_o_pos"])  # type: ignore[arg-type]  # an int position in the day
        self.kept = {}
        order = sorted(range(len(pos)), key=pos.__getitem__)
        new = {old: k for k, old in enumerate(order)}
        columns = {name: array(col.typecode, [col[k] for k in order]) for name, col in columns.items()}
        pos = array("q", [pos[k] for k in order])
        self._in_final = set(pos)

        m = self._matcher(True)
        origin = columns["_o_origin"]
        for j, label in enumerate(self.labels):  # in the day's order, journal by journal
            first, end = bisect_left(origin, j), bisect_right(origin, j)
            cols = Columns.empty()
            for f, name in FIELDS:
                getattr(cols, f).extend(columns[name][first:end])
            m.add_ours(cols, label)
        m._freeze()
        for name, col in columns.items():
            setattr(m, name, col)
        m._o_pos = pos
        m._has_platform = self.platform_name is not None
        m._settled = self.settled
        m._his_dup = [(new[i], e) for i, e in self.his_dup]
        m._chan_dup = [(new[i], e) for i, e in self.chan_dup]
        m._c_ref = {new[i]: ref for i, ref in self.c_ref.items()}
        m._c_extra = {new[i]: extra for i, extra in self.c_extra.items()}
        m._ghost_paid = self.find_paid
        m.add_others(self.others)
        m.add_his([sorted(self.rows[self.his_name])], self.his_name)
        if self.platform_name:
            m.add_platform([sorted(self.rows[self.platform_name])], self.platform_name)
        for name in self.bill_names:
            m.add_channel([sorted(self.rows[name])], name)
        self.rows = {}
        return m.finish()


def _typecodes(names: tuple[str, ...]) -> dict[str, str]:
    probe = Matcher("0")
    probe._his_columns()
    probe._chan_columns()
    probe._plat_columns()
    probe._o_eff = array("q")
    return {name: getattr(probe, name).typecode for name in names}


def spill_bills(folder: str, edges: list[str], bills: list[tuple[int, str]], attribution: Attribution
                ) -> list[tuple[dict[int, list[int]], list[tuple], list[OtherTrade]]]:
    """Parse each bill and spill its rows by slice into `folder`/bill<k> (in a worker process for a
    large day: SlicedDay then reads the files). Per bill: where each slice's batches are, the rows
    kept for the last pass, the rows that are not the POS's."""
    out = []
    for k, (channel, path) in enumerate(bills):
        spill = Spill(Path(folder), f"bill{k}")
        try:
            sink = OtherSink(Path(path).name, attribution)
            reader = read_wechat_bill if channel == Channel.WECHAT else read_alipay_bill
            kept = spill_rows(reader(path, sink), edges, spill)
        finally:
            spill.close()
        out.append((spill._where, kept, sink.trades))
    return out


def match_sliced(folder: Path, edges: list[int], *, day: datetime.date, tz: datetime.tzinfo, journals: list[Path], labels: list[str],
                 his: tuple[str, Iterable[list[tuple]]], platform: tuple[str, Iterable[list[tuple]]] | None,
                 bills: list[tuple[Channel, Path]], attribution: Attribution, make_final: Callable[[], Matcher], jobs: int = 1) -> MatchResult:
    """Spill every source, match slice by slice, then the last pass (see the module's docstring).
    With jobs=2 a worker parses and spills the bills while this process reads the journals, the
    HIS ledger and the platform's ledger. The temporary files live in `folder`."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=".reconcile-slices-") as tmp:
        sliced = SlicedDay(Path(tmp), edges, tz, labels, his[0], platform[0] if platform else None, [p.name for _, p in bills],
                           make_final, day.strftime("%Y%m%d"))
        work = (tmp, sliced.edge_text, [(int(c), str(p)) for c, p in bills], attribution)
        try:
            if jobs >= 2 and bills:
                with ProcessPoolExecutor(max_workers=1) as pool:
                    worker = pool.submit(spill_bills, *work)
                    try:
                        _spill_ours(sliced, journals, day, tz, his, platform)
                    except BaseException:
                        worker.cancel()
                        raise
                    spilled = worker.result()
            else:
                _spill_ours(sliced, journals, day, tz, his, platform)
                spilled = spill_bills(*work)
            for k, (where, kept, trades) in enumerate(spilled):
                sliced.bills[k]._where = where
                sliced.rows[sliced.bill_names[k]].extend(kept)
                sliced.others.extend(trades)
            return sliced.run()
        finally:
            sliced.close()


def _spill_ours(sliced: SlicedDay, journals: list[Path], day: datetime.date, tz: datetime.tzinfo, his: tuple[str, Iterable[list[tuple]]],
                platform: tuple[str, Iterable[list[tuple]]] | None) -> None:
    sliced.spill_journals(journals, day, tz)
    sliced.spill_source(*his)
    if platform:
        sliced.spill_source(*platform)
