"""The normalized record every source is read into, the classes of difference, and `Difference`.

Hot paths (parsers, matcher) move records as plain tuples laid out like `Entry`, because a
million dataclass instances per source cost seconds and hundreds of megabytes; `Entry` names the
same layout for everything that is not per-row (leftovers, differences, tests).

Direction is an int: +1 collect, -1 refund. `State` says whether the money of a record moved.
A record's *effect* is its signed fen if it moved, else 0: the unit in which every comparison and
every total is made.
"""

from __future__ import annotations

import enum
from array import array
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

COLLECT = 1
REFUND = -1


class State(enum.IntEnum):
    NOT_MOVED = 0  # failed, closed, reversed, refund failed: no money moved
    MOVED = 1  # collected (direction +1) or refunded (direction -1)
    PENDING = 2  # the source does not know yet (HIS waiting for a result, an unfinished instruction)
    REVERSAL = 3  # a bill row giving back (part of) its trade's payment: a reversed payment (撤销)


class Channel(enum.IntEnum):
    UNKNOWN = 0
    WECHAT = 1
    ALIPAY = 2
    UNIONPAY = 3

    @property
    def label(self) -> str:
        return _CHANNEL_LABELS[self]


_CHANNEL_LABELS = {
    Channel.UNKNOWN: "未知 Unknown",
    Channel.WECHAT: "微信支付 WeChat Pay",
    Channel.ALIPAY: "支付宝 Alipay",
    Channel.UNIONPAY: "银联 UnionPay",
}

# Protocol names (protocol.messages.PayChannel values) to our codes, and back.
CHANNEL_BY_NAME = {"WECHAT": Channel.WECHAT, "ALIPAY": Channel.ALIPAY, "UNIONPAY": Channel.UNIONPAY}

# Flags on an ours record.
FLAG_ECHO = 1  # a result replayed for a second '+' of a paid order (duplicate_order): moves nothing
FLAG_LATE = 16  # accepted on the day, its result on a later day: the result is not this day's (reconcile.units has 2..8)


class Entry(NamedTuple):
    """One record of one source. Parsers yield plain tuples in exactly this order (minus `origin`)."""

    line: int  # line in the file (bills, HIS) or row id (journal)
    order_no: str  # HIS order number (channel: the merchant order number, out_trade_no)
    msg_id: str  # the instruction's msg_id ("" where the source has none)
    direction: int  # COLLECT or REFUND
    fen: int  # unsigned amount in fen
    state: int  # State
    channel: int  # Channel
    pay_order_no: str  # channel transaction id (collections) or refund id ("" if none)
    ref: str  # secondary reference: out_refund_no / Alipay out_request_no / flags-free text
    at: object  # when: text as the source writes it, or epoch seconds (journal)
    flags: int = 0
    origin: str = ""  # file it came from (set when kept beyond the hot path)

    @property
    def effect(self) -> int:
        return effect_of(self.direction, self.fen, self.state)

    @property
    def where(self) -> str:
        return f"{self.origin} line {self.line}" if self.origin else f"line {self.line}"


def flatten(batches: Iterable[list[tuple]]) -> Iterator[tuple]:
    """Parsers yield batches (lists of Entry-layout tuples): one generator step per few thousand rows."""
    for batch in batches:
        yield from batch


# A refund's key is its channel id's hash with these bits flipped: a WeChat refund id or Alipay trade
# number then never meets the payment key of the same number (Alipay names refunds by the trade).
REFUND_KEY_BITS = 0x5BD1E9955BD1E995


def funds_key(channel_id: str, direction: int) -> int:
    """The 8-byte key a journal record and a bill row meet on: hash(channel id), flipped for refunds.

    Python's string hash (SipHash, 64 bits) is per process, which is all a join needs: both sides
    are hashed by the process that joins them. Two different ids share a key with probability
    2**-64 per pair: a million-row day has a chance in ten million of one such pair."""
    if not channel_id:
        return 0
    key = hash(channel_id)
    return key ^ REFUND_KEY_BITS if direction < 0 else key


@dataclass
class Columns:
    """Our journal's records, column by column, IDs as 8-byte keys: a million dataclasses would cost
    seconds and gigabytes, and a million strings of IDs most of a gigabyte."""

    line: array  # 'q': the journal's seq
    msg_key: array  # 'q': hash(msg_id) (empty when read for the funds join only)
    order_key: array  # 'q': hash(order_no) (idem)
    funds: array  # 'q': funds_key(pay_order_no, direction); 0 for none and for replayed results
    direction: array  # 'b'
    fen: array  # 'q'
    state: array  # 'b'
    channel: array  # 'b'
    at: array  # 'q': epoch seconds (empty when read for the funds join only)
    flags: array  # 'b'
    texts: dict[int, tuple[str, str, str]] | None = None  # seq -> (order_no, msg_id, pay_order_no), when kept

    @classmethod
    def empty(cls, keep_text: bool = False) -> "Columns":
        return cls(array("q"), array("q"), array("q"), array("q"), array("b"), array("q"), array("b"), array("b"), array("q"), array("b"),
                   {} if keep_text else None)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple], *, keep_text: bool = True) -> "Columns":
        """From Entry-layout tuples (line, order_no, msg_id, direction, fen, state, channel, pay_order_no, ref, at[, flags])."""
        rows = list(rows)
        c = cls.empty(keep_text)
        c.append(array("q", [t[0] for t in rows]), [t[1] for t in rows], [t[2] for t in rows], array("b", [t[3] for t in rows]),
                 array("q", [t[4] for t in rows]), array("b", [t[5] for t in rows]), array("b", [t[6] for t in rows]), [t[7] for t in rows],
                 array("q", [t[9] if type(t[9]) is int else 0 for t in rows]), array("b", [t[10] if len(t) > 10 else 0 for t in rows]))
        return c

    def append(self, line: array, order_no: list[str], msg_id: list[str], direction: array, fen: array, state: array, channel: array,
               pay_order_no: list[str], at: array, flags: array, *, with_ids: bool = True) -> None:
        """Add records given as columns; IDs turn into keys here (at C speed: map over the lists)."""
        if with_ids:
            self.msg_key.extend(array("q", map(hash, msg_id)))
            self.order_key.extend(array("q", map(hash, order_no)))
        funds = array("q", map(hash, pay_order_no))  # hash("") is 0: no id, no key
        for k in _positions(direction.tobytes(), 0xFF):  # refunds: a few in a hundred
            if funds[k]:
                funds[k] ^= REFUND_KEY_BITS
        for k in _positions(flags.tobytes(), FLAG_ECHO):  # a replayed result has no bill row of its own
            funds[k] = 0
        self.funds.extend(funds)
        for name, values in (("line", line), ("direction", direction), ("fen", fen), ("state", state), ("channel", channel), ("flags", flags)):
            getattr(self, name).extend(values)
        if with_ids:  # the bill join needs no times either
            self.at.extend(at)
        if self.texts is not None:
            self.texts.update(zip(line, zip(order_no, msg_id, pay_order_no)))

    def extend(self, other: "Columns") -> None:
        for name in ("line", "msg_key", "order_key", "funds", "direction", "fen", "state", "channel", "at", "flags"):
            getattr(self, name).extend(getattr(other, name))
        if self.texts is not None and other.texts is not None:
            self.texts.update(other.texts)

    def __len__(self) -> int:
        return len(self.line)

    def rows(self) -> Iterator[Entry]:
        """The records with their IDs (only when read with keep_text)."""
        if self.texts is None:
            raise ValueError("these columns were read without their IDs (keep_text=False)")
        for k in range(len(self)):
            order_no, msg_id, pay = self.texts[self.line[k]]
            yield Entry(self.line[k], order_no, msg_id, self.direction[k], self.fen[k], self.state[k], self.channel[k], pay, "", self.at[k],
                        self.flags[k])


def _positions(data: bytes, value: int) -> Iterator[int]:
    k = data.find(value)
    while k >= 0:
        yield k
        k = data.find(value, k + 1)


def effect_of(direction: int, fen: int, state: int) -> int:
    if state == State.MOVED:
        return direction * fen
    return -direction * fen if state == State.REVERSAL else 0


class DiffClass(enum.Enum):
    MATCHED = "matched"
    LONG = "long"  # 长款: the hospital holds money HIS does not show
    SHORT = "short"  # 短款: HIS shows money the channel does not have
    AMOUNT = "amount_mismatch"
    STATUS = "status_mismatch"
    DUPLICATE = "duplicate"
    CROSS_DAY = "cross_day"  # 跨日: only midnight parts the records; nothing to do

    @property
    def label(self) -> str:
        return _CLASS_LABELS[self]

    @property
    def informational(self) -> bool:
        """Listed, but nothing to resolve: it does not keep the day open (exit status 0)."""
        return self is DiffClass.CROSS_DAY


_CLASS_LABELS = {
    DiffClass.MATCHED: "平账 Matched",
    DiffClass.LONG: "长款 Long",
    DiffClass.SHORT: "短款 Short",
    DiffClass.AMOUNT: "金额不符 Amount mismatch",
    DiffClass.STATUS: "状态不符 Status mismatch",
    DiffClass.DUPLICATE: "重复 Duplicate",
    DiffClass.CROSS_DAY: "跨日 Cross-midnight",
}

DIFF_CLASSES = tuple(c for c in DiffClass if c is not DiffClass.MATCHED)


class Reason(enum.Enum):
    """Why a difference is what it is: drives the explanation and the advice in the report."""

    HIS_MISSING = "his_missing"  # HIS has no row for money the channel holds
    HIS_NOT_PAID = "his_not_paid"  # HIS has the order, but not as paid (write-back failed)
    CHANNEL_MISSING = "channel_missing"  # HIS shows money the channel bill does not have
    REFUND_CHANNEL_ONLY = "refund_channel_only"  # the channel refunded; HIS does not show it
    REFUND_HIS_ONLY = "refund_his_only"  # HIS shows a refund the channel did not make
    AMOUNT_HIS_CHANNEL = "amount_his_channel"
    AMOUNT_OURS = "amount_ours"  # HIS and channel agree; our journal says another amount
    OURS_MISSING = "ours_missing"  # HIS and channel agree; our journals have no such instruction
    OURS_DISAGREES = "ours_disagrees"  # HIS and channel agree; our journal's state differs
    MSG_ID_CONFLICT = "msg_id_conflict"  # HIS row and our instruction share a msg_id, not the order
    DUPLICATE_HIS_ROW = "duplicate_his_row"
    DUPLICATE_CHANNEL_ROW = "duplicate_channel_row"
    DUPLICATE_OURS = "duplicate_ours"  # the same msg_id in two journals
    DUPLICATE_ORDER_ECHO = "duplicate_order_echo"  # HIS booked a duplicate_order reply as a payment
    SECOND_PAYMENT = "second_payment"  # the channel took a second payment for an instruction already paid
    OURS_MISSED_PAYMENT = "ours_missed_payment"  # the POS believes the payment failed; the channel holds it
    CHANNEL_ID_DIFFERS = "channel_id_differs"  # amounts agree, but the bill's transaction id is not our result's
    RESULT_NEXT_DAY = "result_next_day"  # accepted today, result after midnight: HIS (and the bill) today, our result later
    SEEN_PREVIOUS_DAY = "seen_previous_day"  # our result today; HIS (and the bill) had it on the day it was accepted
    # The platform leg (the gateway's ledger, reconcile.platform), where HIS, ours and the channel agree:
    PLATFORM_MISSING = "platform_missing"  # the gateway's ledger has no record of money that moved
    PLATFORM_DISAGREES = "platform_disagrees"  # the gateway's ledger records another outcome
    PLATFORM_AMOUNT = "platform_amount"  # the gateway's ledger records another amount
    PLATFORM_IN_FLIGHT = "platform_in_flight"  # the gateway has not finished it (paying, reversing, refunding)
    PLATFORM_ONLY = "platform_only"  # the gateway's ledger records money no other source has


@dataclass(frozen=True, slots=True)
class SideView:
    """What one source says about a transaction."""

    where: str  # "his.csv line 12", "bridge.db #42", "wechat-2026-11-22.csv line 7"
    fen: int
    state: State
    pay_order_no: str = ""
    at: str = ""


@dataclass(frozen=True, slots=True)
class Carried:
    """What HIS or the bill said on `day` about an instruction whose result came on a later day: the
    later day's run finds it here (reconcile.store) and need not call it missing."""

    day: str  # "2026-11-22"
    msg_id: str
    side: str  # "his" or "channel"
    view: SideView
    effect: int  # signed fen, as on that day


@dataclass(frozen=True, slots=True)
class Difference:
    diff_id: str
    cls: DiffClass
    reason: Reason
    channel: Channel
    direction: int
    order_no: str
    msg_id: str
    pay_order_no: str
    his: SideView | None
    ours: SideView | None
    chan: SideView | None
    his_effect: int  # signed fen moved according to HIS
    ours_effect: int
    chan_effect: int
    near_midnight: bool = False  # may be a cross-day timing difference: check the next day's bill
    plat: SideView | None = None  # the platform leg (the gateway's ledger), when it was given
    plat_effect: int = 0

    @property
    def position(self) -> int:
        """Fen the hospital holds beyond what HIS shows (+) or below it (-)."""
        return self.chan_effect - self.his_effect
