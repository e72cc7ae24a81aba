"""The matcher: HIS <-> ours by instruction (business), ours <-> channel by channel id (funds).

Built for a million records per source in seconds and well under a gigabyte: our journal's records
become columns (lists of str, `array`s of ints) with two dict indexes (msg_id; channel id), and the
HIS ledger and the bills *stream* against them. A streamed row that matches writes a few numbers
into the columns and is dropped; only rows that match nothing are kept. Pure: no files, no clock.

Keys. Business: the HIS row's msg_id (a ledger without msg_ids is matched by order number,
direction and amount instead). Funds: the channel's transaction id for a collection, its refund
id for a refund; Alipay names a refund by the trade's own id plus out_request_no, so several
partial refunds of one trade share a key and are told apart by amount. A bill row whose id we do
not know is tried against our journal by order number (the journal may have no channel id for a
payment it believes failed: exactly the payment that must be found).

Accounting. Every record of every source ends in exactly one outcome, matched or a difference,
so per side: sum of effects over all outcomes == that side's total (tests hold us to it).
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from dataclasses import dataclass, field, replace
from itertools import compress
from operator import mul
from typing import Callable, Iterable, Iterator

from reconcile.classify import classify
from reconcile.model import (
    COLLECT,
    Columns,
    FLAG_ECHO,
    Channel,
    DiffClass,
    Difference,
    Entry,
    Reason,
    SideView,
    State,
)

_MOVED = int(State.MOVED)
# Unit flags (ours' own flags use the low bit: FLAG_ECHO).
_CONFLICT = 2  # the HIS row with this msg_id names another order or direction
_DUP_OURS = 4  # a second journal record with a msg_id already seen
_PROBABLE = 8  # the bill trade was attached by channel, amount and time (no channel id in our journal)
# How far apart a bill row's time and our result's time may be for a probable match.
PROBABLE_WINDOW_S = 900
_REVERSAL = int(State.REVERSAL)
# Which bill rows a transaction's channel side holds.
_MAIN_ROW = 1  # its payment or refund
_REVERSAL_ROW = 2  # the reversal of its payment


@dataclass
class SideTotals:
    collected: int = 0  # fen
    refunded: int = 0
    records: int = 0  # records that moved money

    def add(self, effect: int) -> None:
        if effect > 0:
            self.collected += effect
        elif effect < 0:
            self.refunded -= effect
        if effect:
            self.records += 1

    @property
    def net(self) -> int:
        return self.collected - self.refunded


@dataclass
class ChannelTotals:
    his: SideTotals = field(default_factory=SideTotals)
    ours: SideTotals = field(default_factory=SideTotals)
    chan: SideTotals = field(default_factory=SideTotals)
    transactions: int = 0  # outcomes attributed to this channel
    matched: int = 0


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


@dataclass
class MatchResult:
    day_id: str
    differences: list[Difference]
    totals: dict[Channel, ChannelTotals]
    matched: int

    def class_counts(self) -> dict[DiffClass, int]:
        counts = {c: 0 for c in DiffClass}
        counts[DiffClass.MATCHED] = self.matched
        for d in self.differences:
            counts[d.cls] += 1
        return counts


def _zeros(code: str, n: int) -> array:
    return array(code, bytes(array(code).itemsize * n))


class Matcher:
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
        moved = self._o_state.tobytes().translate(_EQ[_MOVED])  # 1 where the money moved
        self._o_eff = array("q", map(mul, map(mul, d, self._o_fen), moved))
        for name in ("_h_line", "_h_eff", "_h_fen", "_c_line", "_c_eff", "_c_fen"):
            setattr(self, name, _zeros("q", n))
        for name in ("_h_state", "_h_origin", "_c_state", "_c_origin", "_c_kind"):
            setattr(self, name, _zeros("b", n))

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
                        self._o_flags[i] |= _DUP_OURS
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
        for k in _positions(self._o_dir.tobytes(), 0xFF):
            if keys[k]:
                keys[k] = "\x00" + keys[k]  # type: ignore[operator]
        for k in _positions(self._o_flags.tobytes(), 0, equal=False):
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
        by_msg, h_line, h_eff, h_fen, h_state, h_origin = self._msg_index(), self._h_line, self._h_eff, self._h_fen, self._h_state, self._h_origin
        o_dir, o_order, o_flags = self._o_dir, self._o_order, self._o_flags
        left, dups = self._his_left.append, self._his_dup.append
        for batch in batches:
            for t in batch:
                line, order_no, msg_id, d, fen, state, _chan, _pay, _ref, _at = t
                i = by_msg.get(msg_id) if msg_id else None
                if i is None:
                    left(Entry(*t, 0, origin))
                    continue
                if h_line[i]:
                    dups((i, Entry(*t, 0, origin)))
                    continue
                h_line[i] = line
                h_fen[i] = fen
                h_state[i] = state
                h_origin[i] = oi
                h_eff[i] = d * fen if state == _MOVED else 0
                if d != o_dir[i] or order_no != o_order[i]:
                    o_flags[i] |= _CONFLICT

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
                if c_kind[i] or state == _REVERSAL:
                    e = Entry(*t, 0, origin)
                    if not self._combine(i, e):
                        dups((i, e))
                    continue
                c_kind[i] = _MAIN_ROW
                c_line[i] = line
                c_fen[i] = fen
                c_state[i] = state
                c_origin[i] = oi
                c_eff[i] = d * fen if state == _MOVED else 0
                if not o_chan[i]:
                    o_chan[i] = chan

    def _combine(self, i: int, e: Entry) -> bool:
        """Add a bill row to transaction i's channel side: a payment and its reversal belong
        together. False if i already has a row of that kind (the caller reports a duplicate)."""
        bit = _REVERSAL_ROW if e.state == _REVERSAL else _MAIN_ROW
        kind = self._c_kind[i]
        if kind & bit:
            return False
        if kind == 0 or bit == _MAIN_ROW:
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
                           self._c_eff, self._c_origin, self._o_chan, self._chan_left, self._chan_dup, self._c_ref, self._c_extra)

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
        return True

    # -- leftovers -------------------------------------------------------------------------------
    def _order_index(self) -> dict[str, object]:
        if self._by_order is None:
            index: dict[str, object] = {}
            for i, o in enumerate(self._o_order):
                v = index.get(o)
                index[o] = i if v is None else (v + [i] if type(v) is list else [v, i])
            self._by_order = index
        return self._by_order

    def _by_order_candidates(self, order_no: str, direction: int) -> list[int]:
        v = self._order_index().get(order_no)
        found = [] if v is None else [v] if type(v) is int else v
        return [i for i in found if self._o_dir[i] == direction and not self._o_flags[i] & (_DUP_OURS | FLAG_ECHO)]

    def _attach_leftovers(self) -> None:
        """Second chance, after every exact match: by order number for what had no usable key."""
        his_left, self._his_left = self._his_left, []
        for e in his_left:
            if e.msg_id:
                self._his_left.append(e)  # a msg_id we never saw: another instruction, not ours
                continue
            free = [i for i in self._by_order_candidates(e.order_no, e.direction) if not self._h_line[i]]
            if not free:
                self._his_left.append(e)
                continue
            i = next((i for i in free if self._o_fen[i] == e.fen), free[0])
            self._h_line[i], self._h_fen[i], self._h_state[i], self._h_origin[i] = e.line, e.fen, e.state, self._origin(e.origin)
            self._h_eff[i] = e.effect
        chan_left, self._chan_left = self._chan_left, []
        for group in _trades(chan_left):
            net = sum(e.effect for e in group)
            i, paid = self._unit_for_bill_trade(group[0], net) if net else (None, False)
            if i is None:
                self._chan_left.extend(group)  # includes attempts paid and reversed: net nothing
            elif paid:  # the channel holds a second payment for an instruction already paid
                self._chan_dup.extend((i, e._replace(flags=1)) for e in group)
            else:
                for e in group:
                    if not self._combine(i, e):
                        self._chan_dup.append((i, e))
                self._o_flags[i] |= _PROBABLE

    def _unit_for_bill_trade(self, e: Entry, net: int) -> tuple[int | None, bool]:
        """Our instruction behind a bill trade whose channel id our journal does not have.

        The journal has no channel id for a payment the POS believes failed (or for a second,
        unexpected charge), and the merchant order number is the terminal's salted number, so the
        only link is the channel, the amount and the time: the closest instruction of the same
        channel and amount within PROBABLE_WINDOW_S that has no bill row yet (then `paid` is False),
        or, failing that, one that already has its payment (a second charge: `paid` is True)."""
        if self._order_of is not None:
            free = [i for i in self._by_order_candidates(self._order_of(e.order_no), e.direction) if not self._c_kind[i]]
            if free:
                return next((i for i in free if self._o_fen[i] == e.fen), free[0]), False
        when = self._epoch_of(e.at)
        if when is None:
            return None, False
        if self._by_amount is None:
            self._by_amount = {}
            for i, (d, f, c, g) in enumerate(zip(self._o_dir, self._o_fen, self._o_chan, self._o_flags)):
                if not g & (_DUP_OURS | FLAG_ECHO):
                    self._by_amount.setdefault((c, d, f), []).append(i)
        near = []
        for i in self._by_amount.get((e.channel, e.direction, abs(net)), []):
            at = self._epoch_of(self._o_at[i])
            if at is not None and abs(at - when) <= PROBABLE_WINDOW_S:
                near.append((bool(self._c_kind[i]), abs(at - when), i))
        if not near:
            return None, False
        paid, _, i = min(near)
        return i, paid

    def _pair_leftovers(self) -> list[tuple[Entry | None, list[Entry]]]:
        """HIS rows and bill trades that are in none of our journals, paired with each other."""
        by_pay: dict[tuple[int, str], list[list[Entry]]] = {}
        by_order: dict[tuple[str, int], list[list[Entry]]] = {}
        groups = _trades(self._chan_left)
        for g in groups:
            by_pay.setdefault((g[0].direction, g[0].pay_order_no), []).append(g)
            if self._order_of is not None:
                by_order.setdefault((self._order_of(g[0].order_no), g[0].direction), []).append(g)
        used: set[int] = set()
        pairs: list[tuple[Entry | None, list[Entry]]] = []
        for h in self._his_left:
            options = by_pay.get((h.direction, h.pay_order_no), []) if h.pay_order_no else []
            options = [g for g in options if id(g) not in used] or [g for g in by_order.get((h.order_no, h.direction), []) if id(g) not in used]
            g = next((g for g in options if g[0].fen == h.fen), options[0] if options else [])
            if g:
                used.add(id(g))
            pairs.append((h, g))
        pairs.extend((None, g) for g in groups if id(g) not in used)
        return pairs

    # -- outcomes --------------------------------------------------------------------------------
    def finish(self) -> MatchResult:
        self._msg_index()  # flags duplicated journal records even on a day without HIS rows
        self._attach_leftovers()
        self._ids: Counter[str] = Counter()
        diffs: list[Difference] = []
        totals: dict[Channel, ChannelTotals] = {}
        unit_diffs = self._unit_differences(diffs)
        self._unit_totals(totals, unit_diffs)
        for h, group in self._pair_leftovers():
            c = group[0] if group else None
            e = h or c
            assert e is not None
            channel = Channel(c.channel if c else h.channel if h else 0)
            he, ce = (h.effect if h else 0), sum(g.effect for g in group)
            cls, reason = classify(e.direction, he, 0, ce, h is not None, False)
            t = totals.setdefault(channel, ChannelTotals())
            t.his.add(he), t.chan.add(ce)
            t.transactions += 1
            if cls is DiffClass.MATCHED:
                t.matched += 1
                continue
            chan_view = self._view_entry(c)
            if chan_view is not None and len(group) > 1:
                chan_view = replace(chan_view, where=" + ".join(g.where + (" (REVOKED)" if g.state == _REVERSAL else "") for g in group))
            diffs.append(self._diff(cls, reason, channel, e.direction, e.order_no, h.msg_id if h else "", (c or h).pay_order_no, self._view_entry(h), None, chan_view, he, 0, ce))
        for i, e in self._his_dup:
            channel = Channel(self._o_chan[i] or e.channel)
            t = totals.setdefault(channel, ChannelTotals())
            t.his.add(e.effect)
            t.transactions += 1
            diffs.append(self._diff(DiffClass.DUPLICATE, Reason.DUPLICATE_HIS_ROW, channel, e.direction, e.order_no, e.msg_id, e.pay_order_no, self._view_entry(e), None, None, e.effect, 0, 0))
        for i, e in self._chan_dup:
            channel = Channel(e.channel)
            t = totals.setdefault(channel, ChannelTotals())
            t.chan.add(e.effect)
            t.transactions += 1
            reason = Reason.SECOND_PAYMENT if e.flags else Reason.DUPLICATE_CHANNEL_ROW
            diffs.append(self._diff(DiffClass.DUPLICATE, reason, channel, e.direction, self._o_order[i], self._o_msg[i], e.pay_order_no, None, None, self._view_entry(e), 0, 0, e.effect))
        matched = sum(t.matched for t in totals.values())
        return MatchResult(self.day_id, diffs, totals, matched)

    def _unit_differences(self, diffs: list[Difference]) -> dict[int, Channel]:
        """The one pass over every journal record; cheap unless something disagrees."""
        out: dict[int, Channel] = {}
        o_eff, h_eff, c_eff, flags = self._o_eff, self._h_eff, self._c_eff, self._o_flags
        for i, (oe, he, ce, g) in enumerate(zip(o_eff, h_eff, c_eff, flags)):
            if oe == he == ce and not g & (_CONFLICT | _DUP_OURS | _PROBABLE):
                continue
            d = self._o_dir[i]
            if g & _DUP_OURS:
                cls, reason = DiffClass.DUPLICATE, Reason.DUPLICATE_OURS
            elif g & _CONFLICT:
                cls, reason = DiffClass.STATUS, Reason.MSG_ID_CONFLICT
            elif g & _PROBABLE and oe:
                cls, reason = DiffClass.STATUS, Reason.CHANNEL_ID_DIFFERS
            else:
                cls, reason = classify(d, he, oe, ce, bool(self._h_line[i]), True)
                if g & FLAG_ECHO and he and not ce:
                    cls, reason = DiffClass.DUPLICATE, Reason.DUPLICATE_ORDER_ECHO
                elif cls is DiffClass.LONG and oe == 0 and ce > 0:
                    reason = Reason.OURS_MISSED_PAYMENT
            if cls is DiffClass.MATCHED:
                continue
            channel = Channel(self._o_chan[i])
            out[i] = channel
            diffs.append(self._diff(cls, reason, channel, d, self._o_order[i], self._o_msg[i], self._o_pay[i], self._view_his(i), self._view_ours(i), self._view_chan(i), he, oe, ce))
        return out

    def _unit_totals(self, totals: dict[Channel, ChannelTotals], unit_diffs: dict[int, Channel]) -> None:
        """Per channel sums over all journal records at C speed: byte masks per channel and
        direction, `compress` for the sums, popcounts of and-ed masks for the record counts."""
        n = len(self._o_chan)
        chan_bytes, dir_bytes = self._o_chan.tobytes(), self._o_dir.tobytes()
        moved = {name: _bits(getattr(self, name).tobytes(), _MOVED) for name in ("_o_state", "_h_state", "_c_state")}
        for code in set(chan_bytes):
            in_channel = _bits(chan_bytes, code)
            t = totals.setdefault(Channel(code), ChannelTotals())
            count = in_channel.bit_count()
            t.transactions += count
            t.matched += count - sum(1 for ch in unit_diffs.values() if ch == code)
            for d in (COLLECT, -COLLECT):
                mask_bits = in_channel & _bits(dir_bytes, d & 0xFF)
                if not mask_bits:
                    continue
                mask = mask_bits.to_bytes(n, "little")
                for side, eff, state in ((t.ours, self._o_eff, "_o_state"), (t.his, self._h_eff, "_h_state"), (t.chan, self._c_eff, "_c_state")):
                    total = sum(compress(eff, mask))
                    if d > 0:
                        side.collected += total
                    else:
                        side.refunded -= total
                    side.records += (mask_bits & moved[state]).bit_count()

    # -- presenting ------------------------------------------------------------------------------
    def _diff(self, cls: DiffClass, reason: Reason, channel: Channel, direction: int, order_no: str, msg_id: str, pay_order_no: str, his: SideView | None, ours: SideView | None, chan: SideView | None, he: int, oe: int, ce: int) -> Difference:
        key = f"{cls.value}|{reason.value}|{int(channel)}|{direction}|{order_no}|{msg_id}|{pay_order_no}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        self._ids[digest] += 1
        n = self._ids[digest]
        diff_id = f"{self.day_id}-{digest}" + (f"-{n}" if n > 1 else "")
        times = [v.at for v in (his, ours, chan) if v is not None and v.at]
        near = any(_near_midnight(t) for t in times)
        return Difference(diff_id, cls, reason, channel, direction, order_no, msg_id, pay_order_no, his, ours, chan, he, oe, ce, near)

    def _view_his(self, i: int) -> SideView | None:
        if not self._h_line[i]:
            return None
        return SideView(f"{self._origins[self._h_origin[i]]} line {self._h_line[i]}", self._h_fen[i], State(self._h_state[i]))

    def _view_ours(self, i: int) -> SideView:
        where = f"{self._origins[self._o_origin[i]]} #{self._o_line[i]}"
        return SideView(where, self._o_fen[i], State(self._o_state[i]), self._o_pay[i], self._fmt_time(self._o_at[i]))

    def _chan_where(self, i: int) -> str:
        return f"{self._origins[self._c_origin[i]]} line {self._c_line[i]}"

    def _view_chan(self, i: int) -> SideView | None:
        if not self._c_kind[i] and i not in self._c_extra:
            return None
        where = " + ".join([self._chan_where(i)] + self._c_extra.get(i, [])) if self._c_kind[i] else " + ".join(self._c_extra[i])
        return SideView(where, self._c_fen[i], State(self._c_state[i]))

    def _view_entry(self, e: Entry | None) -> SideView | None:
        if e is None:
            return None
        return SideView(e.where, e.fen, State(e.state), e.pay_order_no, self._fmt_time(e.at))


def _positions(data: bytes, value: int, *, equal: bool = True) -> Iterator[int]:
    """Indexes k where data[k] == value (or != value), found by bytes.find at C speed."""
    mask = data.translate(_EQ[value])
    wanted = b"\x01" if equal else b"\x00"
    k = mask.find(wanted)
    while k >= 0:
        yield k
        k = mask.find(wanted, k + 1)


def _bits(data: bytes, value: int) -> int:
    """An int whose byte k is 1 where data[k] == value (a mask that ands and popcounts in C)."""
    return int.from_bytes(data.translate(_EQ[value]), "little")


_EQ = [bytes(1 if b == v else 0 for b in range(256)) for v in range(256)]


def _trades(rows: list[Entry]) -> list[list[Entry]]:
    """Bill rows grouped by trade: a payment with its reversal; each refund on its own."""
    groups: dict[tuple[int, str], list[Entry]] = {}
    out: list[list[Entry]] = []
    for e in rows:
        if e.direction == COLLECT and e.pay_order_no:
            group = groups.get((e.direction, e.pay_order_no))
            if group is None:
                group = groups[(e.direction, e.pay_order_no)] = []
                out.append(group)
            group.append(e)
        else:
            out.append([e])
    for group in out:
        group.sort(key=lambda e: e.state == State.REVERSAL)  # the payment first
    return out


def _near_midnight(text: str) -> bool:
    """Within ten minutes of midnight: may sit in the next or previous day's bill."""
    hhmm = text[11:16] if len(text) >= 16 else ""
    return bool(hhmm) and (hhmm >= "23:50" or hhmm < "00:10")
