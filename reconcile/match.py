"""The matcher: HIS <-> ours by instruction (business), ours <-> channel by channel id (funds).

Built for millions of records per source in linear time and about 120 bytes a record: our
journal's records become columns (`array`s of numbers; IDs as 8-byte keys, model.funds_key), and
the HIS ledger and the bills *stream* against them. There is no index: an input mostly in the
order of our journals (as exports and bills are: by time) finds its record a few places past a
cursor (`array.index` over a short stretch, at C speed), and the rows that do not wait, up to
WAITING of them, for one pass over all the keys (`compress` with a set's `__contains__`, also C).
A streamed row that matches writes a few numbers into the columns and is dropped; only rows that
match nothing are kept. The IDs of the few records a difference shows are read back at the end
(`texts`). Pure: no files, no clock.

Keys. Business: the HIS row's msg_id (a ledger without msg_ids is matched by order number,
direction and amount instead). Funds: the channel's transaction id for a collection, its refund
id for a refund; Alipay names a refund by its out_request_no (our results carry it as pay_order_no). Several
partial refunds of one trade share a key and are told apart by amount. A payment and its reversal
are one transaction on the channel side. What matches nothing gets a second chance in
reconcile.outcome, which also turns every transaction into an outcome.

Accounting. Every record of every source ends in exactly one outcome, matched or a difference,
so per side: sum of effects over all outcomes == that side's total (tests hold us to it).
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass
from itertools import compress
from operator import mul
from typing import Callable, Iterable

from reconcile.attribution import OtherTrade
from reconcile.model import FLAG_ECHO, FLAG_LATE, REFUND_KEY_BITS, Carried, Channel, Columns, Entry, State, funds_key
from reconcile.outcome import ChannelTotals, Conclusions, MatchResult, SideTotals
from reconcile.units import CONFLICT, DUP_OURS, EQ, MAIN_ROW, MOVED, REVERSAL, REVERSAL_ROW, zeros

__all__ = ["ChannelSide", "ChannelTotals", "MatchResult", "Matcher", "SideTotals"]

# How far past a cursor a streamed row's record is looked for (C speed: array.index), and how many
# rows that found nothing there wait for one pass over all the records (bounds the memory of an
# input in another order: it costs a pass per this many rows instead).
NEAR = 64
WAITING = 1 << 16
ALIPAY = int(Channel.ALIPAY)
NOT_LATE = bytes(0 if b & FLAG_LATE else 1 for b in range(256))


@dataclass
class ChannelSide:
    """The funds join done in another process: what add_channel left in its Matcher."""

    origins: list[str]
    journal_digest: bytes  # which journal records, in which order, the worker joined against
    kind: array
    line: array
    fen: array
    state: array
    eff: array
    origin: array
    channel: array  # the journal records' channels, completed from the bills
    left: list[Entry]
    dup: list[tuple[int, Entry]]
    refs: dict[int, str]
    extra: dict[int, list[str]]
    others: list[OtherTrade]


class Matcher(Conclusions):
    """add_ours (all journals) first, then add_his and add_channel in any order, then finish."""

    def __init__(self, day_id: str, *, order_of: Callable[[str], str] | None = None, format_time: Callable[[object], str] = str,
                 epoch_of: Callable[[object], int | None] = lambda at: at if type(at) is int else None,
                 texts: Callable[[str, list[int]], dict[int, tuple[str, str, str]]] | None = None,
                 carried: Iterable[Carried] = ()) -> None:
        self.day_id = day_id  # "20261122": prefix of every difference id
        self._order_of = order_of  # channel merchant order number -> HIS order number, where they relate
        self._fmt_time = format_time
        self._epoch_of = epoch_of  # a record's `at` (text or epoch) -> epoch seconds, None if unknown
        self._texts = texts  # (journal, seqs) -> {seq: (order_no, msg_id, pay_order_no)}: IDs of the few records shown
        # What HIS and the bills said on earlier days about instructions accepted then, finished later.
        self._carried: dict[int, dict[str, Carried]] = {}
        for c in carried:
            self._carried.setdefault(hash(c.msg_id), {})[c.side] = c
        self._carry_out: list[Carried] = []
        self._origins: list[str] = []
        self._spans: list[tuple[int, int, int]] = []  # (origin, first, end) of each journal's records
        self._kept_texts: dict[int, dict[int, tuple[str, str, str]]] = {}  # origin -> texts the columns kept
        self._o_mkey = array("q")  # hash(msg_id)
        self._o_okey = array("q")  # hash(order_no)
        self._o_fkey = array("q")  # model.funds_key
        self._o_at = array("q")
        self._o_dir = array("b")
        self._o_fen = array("q")
        self._o_state = array("b")
        self._o_chan = array("b")
        self._o_flags = array("b")
        self._o_line = array("q")
        self._o_origin = array("b")
        self._frozen = False
        self._his_left: list[Entry] = []
        self._chan_left: list[Entry] = []
        self._his_dup: list[tuple[int, Entry]] = []
        self._chan_dup: list[tuple[int, Entry]] = []
        self._c_ref: dict[int, str] = {}
        self._c_extra: dict[int, list[str]] = {}  # more bill rows of a transaction: reversals, reversed attempts
        self._others: list[OtherTrade] = []  # bill rows that are not the POS's (reconcile.attribution)
        self._plat_left: list[Entry] = []  # platform ledger rows no journal record took
        self._has_platform = False
        # A day matched slice by slice (reconcile.slices) sets these on its slices and its last pass:
        self._dup_given: dict[str, set[int]] | None = None  # journal -> seqs of records duplicating an earlier journal's
        self._settled: dict[int, list[int]] = {}  # channel -> [records, collected, refunded, moved] concluded in their slices
        self._o_pos: array | None = None  # each record's index in the whole day's order (ties between candidates)
        self._adopted: dict[int, int] = {}  # position in the day -> index, of the records _ghost_paid gave
        self._ghost_paid: Callable[[int, int, int, int], tuple[int, int, dict[str, object]] | None] | None = None

    # -- loading ---------------------------------------------------------------------------------
    def _origin(self, name: str) -> int:
        if name not in self._origins:
            if len(self._origins) >= 127:
                raise ValueError("too many input files")
            self._origins.append(name)
        return self._origins.index(name)

    def add_ours(self, cols: Columns, origin: str) -> None:
        """One journal's records (reconcile.ours.read_ours, or Columns.from_rows in tests); the matcher takes
        the columns over (they are not copied)."""
        if self._frozen:
            raise RuntimeError("add every journal before the HIS ledger and the bills")
        oi = self._origin(origin)
        start = len(self._o_line)
        for mine, theirs in (("_o_line", cols.line), ("_o_mkey", cols.msg_key), ("_o_okey", cols.order_key), ("_o_fkey", cols.funds),
                             ("_o_dir", cols.direction), ("_o_fen", cols.fen), ("_o_chan", cols.channel), ("_o_at", cols.at),
                             ("_o_flags", cols.flags)):
            if start:
                getattr(self, mine).extend(theirs)
            else:  # the first journal: its columns are taken as they are (no copy: half the peak)
                setattr(self, mine, theirs)
        state = array("b", cols.state)
        flags = cols.flags.tobytes()
        k = flags.find(FLAG_ECHO)
        while k >= 0:  # a replayed result moved no money of its own
            state[k] = State.NOT_MOVED
            k = flags.find(FLAG_ECHO, k + 1)
        self._o_state.extend(state)
        self._o_origin.extend(array("b", [oi]) * (len(self._o_line) - start))
        self._spans.append((oi, start, len(self._o_line)))
        if cols.texts is not None:
            self._kept_texts.setdefault(oi, {}).update(cols.texts)

    def _freeze(self) -> None:
        """No more journals. Each side's columns are made when that side first needs them: the
        worker that joins the bills never holds the HIS side, the main process never holds a
        channel side of its own when the worker's is adopted."""
        if self._frozen:
            return
        self._frozen = True
        if len(self._o_mkey) == len(self._o_line):
            self._flag_duplicates()

    def _his_columns(self) -> None:
        if not hasattr(self, "_h_line"):
            n = len(self._o_line)
            self._h_line = zeros("i", n)
            self._h_eff, self._h_fen = zeros("q", n), zeros("q", n)
            self._h_state, self._h_origin = zeros("b", n), zeros("b", n)

    def _chan_columns(self) -> None:
        if not hasattr(self, "_c_line"):
            n = len(self._o_line)
            self._c_line = zeros("i", n)
            self._c_eff, self._c_fen = zeros("q", n), zeros("q", n)
            self._c_state, self._c_origin, self._c_kind = zeros("b", n), zeros("b", n), zeros("b", n)

    def _plat_columns(self) -> None:
        if not hasattr(self, "_p_line"):
            n = len(self._o_line)
            self._p_line = zeros("i", n)
            self._p_eff, self._p_fen = zeros("q", n), zeros("q", n)
            self._p_state, self._p_origin = zeros("b", n), zeros("b", n)

    def _effects(self) -> None:
        """Our side's signed effects (for the outcomes and the totals); 0 for late records (their
        result belongs to a later day)."""
        if not hasattr(self, "_o_eff"):
            moved = self._o_state.tobytes().translate(EQ[MOVED])  # 1 where the money moved
            today = self._o_flags.tobytes().translate(NOT_LATE)
            self._o_eff = array("q", map(mul, map(mul, map(mul, self._o_dir, self._o_fen), moved), today))

    def _journal_digest(self) -> bytes:
        """Which journal records, in which order: what a worker's channel side is only valid for."""
        spans = repr([(self._origins[oi], first, end) for oi, first, end in self._spans]).encode()
        return hashlib.blake2b(self._o_line.tobytes() + spans, digest_size=16).digest()

    def _flag_duplicates(self) -> None:
        """A msg_id in two journals: its record in the later journal is a duplicate. One journal
        cannot hold a msg_id twice (UNIQUE), so only keys shared across journals are looked for,
        each journal's keys against the earlier ones', at C speed."""
        if self._dup_given is not None:  # found for the whole day (reconcile.ours.duplicate_seqs)
            for oi, first, end in self._spans:
                seqs = self._dup_given.get(self._origins[oi])
                for i in compress(range(first, end), map(seqs.__contains__, self._o_line[first:end])) if seqs else ():
                    self._o_flags[i] |= DUP_OURS
            return
        keys = self._o_mkey
        for j, (_, first, end) in enumerate(self._spans[1:], 1):
            mine = set(keys[first:end])
            earlier = self._spans[0][1], self._spans[j - 1][2]
            shared = {keys[i] for i in compress(range(*earlier), map(mine.__contains__, keys[earlier[0]:earlier[1]]))}
            del mine
            if shared:
                for i in compress(range(first, end), map(shared.__contains__, keys[first:end])):
                    self._o_flags[i] |= DUP_OURS

    def _find(self, keys: array, wanted: set[int]) -> dict[int, list[int]]:
        """Every record whose key is in `wanted`, in order: one pass over the keys at C speed, in
        place of an index (a dict of millions of keys costs a hundred bytes each)."""
        found: dict[int, list[int]] = {}
        if wanted:
            for i in compress(range(len(keys)), map(wanted.__contains__, keys)):
                found.setdefault(keys[i], []).append(i)
        return found

    def _nearby(self, keys: array, key: int, cursors: list[int], accept: Callable[[int], bool]) -> tuple[int, int] | None:
        """A record with `key` a little past one of the cursors (an input mostly in the order of our
        journals finds almost every record there): (cursor, record), or None."""
        for c, (p, (_, _, end)) in enumerate(zip(cursors, self._spans)):
            stop = min(p + NEAR, end)
            while p < stop:
                try:
                    i = keys.index(key, p, stop)
                except ValueError:
                    break
                if accept(i):
                    return c, i
                p = i + 1
        return None

    def add_his(self, batches: Iterable[list[tuple]], origin: str) -> None:
        self._freeze()
        self._his_columns()
        oi = self._origin(origin)
        keys, flags, index = self._o_mkey, self._o_flags, self._o_mkey.index
        h_line, h_eff, h_fen, h_state, h_origin, o_dir, o_okey = self._h_line, self._h_eff, self._h_fen, self._h_state, self._h_origin, self._o_dir, self._o_okey
        cursors = [first for _, first, _ in self._spans]
        single = len(cursors) == 1
        p, end = (self._spans[0][1], self._spans[0][2]) if single else (0, 0)
        waiting: list[tuple] = []
        free = lambda i: not flags[i] & DUP_OURS  # noqa: E731 (the first journal's record of a msg_id)
        for batch in batches:
            for t in batch:
                msg_id = t[2]
                if not msg_id:  # no msg_id: matched by order number later
                    self._his_left.append(Entry(*t, 0, origin))
                    continue
                key = hash(msg_id)
                if single:  # the common case, inline: the next record, or one a little further
                    if p < end and keys[p] == key:
                        i = p
                    else:
                        try:
                            i = index(key, p, min(p + NEAR, end))
                        except ValueError:
                            i = -1
                else:
                    hit = self._nearby(keys, key, cursors, free)
                    i = -1 if hit is None else hit[1]
                    if hit is not None:
                        cursors[hit[0]] = i + 1
                if i < 0:
                    waiting.append(t)
                    if len(waiting) == WAITING:
                        self._his_waiting(waiting, oi, origin)
                        waiting = []
                    continue
                p = i + 1
                if h_line[i]:
                    self._his_dup.append((i, Entry(*t, 0, origin)))
                    continue
                line, order_no, _msg, d, fen, state = t[:6]
                h_line[i] = line
                h_fen[i] = fen
                h_state[i] = state
                h_origin[i] = oi
                h_eff[i] = d * fen if state == MOVED else 0
                if d != o_dir[i] or hash(order_no) != o_okey[i]:
                    flags[i] |= CONFLICT
        self._his_waiting(waiting, oi, origin)

    def _his_waiting(self, waiting: list[tuple], oi: int, origin: str) -> None:
        found = self._find(self._o_mkey, {hash(t[2]) for t in waiting})
        flags = self._o_flags
        for t in waiting:
            i = next((i for i in found.get(hash(t[2]), ()) if not flags[i] & DUP_OURS), None)
            if i is None:
                self._his_left.append(Entry(*t, 0, origin))  # a msg_id none of our journals has
            else:
                self._his_row(i, t, oi, origin)

    def _his_row(self, i: int, t: tuple, oi: int, origin: str) -> None:
        if self._h_line[i]:
            self._his_dup.append((i, Entry(*t, 0, origin)))
            return
        line, order_no, _msg, d, fen, state = t[:6]
        self._h_line[i] = line
        self._h_fen[i] = fen
        self._h_state[i] = state
        self._h_origin[i] = oi
        self._h_eff[i] = d * fen if state == MOVED else 0
        if d != self._o_dir[i] or hash(order_no) != self._o_okey[i]:
            self._o_flags[i] |= CONFLICT

    def _o_origin_names(self) -> list[str]:
        """The journals added, one name each."""
        return [self._origins[k] for k in set(self._o_origin.tobytes())]

    def add_channel(self, batches: Iterable[list[tuple]], origin: str) -> None:
        self._freeze()
        self._chan_columns()
        oi = self._origin(origin)
        c_kind, o_fen, o_chan, o_flags, index = self._c_kind, self._o_fen, self._o_chan, self._o_flags, self._o_fkey.index
        c_line, c_fen, c_state, c_origin, c_eff = self._c_line, self._c_fen, self._c_state, self._c_origin, self._c_eff
        cursors: dict[int, list[int]] = {}  # per channel: one cursor per journal
        spans = self._spans
        waiting: list[tuple] = []
        for batch in batches:
            for t in batch:
                line, _otn, _m, d, fen, state, chan, pay, ref, _at = t
                key = hash(pay)
                if d < 0 and key:
                    key ^= REFUND_KEY_BITS
                i = -1
                if key and state != REVERSAL:
                    at = cursors.get(chan)
                    if at is None:
                        at = cursors[chan] = [first for _, first, _ in spans]
                    for c, p in enumerate(at):  # usually one journal
                        stop = min(p + NEAR, spans[c][2])
                        while p < stop:
                            try:
                                i = index(key, p, stop)
                            except ValueError:
                                i = -1
                                break
                            # (a msg_id's copy in a later journal takes a row only if the original cannot: _pick)
                            if not c_kind[i] and o_fen[i] == fen and not o_flags[i] & DUP_OURS:
                                break
                            p, i = i + 1, -1
                        if i >= 0:
                            at[c] = i + 1
                            break
                if i < 0:
                    waiting.append(t)
                    if len(waiting) == WAITING:
                        self._bill_waiting(waiting, oi, origin)
                        waiting = []
                    continue
                if d < 0 and chan == ALIPAY and ref:
                    self._c_ref[i] = ref  # several refunds of a trade share its key: told apart by request number
                c_kind[i] = MAIN_ROW
                c_line[i] = line
                c_fen[i] = fen
                c_state[i] = state
                c_origin[i] = oi
                c_eff[i] = d * fen if state == MOVED else 0
                if not o_chan[i]:
                    o_chan[i] = chan
        self._bill_waiting(waiting, oi, origin)

    def _bill_waiting(self, waiting: list[tuple], oi: int, origin: str) -> None:
        found = self._find(self._o_fkey, {k for k in (funds_key(t[7], t[3]) for t in waiting) if k})
        for t in waiting:
            v = found.get(funds_key(t[7], t[3]))
            if not v:
                self._chan_left.append(Entry(*t, 0, origin))
                continue
            if len(v) == 1:
                i = v[0]
            else:
                i = self._pick(v, t[4], t[8])
                if i is None:
                    self._chan_left.append(Entry(*t, 0, origin))
                    continue
                if i < 0:
                    self._chan_dup.append((-i - 1, Entry(*t, 0, origin)))
                    continue
            if self._c_kind[i] or t[5] == REVERSAL:
                e = Entry(*t, 0, origin)
                if not self._combine(i, e):
                    self._chan_dup.append((i, e))
                continue
            self._bill_row(i, t, oi)

    def _bill_row(self, i: int, t: tuple, oi: int) -> None:
        line, _otn, _m, d, fen, state, chan = t[:7]
        self._c_kind[i] = MAIN_ROW
        self._c_line[i] = line
        self._c_fen[i] = fen
        self._c_state[i] = state
        self._c_origin[i] = oi
        self._c_eff[i] = d * fen if state == MOVED else 0
        if not self._o_chan[i]:
            self._o_chan[i] = chan

    def add_platform(self, batches: Iterable[list[tuple]], origin: str) -> None:
        """The platform leg (reconcile.platform): the gateway's ledger joined to our records by the
        same funds key as the bills (one cursor over the journals: the ledger holds both channels
        in the order the payments were started), rows without a channel id by order number later."""
        self._freeze()
        self._plat_columns()
        self._has_platform = True
        oi = self._origin(origin)
        index, o_fen, p_line, o_flags = self._o_fkey.index, self._o_fen, self._p_line, self._o_flags
        spans = self._spans
        cursors = [first for _, first, _ in spans]
        waiting: list[tuple] = []
        for batch in batches:
            for t in batch:
                key = hash(t[7])
                if not key:  # a failed or unfinished attempt: no channel id
                    self._plat_left.append(Entry(*t, 0, origin))
                    continue
                if t[3] < 0:
                    key ^= REFUND_KEY_BITS
                fen, i = t[4], -1
                for c, p in enumerate(cursors):
                    stop = min(p + NEAR, spans[c][2])
                    while p < stop:
                        try:
                            i = index(key, p, stop)
                        except ValueError:
                            i = -1
                            break
                        if not p_line[i] and o_fen[i] == fen and not o_flags[i] & DUP_OURS:
                            break
                        p, i = i + 1, -1
                    if i >= 0:
                        cursors[c] = i + 1
                        break
                if i < 0:
                    waiting.append(t)
                    if len(waiting) == WAITING:
                        self._plat_waiting(waiting, oi, origin)
                        waiting = []
                    continue
                self._plat_row(i, t, oi)
        self._plat_waiting(waiting, oi, origin)

    def _plat_waiting(self, waiting: list[tuple], oi: int, origin: str) -> None:
        found = self._find(self._o_fkey, {k for k in (funds_key(t[7], t[3]) for t in waiting) if k})
        for t in waiting:
            free = [i for i in found.get(funds_key(t[7], t[3]), ()) if not self._p_line[i]]
            free = [i for i in free if not self._o_flags[i] & DUP_OURS] or free  # the original record first
            if not free:
                self._plat_left.append(Entry(*t, 0, origin))
                continue
            self._plat_row(next((i for i in free if self._o_fen[i] == t[4]), free[0]), t, oi)

    def _plat_row(self, i: int, t: tuple, oi: int) -> None:
        line, _order, _msg, d, fen, state = t[:6]
        self._p_line[i] = line
        self._p_fen[i] = fen
        self._p_state[i] = state
        self._p_origin[i] = oi
        self._p_eff[i] = d * fen if state == MOVED else 0

    def add_others(self, trades: list[OtherTrade]) -> None:
        """Bill rows that are not the POS's trades: listed in the result, never matched."""
        self._others.extend(trades)

    def _combine(self, i: int, e: Entry) -> bool:
        """Add a bill row to transaction i's channel side: a payment and its reversal belong
        together. False if i already has a row of that kind (the caller reports a duplicate)."""
        bit = REVERSAL_ROW if e.state == REVERSAL else MAIN_ROW
        kind = self._c_kind[i]
        if kind & bit:
            return False
        if kind == 0 or bit == MAIN_ROW:
            if kind:  # the reversal came first: it becomes an extra row
                self._c_extra.setdefault(i, []).append(self._chan_where(i) + " (REVOKED)")
            self._c_line[i], self._c_fen[i], self._c_state[i], self._c_origin[i] = e.line, e.fen, e.state, self._origin(e.origin)
        else:
            self._c_extra.setdefault(i, []).append(e.where + " (REVOKED)")
        self._c_eff[i] += e.effect
        self._c_kind[i] = kind | bit
        if not self._o_chan[i]:
            self._o_chan[i] = e.channel
        return True

    def _pick(self, candidates: list[int], fen: int, ref: str) -> int | None:
        """Several of our records share the key: take a free one, the same amount first.

        Returns the index, None (an extra refund: a leftover), or -(i+1) (this very refund again)."""
        free = [i for i in candidates if not self._c_kind[i]]
        free = [i for i in free if not self._o_flags[i] & DUP_OURS] or free  # the original record, not a later journal's copy
        if not free:
            for i in candidates:
                if ref and self._c_ref.get(i) == ref:
                    return -i - 1
            return None
        chosen = next((i for i in free if self._o_fen[i] == fen), free[0])
        if ref:
            self._c_ref[chosen] = ref
        return chosen

    def export_channel_side(self) -> ChannelSide:
        self._freeze()
        self._chan_columns()
        return ChannelSide(list(self._origins), self._journal_digest(), self._c_kind, self._c_line, self._c_fen, self._c_state,
                           self._c_eff, self._c_origin, self._o_chan, self._chan_left, self._chan_dup, self._c_ref, self._c_extra, self._others)

    def import_channel_side(self, side: ChannelSide) -> bool:
        """Adopt a funds join done elsewhere over the same journal records; False (and the channel
        side untouched) if the worker read other records (a journal written to in between)."""
        self._freeze()
        if side.journal_digest != self._journal_digest() or (hasattr(self, "_c_kind") and self._c_kind.tobytes().strip(b"\x00")):
            return False
        table = bytearray(range(256))
        for k, name in enumerate(side.origins):
            table[k] = self._origin(name)
        to_ours = bytes(table)
        self._c_kind, self._c_line, self._c_fen, self._c_state, self._c_eff = side.kind, side.line, side.fen, side.state, side.eff
        self._c_origin = array("b", side.origin.tobytes().translate(to_ours))
        self._o_chan = side.channel
        self._chan_left, self._chan_dup, self._c_ref, self._c_extra = side.left, side.dup, side.refs, side.extra
        self._others = side.others
        return True

    def _chan_where(self, i: int) -> str:
        return f"{self._origins[self._c_origin[i]]} line {self._c_line[i]}"
