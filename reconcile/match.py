"""The matcher: HIS <-> ours by instruction (business), ours <-> channel by channel id (funds).

Built for a million records per source in seconds and well under a gigabyte: our journal's records
become columns (lists of str, `array`s of ints) with two dict indexes (msg_id; channel id), and the
HIS ledger and the bills *stream* against them. A streamed row that matches writes a few numbers
into the columns and is dropped; only rows that match nothing are kept. Pure: no files, no clock.

Keys. Business: the HIS row's msg_id (a ledger without msg_ids is matched by order number,
direction and amount instead). Funds: the channel's transaction id for a collection, its refund
id for a refund; Alipay names a refund by the trade's own id plus out_request_no, so several
partial refunds of one trade share a key and are told apart by amount. A payment and its reversal
are one transaction on the channel side. What matches nothing gets a second chance in
reconcile.outcome, which also turns every transaction into an outcome.

Accounting. Every record of every source ends in exactly one outcome, matched or a difference,
so per side: sum of effects over all outcomes == that side's total (tests hold us to it).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from operator import mul
from typing import Callable, Iterable

from reconcile.attribution import OtherTrade
from reconcile.model import FLAG_ECHO, Columns, Entry, State
from reconcile.outcome import ChannelTotals, Conclusions, MatchResult, SideTotals
from reconcile.units import CONFLICT, DUP_OURS, EQ, MAIN_ROW, MOVED, REVERSAL, REVERSAL_ROW, positions, zeros

__all__ = ["ChannelSide", "ChannelTotals", "MatchResult", "Matcher", "SideTotals"]


@dataclass
class ChannelSide:
    """The funds join done in another process: what add_channel left in its Matcher."""

    origins: list[str]
    journal_lines: array  # which journal records, in which order, the worker joined against
    journal_origins: array
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
                 epoch_of: Callable[[object], int | None] = lambda at: at if type(at) is int else None) -> None:
        self.day_id = day_id  # "20261122": prefix of every difference id
        self._order_of = order_of  # channel merchant order number -> HIS order number, where they relate
        self._fmt_time = format_time
        self._epoch_of = epoch_of  # a record's `at` (text or epoch) -> epoch seconds, None if unknown
        self._by_amount: dict[tuple[int, int, int], list[int]] | None = None
        self._origins: list[str] = []
        self._o_order: list[str] = []
        self._o_msg: list[str] = []
        self._o_pay: list[str] = []
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
        self._by_order: dict[str, object] | None = None
        self._by_msg: dict[str, int] | None = None
        self._by_funds: dict[object, object] | None = None

    # -- loading ---------------------------------------------------------------------------------
    def _origin(self, name: str) -> int:
        if name not in self._origins:
            if len(self._origins) >= 127:
                raise ValueError("too many input files")
            self._origins.append(name)
        return self._origins.index(name)

    def add_ours(self, cols: Columns, origin: str) -> None:
        """One journal's records (reconcile.ours.read_ours, or Columns.from_rows in tests)."""
        if self._frozen:
            raise RuntimeError("add every journal before the HIS ledger and the bills")
        oi = self._origin(origin)
        start = len(self._o_order)
        self._o_line.extend(cols.line)
        self._o_order.extend(cols.order_no)
        self._o_msg.extend(cols.msg_id)
        self._o_dir.extend(cols.direction)
        self._o_fen.extend(cols.fen)
        self._o_chan.extend(cols.channel)
        self._o_pay.extend(cols.pay_order_no)
        self._o_at.extend(cols.at)
        self._o_flags.extend(cols.flags)
        state = array("b", cols.state)
        flags = cols.flags.tobytes()
        k = flags.find(FLAG_ECHO)
        while k >= 0:  # a replayed result moved no money of its own
            state[k] = State.NOT_MOVED
            k = flags.find(FLAG_ECHO, k + 1)
        self._o_state.extend(state)
        self._o_origin.extend(array("b", [oi]) * (len(self._o_order) - start))

    def _freeze(self) -> None:
        if self._frozen:
            return
        self._frozen = True
        n = len(self._o_order)
        d = self._o_dir
        moved = self._o_state.tobytes().translate(EQ[MOVED])  # 1 where the money moved
        self._o_eff = array("q", map(mul, map(mul, d, self._o_fen), moved))
        for name in ("_h_line", "_h_eff", "_h_fen", "_c_line", "_c_eff", "_c_fen"):
            setattr(self, name, zeros("q", n))
        for name in ("_h_state", "_h_origin", "_c_state", "_c_origin", "_c_kind"):
            setattr(self, name, zeros("b", n))

    def _msg_index(self) -> dict[str, int]:
        """msg_id -> journal record; a msg_id seen again (in another journal) flags a duplicate."""
        if self._by_msg is None:
            self._freeze()
            n = len(self._o_msg)
            by_msg = dict(zip(self._o_msg, range(n)))
            if len(by_msg) != n:
                seen: set[str] = set()
                for i, m in enumerate(self._o_msg):
                    if m in seen:
                        self._o_flags[i] |= DUP_OURS
                    else:
                        seen.add(m)
                        by_msg[m] = i
            self._by_msg = by_msg
        return self._by_msg

    def _funds_index(self) -> dict[object, object]:
        """Channel id -> journal record(s). Built separately from the msg_id index, and depending
        only on the journals, so that a worker process can build it and join the bills alone."""
        if self._by_funds is not None:
            return self._by_funds
        self._freeze()
        n = len(self._o_pay)
        # The channel id; refunds prefixed (Alipay names a refund by its trade's id); none for
        # records without an id and for replayed results. Patched in place: those are few.
        keys: list[object] = list(self._o_pay)
        for k in positions(self._o_dir.tobytes(), 0xFF):
            if keys[k]:
                keys[k] = "\x00" + keys[k]  # type: ignore[operator]
        for k in positions(self._o_flags.tobytes(), 0, equal=False):
            if self._o_flags[k] & FLAG_ECHO:
                keys[k] = None
        k = -1
        try:
            while True:
                k = keys.index("", k + 1)
                keys[k] = None
        except ValueError:
            pass
        funds: dict[object, object] = dict(zip(keys, range(n)))
        funds.pop(None, None)
        if len(funds) != n - keys.count(None):  # shared keys: Alipay partial refunds, repeated ids
            # dict(zip(...)) kept the last index of each key; the others are where keys[i] maps elsewhere.
            earlier = [i for i, k, last in zip(range(n), keys, map(funds.get, keys)) if last is not None and last != i]
            for i in earlier:
                key = keys[i]
                v = funds[key]
                funds[key] = [i, v] if type(v) is int else [*v[:-1], i, v[-1]]
        self._by_funds = funds
        return funds

    def add_his(self, batches: Iterable[list[tuple]], origin: str) -> None:
        self._freeze()
        oi = self._origin(origin)
        h_line, h_eff, h_fen, h_state, h_origin = self._h_line, self._h_eff, self._h_fen, self._h_state, self._h_origin
        o_msg, o_dir, o_order, o_flags = self._o_msg, self._o_dir, self._o_order, self._o_flags
        left, dups = self._his_left.append, self._his_dup.append
        # An HIS export mostly lists instructions in the order one journal does: the row after the
        # last one matched (or the one after it) is tried first, which spares a million lookups in
        # a dict too large for the CPU caches, and often the dict itself. Exact only where a
        # msg_id cannot be in the journals twice, i.e. with a single journal.
        by_msg = self._by_msg if len(set(self._o_origin_names())) == 1 else self._msg_index()
        n = len(o_msg)
        p = 0
        for batch in batches:
            for t in batch:
                line, order_no, msg_id, d, fen, state, _chan, _pay, _ref, _at = t
                if p < n and o_msg[p] == msg_id:
                    i = p
                elif p + 1 < n and o_msg[p + 1] == msg_id:
                    i = p + 1
                else:
                    if by_msg is None:
                        by_msg = self._msg_index()
                    i = by_msg.get(msg_id) if msg_id else None
                    if i is None:
                        left(Entry(*t, 0, origin))
                        continue
                p = i + 1
                if h_line[i]:
                    dups((i, Entry(*t, 0, origin)))
                    continue
                h_line[i] = line
                h_fen[i] = fen
                h_state[i] = state
                h_origin[i] = oi
                h_eff[i] = d * fen if state == MOVED else 0
                if d != o_dir[i] or order_no != o_order[i]:
                    o_flags[i] |= CONFLICT

    def _o_origin_names(self) -> list[str]:
        """The journals added, one name each."""
        return [self._origins[k] for k in set(self._o_origin.tobytes())]

    def add_channel(self, batches: Iterable[list[tuple]], origin: str) -> None:
        self._freeze()
        oi = self._origin(origin)
        funds, c_kind, c_line, c_eff, c_fen, c_state, c_origin, o_chan = (
            self._funds_index(), self._c_kind, self._c_line, self._c_eff, self._c_fen, self._c_state, self._c_origin, self._o_chan)
        left, dups = self._chan_left.append, self._chan_dup.append
        for batch in batches:
            for t in batch:
                line, _otn, _m, d, fen, state, chan, pay_no, ref, _at = t
                v = funds.get(pay_no if d > 0 else "\x00" + pay_no)
                if v is None:
                    left(Entry(*t, 0, origin))
                    continue
                if type(v) is int:
                    i = v
                else:
                    i = self._pick(v, fen, ref)
                    if i is None:
                        left(Entry(*t, 0, origin))
                        continue
                    if i < 0:
                        dups((-i - 1, Entry(*t, 0, origin)))
                        continue
                if c_kind[i] or state == REVERSAL:
                    e = Entry(*t, 0, origin)
                    if not self._combine(i, e):
                        dups((i, e))
                    continue
                c_kind[i] = MAIN_ROW
                c_line[i] = line
                c_fen[i] = fen
                c_state[i] = state
                c_origin[i] = oi
                c_eff[i] = d * fen if state == MOVED else 0
                if not o_chan[i]:
                    o_chan[i] = chan

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
        return ChannelSide(list(self._origins), self._o_line, self._o_origin, self._c_kind, self._c_line, self._c_fen, self._c_state,
                           self._c_eff, self._c_origin, self._o_chan, self._chan_left, self._chan_dup, self._c_ref, self._c_extra, self._others)

    def import_channel_side(self, side: ChannelSide) -> bool:
        """Adopt a funds join done elsewhere over the same journal records; False (and the channel
        side untouched) if the worker read other records (a journal written to in between)."""
        self._freeze()
        table = bytearray(range(256))
        for k, name in enumerate(side.origins):
            table[k] = self._origin(name)
        to_ours = bytes(table)
        if (side.journal_lines != self._o_line or side.journal_origins.tobytes().translate(to_ours) != self._o_origin.tobytes()
                or self._c_kind.tobytes().strip(b"\x00")):
            return False
        self._c_kind, self._c_line, self._c_fen, self._c_state, self._c_eff = side.kind, side.line, side.fen, side.state, side.eff
        self._c_origin = array("b", side.origin.tobytes().translate(to_ours))
        self._o_chan = side.channel
        self._chan_left, self._chan_dup, self._c_ref, self._c_extra = side.left, side.dup, side.refs, side.extra
        self._others = side.others
        return True

    def _chan_where(self, i: int) -> str:
        return f"{self._origins[self._c_origin[i]]} line {self._c_line[i]}"
