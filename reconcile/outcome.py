"""Concluding a day: second chances for unmatched rows, one outcome per transaction, totals.

`Conclusions` is the second half of `reconcile.match.Matcher` (which inherits it): it works on the
columns the joins filled in. After every exact match, rows that matched nothing get a second
chance (HIS rows without msg_id by order number; bill trades by channel, amount and time); then
every journal record, every leftover and every duplicate becomes exactly one outcome, matched or a
difference, and the totals per channel are summed at C speed.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from array import array
from collections import Counter
from dataclasses import dataclass, field, replace
from itertools import compress, repeat
from operator import add, gt, mul

from reconcile.attribution import OtherTrade
from reconcile.classify import classify
from reconcile.model import COLLECT, FLAG_ECHO, FLAG_LATE, Carried, Channel, DiffClass, Difference, Entry, Reason, SideView, State
from reconcile.units import CONFLICT, DUP_OURS, MOVED, PLAT_PENDING, PROBABLE, REVERSAL, bits, positions

LATE_BIT = bytes(1 if b & FLAG_LATE else 0 for b in range(256))
MATCHED = object()  # a late record that moved nothing, and HIS (or the bill) agrees

# How far apart a bill row's time and our result's time may be for a probable match.
PROBABLE_WINDOW_S = 900


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
    plat: SideTotals = field(default_factory=SideTotals)  # the gateway's ledger, when given
    transactions: int = 0  # outcomes attributed to this channel
    matched: int = 0


@dataclass
class MatchResult:
    day_id: str
    differences: list[Difference]
    totals: dict[Channel, ChannelTotals]
    matched: int
    others: list[OtherTrade] = field(default_factory=list)  # bill rows that are not the POS's: listed apart
    carried: list[Carried] = field(default_factory=list)  # HIS / bill rows of instructions whose result comes on a later day
    platform: bool = False  # the platform leg (the gateway's ledger) was reconciled too

    def class_counts(self) -> dict[DiffClass, int]:
        counts = {c: 0 for c in DiffClass}
        counts[DiffClass.MATCHED] = self.matched
        for d in self.differences:
            counts[d.cls] += 1
        return counts


class Conclusions:
    """Mixed into Matcher; uses its columns (`_o_*` journal, `_h_*` HIS side, `_c_*` channel side)."""

    def _units_by_order(self, orders: set[str]) -> dict[str, list[int]]:
        """Our records of these order numbers (one pass over the order keys)."""
        by_key = self._find(self._o_okey, {hash(o) for o in orders})
        return {o: by_key.get(hash(o), []) for o in orders}

    def _by_order_candidates(self, found: dict[str, list[int]], order_no: str, direction: int) -> list[int]:
        return [i for i in found.get(order_no, []) if self._o_dir[i] == direction and not self._o_flags[i] & (DUP_OURS | FLAG_ECHO)]

    def _attach_leftovers(self) -> None:
        """Second chance, after every exact match: by order number for what had no usable key."""
        his_left, self._his_left = self._his_left, []
        plat_left, self._plat_left = self._plat_left, []
        trades = _trades(self._chan_left)
        orders = {e.order_no for e in his_left if not e.msg_id} | {e.order_no for e in plat_left}
        if self._order_of is not None:
            orders |= {self._order_of(g[0].order_no) for g in trades}
        by_order = self._units_by_order(orders) if orders else {}
        for e in plat_left:
            self._attach_platform(e, by_order)
        for e in his_left:
            if e.msg_id:
                self._his_left.append(e)  # a msg_id we never saw: another instruction, not ours
                continue
            free = [i for i in self._by_order_candidates(by_order, e.order_no, e.direction) if not self._h_line[i]]
            if not free:
                self._his_left.append(e)
                continue
            i = next((i for i in free if self._o_fen[i] == e.fen), free[0])
            self._h_line[i], self._h_fen[i], self._h_state[i], self._h_origin[i] = e.line, e.fen, e.state, self._origin(e.origin)
            self._h_eff[i] = e.effect
        self._chan_left = []
        nets = [sum(e.effect for e in group) for group in trades]
        by_amount = self._units_by_amount({(g[0].channel, g[0].direction, abs(net)) for g, net in zip(trades, nets) if net})
        for group, net in zip(trades, nets):
            i, paid = self._unit_for_bill_trade(group[0], net, by_order, by_amount) if net else (None, False)
            if i is None:
                self._chan_left.extend(group)  # includes attempts paid and reversed: net nothing
            elif paid:  # the channel holds a second payment for an instruction already paid
                self._chan_dup.extend((i, e._replace(flags=1)) for e in group)
            else:
                for e in group:
                    if not self._combine(i, e):
                        self._chan_dup.append((i, e))
                self._o_flags[i] |= PROBABLE

    def _attach_platform(self, e: Entry, by_order: dict[str, list[int]]) -> None:
        """A platform row no channel id placed: to an instruction of its order and direction that has
        no platform row yet. A failed attempt only to an instruction that failed too (a failed first
        attempt says nothing about a paid instruction whose own row is missing)."""
        free = [i for i in self._by_order_candidates(by_order, e.order_no, e.direction) if not self._p_line[i]]
        if e.state == State.NOT_MOVED:
            free = [i for i in free if self._o_state[i] == State.NOT_MOVED]
        if not free:
            self._plat_left.append(e)
            return
        i = next((i for i in free if self._o_fen[i] == e.fen), free[0])
        self._p_line[i], self._p_fen[i], self._p_state[i], self._p_origin[i] = e.line, e.fen, e.state, self._origin(e.origin)
        self._p_eff[i] = e.effect

    def _platform_outcome(self, i: int, oe: int, pe: int) -> tuple[DiffClass, Reason | None]:
        """Where HIS, ours and the channel agree: what the platform's ledger says of it."""
        if self._p_state[i] == State.PENDING and self._p_line[i]:
            return DiffClass.STATUS, Reason.PLATFORM_IN_FLIGHT
        if pe == oe:
            return DiffClass.MATCHED, None
        if not self._p_line[i]:
            return DiffClass.STATUS, Reason.PLATFORM_MISSING
        if pe and oe:
            return DiffClass.AMOUNT, Reason.PLATFORM_AMOUNT
        return DiffClass.STATUS, Reason.PLATFORM_DISAGREES

    def _units_by_amount(self, wanted: set[tuple[int, int, int]]) -> dict[tuple[int, int, int], tuple[list[int], list[int]]]:
        """Our records of these (channel, direction, fen), replayed results and duplicates left
        out, as (times, records) sorted by time: one pass over an amount key computed at C speed
        (fen * 8 + channel * 2 + collect)."""
        if not wanted:
            return {}
        amount_keys = array("q", map(add, map(mul, self._o_fen, repeat(8)), map(add, map(mul, self._o_chan, repeat(2)), map(gt, self._o_dir, repeat(0)))))
        found = self._find(amount_keys, {f * 8 + c * 2 + (d > 0) for c, d, f in wanted})
        flags, epoch_of, o_at = self._o_flags, self._epoch_of, self._o_at
        out: dict[tuple[int, int, int], tuple[list[int], list[int]]] = {}
        for c, d, f in wanted:
            # By time, so that a bill trade looks only at its window (a day has few distinct amounts:
            # scanning every record of one amount for each trade would be quadratic).
            timed = sorted((at, i) for i in found.get(f * 8 + c * 2 + (d > 0), []) if not flags[i] & (DUP_OURS | FLAG_ECHO)
                           for at in (epoch_of(o_at[i]),) if at is not None)
            out[(c, d, f)] = ([at for at, _ in timed], [i for _, i in timed])
        return out

    def _unit_for_bill_trade(self, e: Entry, net: int, by_order: dict[str, list[int]],
                             by_amount: dict[tuple[int, int, int], tuple[list[int], list[int]]]) -> tuple[int | None, bool]:
        """Our instruction behind a bill trade whose channel id our journal does not have.

        The journal has no channel id for a payment the POS believes failed (or for a second,
        unexpected charge), and the merchant order number is the terminal's salted number, so the
        only link is the channel, the amount and the time: the closest instruction of the same
        channel and amount within PROBABLE_WINDOW_S that has no bill row yet (then `paid` is False),
        or, failing that, one that already has its payment (a second charge: `paid` is True)."""
        if self._order_of is not None:
            free = [i for i in self._by_order_candidates(by_order, self._order_of(e.order_no), e.direction) if not self._c_kind[i]]
            if free:
                return next((i for i in free if self._o_fen[i] == e.fen), free[0]), False
        when = self._epoch_of(e.at)
        if when is None:
            return None, False
        ats, records = by_amount.get((e.channel, e.direction, abs(net)), ([], []))
        pos = self._o_pos if self._o_pos is not None else range(len(self._o_line))
        near = [(bool(self._c_kind[records[k]]), abs(ats[k] - when), pos[records[k]], records[k])
                for k in range(bisect_left(ats, when - PROBABLE_WINDOW_S), bisect_right(ats, when + PROBABLE_WINDOW_S))]
        best = min(near) if near else None
        if self._ghost_paid is not None and (best is None or best[0]):
            # No free record: the closest paid one may be a record concluded in its slice (reconcile.slices).
            ghost = self._ghost_paid(e.channel, e.direction, abs(net), when)
            if ghost is not None and (best is None or ghost[:2] < best[1:3]):
                return self._adopt(ghost[2]), True
        if best is None:
            return None, False
        paid, _, _, i = best
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
        self._freeze()
        self._his_columns()
        self._chan_columns()
        self._effects()
        self._canonical_order()
        self._attach_leftovers()
        if self._has_platform:
            for k in positions(self._p_state.tobytes(), int(State.PENDING)):
                if self._p_line[k]:
                    self._o_flags[k] |= PLAT_PENDING
        self._ids: Counter[str] = Counter()
        diffs: list[Difference] = []
        totals: dict[Channel, ChannelTotals] = {}
        units, absent = self._unit_outcomes()
        # The IDs of the records shown, read back in one go (the columns hold keys only).
        texts = self._ids_of({u[0] for u in units} | {i for i, _ in self._his_dup} | {i for i, _ in self._chan_dup})
        unit_diffs: dict[int, Channel] = {}
        for i, cls, reason, he, oe, ce, earlier in units:
            channel = unit_diffs[i] = Channel(self._o_chan[i])
            order_no, msg_id, pay = texts[i]
            his, chan = self._view_his(i), self._view_chan(i)
            if reason is Reason.SEEN_PREVIOUS_DAY:  # show what HIS / the bill said on the day it was accepted
                his = his or (earlier["his"].view if "his" in earlier else None)
                chan = chan or (earlier["channel"].view if "channel" in earlier else None)
            diffs.append(self._diff(cls, reason, channel, self._o_dir[i], order_no, msg_id, pay, his, self._view_ours(i, pay), chan, he, oe, ce,
                                    self._view_plat(i), self._p_eff[i] if self._has_platform else 0))
            if reason is Reason.RESULT_NEXT_DAY:  # for the next days' runs (reconcile.store)
                day = f"{self.day_id[:4]}-{self.day_id[4:6]}-{self.day_id[6:]}"
                if his is not None:
                    self._carry_out.append(Carried(day, msg_id, "his", his, he))
                if chan is not None:
                    self._carry_out.append(Carried(day, msg_id, "channel", chan, ce))
        self._unit_totals(totals, unit_diffs, absent)
        plat_left = {(e.direction, e.pay_order_no): e for e in self._plat_left if e.state != State.NOT_MOVED and e.pay_order_no}
        paired: set[int] = set()  # platform rows shown beside their channel rows
        for h, group in self._pair_leftovers():
            c = group[0] if group else None
            e = h or c
            assert e is not None
            channel = Channel(c.channel if c else h.channel if h else 0)
            he, ce = (h.effect if h else 0), sum(g.effect for g in group)
            p = plat_left.pop((e.direction, (c or h).pay_order_no), None) if (c or h).pay_order_no else None
            if p is not None:
                paired.add(id(p))
            pe = p.effect if p else 0
            cls, reason = classify(e.direction, he, 0, ce, h is not None, False)
            t = totals.setdefault(channel, ChannelTotals())
            t.his.add(he), t.chan.add(ce), t.plat.add(pe)
            t.transactions += 1
            if cls is DiffClass.MATCHED:
                t.matched += 1
                continue
            chan_view = self._view_entry(c)
            if chan_view is not None and len(group) > 1:
                chan_view = replace(chan_view, where=" + ".join(g.where + (" (REVOKED)" if g.state == REVERSAL else "") for g in group))
            diffs.append(self._diff(cls, reason, channel, e.direction, e.order_no, h.msg_id if h else "", (c or h).pay_order_no, self._view_entry(h), None,
                                    chan_view, he, 0, ce, self._view_entry(p), pe))
        for p in self._plat_left:  # the platform's own: what no other source has, or what it has not finished
            if p.state == State.NOT_MOVED or id(p) in paired:
                continue  # a failed attempt moved nothing anywhere
            channel = Channel(p.channel)
            t = totals.setdefault(channel, ChannelTotals())
            t.plat.add(p.effect)
            t.transactions += 1
            reason = Reason.PLATFORM_IN_FLIGHT if p.state == State.PENDING else Reason.PLATFORM_ONLY
            diffs.append(self._diff(DiffClass.STATUS, reason, channel, p.direction, p.order_no, p.msg_id, p.pay_order_no, None, None, None, 0, 0, 0,
                                    self._view_entry(p), p.effect))
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
            order_no, msg_id, _ = texts[i]
            diffs.append(self._diff(DiffClass.DUPLICATE, reason, channel, e.direction, order_no, msg_id, e.pay_order_no, None, None, self._view_entry(e), 0, 0, e.effect))
        matched = sum(t.matched for t in totals.values())
        return MatchResult(self.day_id, diffs, totals, matched, list(self._others), list(self._carry_out), self._has_platform)

    def _adopt(self, record: "int | dict[str, object]") -> int:
        """A record concluded in its slice, taken into the last pass (reconcile.slices) as the
        second payment's instruction: from then on it is counted here, not with its slice."""
        if isinstance(record, int):
            return record
        known = self._adopted.get(int(record["_o_pos"]))  # type: ignore[call-overload]  # _o_* fields are ints (reconcile.slices writes them)
        if known is not None:
            return known  # taken in already
        self._adopted[int(record["_o_pos"])] = len(self._o_line)  # type: ignore[call-overload]  # _o_* fields are ints
        for name, value in record.items():
            getattr(self, name).append(value)
        done, oe = self._settled[int(record["_o_chan"])], int(record["_o_eff"])  # type: ignore[call-overload]  # _o_* fields are ints
        done[0] -= 1
        if oe:
            done[1 if oe > 0 else 2] -= abs(oe)
            done[3] -= 1
        return len(self._o_line) - 1

    def _canonical_order(self) -> None:
        """The rows that matched nothing, and the duplicates, in the order of their files (rows
        without a key first, as the joins meet them), whatever batches the joins waited them in:
        a day matched slice by slice then lists them exactly as a day matched in one pass."""
        rank = {name: k for k, name in enumerate(self._origins)}
        self._his_left.sort(key=lambda e: (bool(e.msg_id), rank.get(e.origin, -1), e.line))
        self._plat_left.sort(key=lambda e: (bool(e.pay_order_no), rank.get(e.origin, -1), e.line))
        self._chan_left.sort(key=lambda e: (rank.get(e.origin, -1), e.line))
        self._his_dup.sort(key=lambda d: (rank.get(d[1].origin, -1), d[1].line))
        self._chan_dup.sort(key=lambda d: (rank.get(d[1].origin, -1), d[1].line))

    def _ids_of(self, records: set[int]) -> dict[int, tuple[str, str, str]]:
        """(order_no, msg_id, pay_order_no) of these records: from the texts the columns kept, or
        read back from each journal by seq."""
        by_origin: dict[int, list[int]] = {}
        for i in records:
            by_origin.setdefault(self._o_origin[i], []).append(i)
        out: dict[int, tuple[str, str, str]] = {}
        for origin, mine in by_origin.items():
            kept = self._kept_texts.get(origin)
            if kept is None:
                if self._texts is None:
                    raise RuntimeError("journal records read without their IDs need Matcher(texts=...) to show them")
                kept = self._texts(self._origins[origin], [self._o_line[i] for i in mine])
            for i in mine:
                out[i] = kept.get(self._o_line[i], ("", "", ""))
        return out

    def _unit_outcomes(self) -> tuple[list[tuple[int, DiffClass, Reason, int, int, int, dict[str, Carried]]], set[int]]:
        """The one pass over every journal record; cheap unless something disagrees. Also the late
        records (accepted today, result on a later day) that neither HIS nor the bill has today:
        not today's business at all."""
        out: list[tuple[int, DiffClass, Reason, int, int, int, dict[str, Carried]]] = []
        o_eff, h_eff, c_eff, flags = self._o_eff, self._h_eff, self._c_eff, self._o_flags
        plat = self._has_platform
        p_eff = self._p_eff if plat else o_eff  # without the platform leg it always agrees
        late = set(positions(flags.tobytes().translate(LATE_BIT), 1))
        absent: set[int] = set()
        for i, (oe, he, ce, g, pe) in enumerate(zip(o_eff, h_eff, c_eff, flags, p_eff)):
            if oe == he == ce == pe and not g & (CONFLICT | DUP_OURS | PROBABLE | FLAG_LATE | PLAT_PENDING):
                continue
            if i in late:
                outcome = self._late_outcome(i, he, ce, g)
                if outcome is None:
                    absent.add(i)
                elif outcome is not MATCHED:
                    out.append(outcome)
                continue
            d = self._o_dir[i]
            earlier: dict[str, Carried] = {}
            if g & DUP_OURS:
                cls, reason = DiffClass.DUPLICATE, Reason.DUPLICATE_OURS
            elif g & CONFLICT:
                cls, reason = DiffClass.STATUS, Reason.MSG_ID_CONFLICT
            elif g & PROBABLE and oe:
                cls, reason = DiffClass.STATUS, Reason.CHANNEL_ID_DIFFERS
            else:
                he2, ce2 = he, ce
                if self._carried and (not self._h_line[i] or not self._c_kind[i]):
                    # Accepted on an earlier day: HIS (and perhaps the bill) had it then.
                    earlier = {side: c for side, c in self._carried.get(self._o_mkey[i], {}).items()
                               if not (self._h_line[i] if side == "his" else self._c_kind[i])}
                    he2 = earlier["his"].effect if "his" in earlier else he
                    ce2 = earlier["channel"].effect if "channel" in earlier else ce
                if earlier and he2 == oe == ce2:
                    out.append((i, DiffClass.CROSS_DAY, Reason.SEEN_PREVIOUS_DAY, he, oe, ce, earlier))
                    continue
                cls, reason = classify(d, he2, oe, ce2, bool(self._h_line[i]) or "his" in earlier, True)
                if g & FLAG_ECHO and he and not ce:
                    cls, reason = DiffClass.DUPLICATE, Reason.DUPLICATE_ORDER_ECHO
                elif cls is DiffClass.LONG and oe == 0 and ce > 0:
                    reason = Reason.OURS_MISSED_PAYMENT
                elif cls is DiffClass.MATCHED and plat:
                    cls, reason = self._platform_outcome(i, oe, pe)
            if cls is not DiffClass.MATCHED:
                out.append((i, cls, reason, he, oe, ce, earlier))
        return out, absent

    def _late_outcome(self, i: int, he: int, ce: int, g: int):
        """A record accepted today whose result came on a later day (a refund started before
        midnight, finished after): HIS has it today (instructions are booked the day they are
        sent), the bill today or on the result's day, our journal on the result's day. Its own
        effect is not today's (0 here); what HIS and the bill say today is checked against it.
        None: neither has it today; MATCHED: nothing moved and they agree; else an outcome."""
        h, c = bool(self._h_line[i]), bool(self._c_kind[i])
        if not h and not c:
            return None
        d = self._o_dir[i]
        real = d * self._o_fen[i] if self._o_state[i] == MOVED else 0
        if g & DUP_OURS:
            return i, DiffClass.DUPLICATE, Reason.DUPLICATE_OURS, he, 0, ce, {}
        if g & CONFLICT:
            return i, DiffClass.STATUS, Reason.MSG_ID_CONFLICT, he, 0, ce, {}
        if (not h or he == real) and (not c or ce == real):
            if real == 0:
                return MATCHED
            return i, DiffClass.CROSS_DAY, Reason.RESULT_NEXT_DAY, he, 0, ce, {}
        if g & PROBABLE and real:
            return i, DiffClass.STATUS, Reason.CHANNEL_ID_DIFFERS, he, 0, ce, {}
        cls, reason = classify(d, he, real, ce, h, True)
        if cls is DiffClass.LONG and real == 0 and ce > 0:
            reason = Reason.OURS_MISSED_PAYMENT
        return i, cls, reason, he, 0, ce, {}

    def _unit_totals(self, totals: dict[Channel, ChannelTotals], unit_diffs: dict[int, Channel], absent: set[int]) -> None:
        """Per channel sums over all journal records at C speed: byte masks per channel and
        direction, `compress` for the sums, popcounts of and-ed masks for the record counts. Late
        records count for HIS and the bill where they have them today, never for our side."""
        n = len(self._o_chan)
        chan_bytes, dir_bytes = self._o_chan.tobytes(), self._o_dir.tobytes()
        moved = {name: bits(getattr(self, name).tobytes(), MOVED)
                 for name in ("_o_state", "_h_state", "_c_state") + (("_p_state",) if self._has_platform else ())}
        moved["_o_state"] &= ~int.from_bytes(self._o_flags.tobytes().translate(LATE_BIT), "little")
        for code in sorted(set(chan_bytes) | set(self._settled)):
            in_channel = bits(chan_bytes, code)
            t = totals.setdefault(Channel(code), ChannelTotals())
            done = self._settled.get(code)
            if done:  # records concluded in their slices: every side agrees (reconcile.slices)
                records, collected, refunded, moving = done
                t.transactions += records
                t.matched += records
                for side in (t.ours, t.his, t.chan) + ((t.plat,) if self._has_platform else ()):
                    side.collected += collected
                    side.refunded += refunded
                    side.records += moving
            count = in_channel.bit_count() - sum(1 for i in absent if chan_bytes[i] == code)
            t.transactions += count
            t.matched += count - sum(1 for ch in unit_diffs.values() if ch == code)
            for d in (COLLECT, -COLLECT):
                mask_bits = in_channel & bits(dir_bytes, d & 0xFF)
                if not mask_bits:
                    continue
                mask = mask_bits.to_bytes(n, "little")
                sides = [(t.ours, self._o_eff, "_o_state"), (t.his, self._h_eff, "_h_state"), (t.chan, self._c_eff, "_c_state")]
                if self._has_platform:
                    sides.append((t.plat, self._p_eff, "_p_state"))
                for side, eff, state in sides:
                    total = sum(compress(eff, mask))
                    if d > 0:
                        side.collected += total
                    else:
                        side.refunded -= total
                    side.records += (mask_bits & moved[state]).bit_count()

    # -- presenting ------------------------------------------------------------------------------
    def _diff(self, cls: DiffClass, reason: Reason, channel: Channel, direction: int, order_no: str, msg_id: str, pay_order_no: str, his: SideView | None, ours: SideView | None, chan: SideView | None, he: int, oe: int, ce: int,
              plat: SideView | None = None, pe: int = 0) -> Difference:
        key = f"{cls.value}|{reason.value}|{int(channel)}|{direction}|{order_no}|{msg_id}|{pay_order_no}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        self._ids[digest] += 1
        n = self._ids[digest]
        diff_id = f"{self.day_id}-{digest}" + (f"-{n}" if n > 1 else "")
        times = [v.at for v in (his, ours, chan) if v is not None and v.at]
        near = any(_near_midnight(t) for t in times)
        return Difference(diff_id, cls, reason, channel, direction, order_no, msg_id, pay_order_no, his, ours, chan, he, oe, ce, near, plat, pe)

    def _view_his(self, i: int) -> SideView | None:
        if not self._h_line[i]:
            return None
        return SideView(f"{self._origins[self._h_origin[i]]} line {self._h_line[i]}", self._h_fen[i], State(self._h_state[i]))

    def _view_ours(self, i: int, pay_order_no: str) -> SideView:
        where = f"{self._origins[self._o_origin[i]]} #{self._o_line[i]}"
        return SideView(where, self._o_fen[i], State(self._o_state[i]), pay_order_no, self._fmt_time(self._o_at[i]))

    def _view_chan(self, i: int) -> SideView | None:
        if not self._c_kind[i] and i not in self._c_extra:
            return None
        where = " + ".join([self._chan_where(i)] + self._c_extra.get(i, [])) if self._c_kind[i] else " + ".join(self._c_extra[i])
        return SideView(where, self._c_fen[i], State(self._c_state[i]))

    def _view_plat(self, i: int) -> SideView | None:
        if not self._has_platform or not self._p_line[i]:
            return None
        return SideView(f"{self._origins[self._p_origin[i]]} line {self._p_line[i]}", self._p_fen[i], State(self._p_state[i]))

    def _view_entry(self, e: Entry | None) -> SideView | None:
        if e is None:
            return None
        return SideView(e.where, e.fen, State(e.state), e.pay_order_no, self._fmt_time(e.at))



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
