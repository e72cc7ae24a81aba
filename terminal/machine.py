"""The instruction lifecycle as a transition table: pure, no I/O (h11's `_state.py` in spirit).

Collection (+)
    QUEUED --SHOW--> AWAITING_SCAN --SCAN--> PAYING (journal: "about to pay with out_trade_no X")
    PAYING --PAID--> FINISHED(SUCCESS)        --USER_PAYING--> USER_PAYING (poll until the deadline)
           --DECLINED--> DECLINED (cashier: SCAN again = new attempt, or CANCEL -> FAILED)
           --ORDER_REFUSED--> FINISHED(FAILED): the gateway refused the order itself before calling the
             channel (paid or being paid at another window of the hospital, or above its limit): no
             other code can help, so HIS hears it now
           --UNKNOWN--> CONFIRMING (query before deciding)
    USER_PAYING/CONFIRMING --GIVE_UP--> REVERSING --REVERSED--> FINISHED(CLOSED)
    AWAITING_SCAN --CANCEL--> FINISHED(CLOSED, cancelled);  USER_PAYING --CANCEL--> REVERSING
    QUEUED --DUPLICATE--> FINISHED(SUCCESS, duplicate_order: the original collection, nothing charged)
    QUEUED --DUPLICATE_OTHER_AMOUNT--> FINISHED(FAILED, duplicate_order: collected before with another amount)
    QUEUED --REFUSE--> FINISHED(FAILED, error_code = the protocol refusal: unknown_terminal, bad_amount, ...)
    QUEUED/AWAITING_SCAN/DECLINED --CLOSE--> FINISHED(CLOSED, expired / withdrawn: his-interface 1.1 C,
    terminal.his_outcomes); a withdrawal while the patient confirms is USER_PAYING --CANCEL--> REVERSING
Refund (-)
    QUEUED --ASK_SUPERVISOR--> AWAITING_SUPERVISOR --SUPERVISOR_OK--> REFUNDING (amount reserved)
    REFUNDING --REFUNDED--> FINISHED(REFUNDED)   --REFUND_PENDING--> REFUND_CONFIRMING (query)
    REFUND_CONFIRMING --REFUND_UNSEEN--> REFUNDING (call again: idempotent by out_refund_no)
    QUEUED --NOT_REFUNDABLE--> FINISHED(REFUND_FAILED)   AWAITING_SUPERVISOR --SUPERVISOR_DECLINED--> ...
    QUEUED --REFUSE_REFUND--> FINISHED(REFUND_FAILED, error_code = the protocol refusal)
    QUEUED/AWAITING_SUPERVISOR --CLOSE_REFUND--> FINISHED(REFUND_FAILED, expired / withdrawn)
Needs a person (issue 17): when asking the channel again cannot settle it (a reply we cannot verify,
a reverse that keeps failing, WeChat refund CHANGE, a refund that stays unconfirmed), within a
bounded retry budget (`Limits`):
    CONFIRMING/USER_PAYING/REVERSING --HAND_OVER--> PAYMENT_NEEDS_PERSON --RECHECK--> CONFIRMING
    REFUND_CONFIRMING --HAND_OVER--> REFUND_NEEDS_PERSON --RECHECK--> REFUND_CONFIRMING
These are not ended (no result: money may have moved); HIS sees them through a progress event
(`needs_person`, the reason and what to do), the gateway lists them (`gateway-admin alarms list`),
and a person asks the POS to check again once the cause is fixed (RECHECK).
A refusal is journaled and finished in the commit that accepts the instruction, so it is a sealed,
signed result like any other (his-interface 1.1 A) and never reaches the cashier.
After a restart, PAYING and REFUNDING mean "the call may or may not have reached the channel":
RESTART turns them into CONFIRMING / REFUND_CONFIRMING, so nothing is ever paid twice.

Money rules the table enforces (and tests/terminal/test_machine.py checks by property):
- FINISHED(SUCCESS) is reached only on the channel's confirmation (PAID) or a duplicate;
- from a state where money may have been taken (PAYING, CONFIRMING, USER_PAYING, REVERSING) the only
  ways out are the channel's word: PAID, DECLINED (nothing taken), REVERSED (nothing remains taken),
  or the gateway's refusal to call the channel at all (ORDER_REFUSED: nothing taken).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol.amount import Amount, Direction
from protocol.messages import PayStatus, Progress, ResultCode
from terminal.channels.base import PayState, ReverseState, RefundState


class Kind(enum.Enum):
    """The instruction's kind for the transition table and the journal: the direction of its
    `Amount`, named as the journal stores it ("collect" / "refund")."""

    COLLECT = "collect"
    REFUND = "refund"

    @classmethod
    def of(cls, amount: Amount) -> Kind:
        return cls.REFUND if amount.is_refund else cls.COLLECT

    @property
    def direction(self) -> Direction:
        return Direction.REFUND if self is Kind.REFUND else Direction.COLLECT


class State(enum.Enum):
    QUEUED = "queued"
    AWAITING_SCAN = "awaiting_scan"
    PAYING = "paying"
    USER_PAYING = "user_paying"
    CONFIRMING = "confirming"
    DECLINED = "declined"
    REVERSING = "reversing"
    AWAITING_SUPERVISOR = "awaiting_supervisor"
    REFUNDING = "refunding"
    REFUND_CONFIRMING = "refund_confirming"
    PAYMENT_NEEDS_PERSON = "payment_needs_person"
    REFUND_NEEDS_PERSON = "refund_needs_person"
    FINISHED = "finished"


class Event(enum.Enum):
    SHOW = "show"
    ASK_SUPERVISOR = "ask_supervisor"
    DUPLICATE = "duplicate"
    DUPLICATE_OTHER_AMOUNT = "duplicate_other_amount"
    REFUSE = "refuse"
    REFUSE_REFUND = "refuse_refund"
    NOT_REFUNDABLE = "not_refundable"
    SCAN = "scan"
    CANCEL = "cancel"
    PAID = "paid"
    USER_PAYING = "user_paying"
    DECLINED = "declined"
    ORDER_REFUSED = "order_refused"  # the gateway will not collect this order at all (nothing was taken)
    UNKNOWN = "unknown"
    GIVE_UP = "give_up"
    REVERSED = "reversed"
    REVERSE_AGAIN = "reverse_again"
    SUPERVISOR_OK = "supervisor_ok"
    SUPERVISOR_DECLINED = "supervisor_declined"
    REFUNDED = "refunded"
    REFUND_PENDING = "refund_pending"
    REFUND_UNSEEN = "refund_unseen"
    REFUND_REFUSED = "refund_refused"
    RESTART = "restart"
    CLOSE = "close"  # HIS's bound or wish (1.1 C): expired or withdrawn, nothing under way
    CLOSE_REFUND = "close_refund"
    HAND_OVER = "hand_over"  # the retry budget is spent, or asking again cannot settle it
    RECHECK = "recheck"  # a person fixed the cause: ask the channel again


S, E, F = State, Event, State.FINISHED
# (state, event) -> (next state, the result's pay_status when the next state is FINISHED)
TRANSITIONS: dict[tuple[State, Event], tuple[State, PayStatus | None]] = {
    # collection
    (S.QUEUED, E.SHOW): (S.AWAITING_SCAN, None),
    (S.QUEUED, E.DUPLICATE): (F, PayStatus.SUCCESS),
    (S.QUEUED, E.DUPLICATE_OTHER_AMOUNT): (F, PayStatus.FAILED),
    (S.QUEUED, E.REFUSE): (F, PayStatus.FAILED),
    (S.AWAITING_SCAN, E.SCAN): (S.PAYING, None),
    (S.AWAITING_SCAN, E.CANCEL): (F, PayStatus.CLOSED),
    (S.PAYING, E.PAID): (F, PayStatus.SUCCESS),
    (S.PAYING, E.USER_PAYING): (S.USER_PAYING, None),
    (S.PAYING, E.DECLINED): (S.DECLINED, None),
    (S.PAYING, E.ORDER_REFUSED): (F, PayStatus.FAILED),
    (S.PAYING, E.UNKNOWN): (S.CONFIRMING, None),
    (S.PAYING, E.RESTART): (S.CONFIRMING, None),
    (S.CONFIRMING, E.PAID): (F, PayStatus.SUCCESS),
    (S.CONFIRMING, E.USER_PAYING): (S.USER_PAYING, None),
    (S.CONFIRMING, E.DECLINED): (S.DECLINED, None),
    (S.CONFIRMING, E.UNKNOWN): (S.CONFIRMING, None),
    (S.CONFIRMING, E.GIVE_UP): (S.REVERSING, None),
    (S.USER_PAYING, E.PAID): (F, PayStatus.SUCCESS),
    (S.USER_PAYING, E.USER_PAYING): (S.USER_PAYING, None),
    (S.USER_PAYING, E.UNKNOWN): (S.USER_PAYING, None),
    (S.USER_PAYING, E.DECLINED): (S.DECLINED, None),
    (S.USER_PAYING, E.GIVE_UP): (S.REVERSING, None),
    (S.USER_PAYING, E.CANCEL): (S.REVERSING, None),
    (S.DECLINED, E.SCAN): (S.PAYING, None),
    (S.DECLINED, E.CANCEL): (F, PayStatus.FAILED),
    (S.QUEUED, E.CLOSE): (F, PayStatus.CLOSED),
    (S.AWAITING_SCAN, E.CLOSE): (F, PayStatus.CLOSED),
    (S.DECLINED, E.CLOSE): (F, PayStatus.CLOSED),
    (S.REVERSING, E.REVERSED): (F, PayStatus.CLOSED),
    (S.REVERSING, E.REVERSE_AGAIN): (S.REVERSING, None),
    (S.REVERSING, E.PAID): (F, PayStatus.SUCCESS),  # the channel refused to reverse a paid order
    (S.CONFIRMING, E.HAND_OVER): (S.PAYMENT_NEEDS_PERSON, None),
    (S.USER_PAYING, E.HAND_OVER): (S.PAYMENT_NEEDS_PERSON, None),
    (S.REVERSING, E.HAND_OVER): (S.PAYMENT_NEEDS_PERSON, None),
    (S.PAYMENT_NEEDS_PERSON, E.RECHECK): (S.CONFIRMING, None),
    # refund
    (S.QUEUED, E.ASK_SUPERVISOR): (S.AWAITING_SUPERVISOR, None),
    (S.QUEUED, E.NOT_REFUNDABLE): (F, PayStatus.REFUND_FAILED),
    (S.QUEUED, E.REFUSE_REFUND): (F, PayStatus.REFUND_FAILED),
    (S.AWAITING_SUPERVISOR, E.SUPERVISOR_OK): (S.REFUNDING, None),
    (S.AWAITING_SUPERVISOR, E.SUPERVISOR_DECLINED): (F, PayStatus.REFUND_FAILED),
    (S.AWAITING_SUPERVISOR, E.NOT_REFUNDABLE): (F, PayStatus.REFUND_FAILED),
    (S.QUEUED, E.CLOSE_REFUND): (F, PayStatus.REFUND_FAILED),
    (S.AWAITING_SUPERVISOR, E.CLOSE_REFUND): (F, PayStatus.REFUND_FAILED),
    (S.REFUNDING, E.REFUNDED): (F, PayStatus.REFUNDED),
    (S.REFUNDING, E.REFUND_PENDING): (S.REFUND_CONFIRMING, None),
    (S.REFUNDING, E.REFUND_REFUSED): (F, PayStatus.REFUND_FAILED),
    (S.REFUNDING, E.RESTART): (S.REFUND_CONFIRMING, None),
    (S.REFUND_CONFIRMING, E.REFUNDED): (F, PayStatus.REFUNDED),
    (S.REFUND_CONFIRMING, E.REFUND_PENDING): (S.REFUND_CONFIRMING, None),
    (S.REFUND_CONFIRMING, E.REFUND_UNSEEN): (S.REFUNDING, None),
    (S.REFUND_CONFIRMING, E.REFUND_REFUSED): (F, PayStatus.REFUND_FAILED),
    (S.REFUND_CONFIRMING, E.HAND_OVER): (S.REFUND_NEEDS_PERSON, None),
    (S.REFUND_NEEDS_PERSON, E.RECHECK): (S.REFUND_CONFIRMING, None),
}
del S, E, F

COLLECT_STATES = frozenset({State.QUEUED, State.AWAITING_SCAN, State.PAYING, State.USER_PAYING, State.CONFIRMING,
                            State.DECLINED, State.REVERSING, State.PAYMENT_NEEDS_PERSON, State.FINISHED})
REFUND_STATES = frozenset({State.QUEUED, State.AWAITING_SUPERVISOR, State.REFUNDING, State.REFUND_CONFIRMING,
                           State.REFUND_NEEDS_PERSON, State.FINISHED})
# Money may have left the patient's account and the channel has not said otherwise yet.
MONEY_IN_DOUBT = frozenset({State.PAYING, State.USER_PAYING, State.CONFIRMING, State.REVERSING, State.PAYMENT_NEEDS_PERSON})
# Handed to a person: the service leaves them alone until RECHECK, and they step aside for the
# next instruction (a refund bounced by the bank may wait days; the queue of patients may not).
NEEDS_PERSON = frozenset({State.PAYMENT_NEEDS_PERSON, State.REFUND_NEEDS_PERSON})
# States the service works on by itself (channel calls); the others wait for a person or a turn.
AUTOMATIC = frozenset({State.PAYING, State.USER_PAYING, State.CONFIRMING, State.REVERSING, State.REFUNDING, State.REFUND_CONFIRMING})

PROGRESS: dict[State, Progress] = {
    State.QUEUED: Progress.DELIVERED,
    State.AWAITING_SCAN: Progress.AWAITING_SCAN,
    State.DECLINED: Progress.AWAITING_SCAN,
    State.PAYING: Progress.PAYING,
    State.USER_PAYING: Progress.PAYING,
    State.CONFIRMING: Progress.PAYING,
    State.REVERSING: Progress.REVERSING,
    State.AWAITING_SUPERVISOR: Progress.AWAITING_SUPERVISOR,
    State.REFUNDING: Progress.REFUNDING,
    State.REFUND_CONFIRMING: Progress.REFUNDING,
    # HIS 1.1 C keeps its six states; the hand-over reaches HIS as the progress event `needs_person`.
    State.PAYMENT_NEEDS_PERSON: Progress.PAYING,
    State.REFUND_NEEDS_PERSON: Progress.REFUNDING,
    State.FINISHED: Progress.FINISHED,
}


class IllegalTransition(Exception):
    def __init__(self, kind: Kind, state: State, event: Event) -> None:
        super().__init__(f"{kind.value}: no transition from {state.value} on {event.value}")
        self.kind, self.state, self.event = kind, state, event


# Events that belong to one kind only (their states are common to both).
ONLY_FOR: dict[Event, Kind] = {Event.DUPLICATE: Kind.COLLECT, Event.DUPLICATE_OTHER_AMOUNT: Kind.COLLECT,
                               Event.REFUSE: Kind.COLLECT, Event.ORDER_REFUSED: Kind.COLLECT, Event.REFUSE_REFUND: Kind.REFUND,
                               Event.NOT_REFUNDABLE: Kind.REFUND, Event.CLOSE: Kind.COLLECT,
                               Event.CLOSE_REFUND: Kind.REFUND}


def step(kind: Kind, state: State, event: Event) -> tuple[State, PayStatus | None]:
    """The next state (and final pay_status) or IllegalTransition."""
    found = TRANSITIONS.get((state, event))
    allowed = COLLECT_STATES if kind is Kind.COLLECT else REFUND_STATES
    if found is None or state not in allowed or found[0] not in allowed or ONLY_FOR.get(event, kind) is not kind:
        raise IllegalTransition(kind, state, event)
    return found


def allowed(kind: Kind, state: State, event: Event) -> bool:
    try:
        step(kind, state, event)
    except IllegalTransition:
        return False
    return True


# --- what a channel's answer means for the instruction (pure decisions) -------------------------

# Queries answered "no such order" after a payment whose outcome was unknown: after this many in a
# row we reverse (which also stops a late-arriving request from charging), rather than wait out the
# whole deadline for an order the channel never saw.
NOT_FOUND_LIMIT = 3
# The answers that came but could not be verified (the channel may have acted).
UNVERIFIED = frozenset({PayState.UNVERIFIED, ReverseState.UNVERIFIED, RefundState.UNVERIFIED})


class NeedsPerson(str, enum.Enum):
    """Why an instruction was handed to a person: a stable code (journal, progress event, gateway
    alarm); `terminal.texts.NEEDS_PERSON` says what to do, in the cashier's words."""

    UNVERIFIED_REPLY = "unverified_reply"  # the channel's replies fail verification: it may have acted
    REVERSE_FAILING = "reverse_failing"  # the reverse budget is spent and the payment is still in doubt
    REFUND_ABNORMAL = "refund_abnormal"  # WeChat CHANGE: the bank bounced the refund
    REFUND_UNCONFIRMED = "refund_unconfirmed"  # the refund stays unconfirmed (processing, no status, unknown)


@dataclass(frozen=True, slots=True)
class Limits:
    """The retry budget: how often the POS asks the channel again before a person takes over.
    Defaults fit the channels' documents; `TerminalService(limits=...)` overrides them (tests)."""

    # Unverifiable answers in a row: one may be a reply damaged on the way; two mean the key we hold
    # for the channel is not its key, and asking more cannot help.
    unverified: int = 2
    # Reverse calls for one payment (backoff from the query interval up to 30 s: about 5 minutes).
    reverses: int = 12
    # Refund queries while a refund is not final (PROCESSING, unknown, Alipay without refund_status);
    # backoff up to 60 s: about 18 minutes. Past that the refund is for the merchant platform.
    refund_queries: int = 24
    # Refund calls after the channel says it has no such refund (the same out_refund_no each time).
    refund_calls: int = 3
    # WeChat CHANGE (退款异常) answers before a person: it is not going to heal by itself.
    abnormal: int = 3


@dataclass
class Tally:
    """What one worker has heard so far about its instruction (kept in memory: a restart gives the
    instruction a fresh budget, which is what a person restarting the POS after a fix wants)."""

    unverified: int = 0  # in a row
    reverses: int = 0
    refund_queries: int = 0
    refund_calls: int = 0
    abnormal: int = 0

    def heard(self, state: PayState | ReverseState | RefundState) -> None:
        self.unverified = self.unverified + 1 if state in UNVERIFIED else 0


# Refusals of a collection that concern the order, not the code scanned: another code cannot help.
# duplicate_order: the hospital's gateway holds a collection of this order, under way or paid, from
# another window (or another bridge); bad_amount: the amount is above the hospital's limit.
ORDER_REFUSALS = frozenset({ResultCode.DUPLICATE_ORDER, ResultCode.BAD_AMOUNT})


def after_pay(state: PayState, result_code: ResultCode | None = None) -> Event:
    """The event for the answer to the payment call itself."""
    if state is PayState.FAILED and result_code in ORDER_REFUSALS:
        return Event.ORDER_REFUSED
    return {
        PayState.SUCCESS: Event.PAID,
        PayState.USER_PAYING: Event.USER_PAYING,
        PayState.FAILED: Event.DECLINED,  # merchant_config too: nothing was processed
        PayState.CLOSED: Event.DECLINED,
    }.get(state, Event.UNKNOWN)  # UNKNOWN, UNVERIFIED and (nonsensical) NOT_FOUND: query before deciding


def after_query(state: PayState, *, past_deadline: bool, not_found_streak: int, unverified_streak: int = 0,
                limits: Limits = Limits()) -> Event:
    """The event for a query answer while confirming or while the patient is paying."""
    if state is PayState.SUCCESS:
        return Event.PAID
    if state in (PayState.FAILED, PayState.CLOSED):
        return Event.DECLINED
    if state is PayState.UNVERIFIED and unverified_streak >= limits.unverified:
        return Event.HAND_OVER  # a reverse's answer could not be verified either
    if past_deadline or (state is PayState.NOT_FOUND and not_found_streak >= NOT_FOUND_LIMIT):
        return Event.GIVE_UP
    if state is PayState.USER_PAYING:
        return Event.USER_PAYING
    return Event.UNKNOWN


def reverse_wait(started_at: float, now: float, not_before_s: float) -> float:
    """Seconds to wait before a reverse may go out (WeChat: at least 15 s after micropay), 0 if none."""
    return max(0.0, started_at + not_before_s - now)


def after_reverse(state: ReverseState, *, reverses: int = 0, unverified_streak: int = 0, limits: Limits = Limits()) -> Event | None:
    """REVERSED when nothing remains taken; REVERSE_AGAIN to retry; HAND_OVER when the budget is
    spent or the answers cannot be verified; None: the channel refused to reverse, so query to learn
    whether the order was paid (then PAID) or never was (REVERSED)."""
    if state is ReverseState.DONE:
        return Event.REVERSED
    if state is ReverseState.FAILED:
        return None
    if state is ReverseState.UNVERIFIED and unverified_streak >= limits.unverified:
        return Event.HAND_OVER
    if reverses >= limits.reverses:
        return Event.HAND_OVER
    return Event.REVERSE_AGAIN


def after_refused_reverse(query: PayState, *, reverses: int = 0, limits: Limits = Limits()) -> Event:
    if query is PayState.SUCCESS:
        return Event.PAID
    if query in (PayState.FAILED, PayState.CLOSED, PayState.NOT_FOUND):
        return Event.REVERSED
    return Event.HAND_OVER if reverses >= limits.reverses else Event.REVERSE_AGAIN


def after_refund(state: RefundState) -> Event:
    return {
        RefundState.SUCCESS: Event.REFUNDED,
        RefundState.FAILED: Event.REFUND_REFUSED,  # merchant_config too: nothing was processed
    }.get(state, Event.REFUND_PENDING)  # PROCESSING, UNKNOWN, UNVERIFIED, ABNORMAL: the query decides


def after_refund_query(state: RefundState, tally: Tally | None = None, limits: Limits = Limits()) -> Event:
    """`tally` counts this query already (refund_queries, abnormal, the unverified streak)."""
    t = tally or Tally()
    if state is RefundState.SUCCESS:
        return Event.REFUNDED
    if state is RefundState.FAILED:
        return Event.REFUND_REFUSED
    if state is RefundState.UNVERIFIED and t.unverified >= limits.unverified:
        return Event.HAND_OVER
    if state is RefundState.ABNORMAL and t.abnormal >= limits.abnormal:
        return Event.HAND_OVER
    if state in (RefundState.NOT_FOUND, RefundState.UNCONFIRMED):
        # Send it again with the same out_refund_no (idempotent at the channel), then query again.
        return Event.HAND_OVER if t.refund_calls >= limits.refund_calls else Event.REFUND_UNSEEN
    if t.refund_queries >= limits.refund_queries:
        return Event.HAND_OVER
    return Event.REFUND_PENDING


def hand_over_reason(kind: Kind, state: PayState | ReverseState | RefundState, unverified_streak: int) -> NeedsPerson:
    """The stable code of a hand-over, from the last answer heard."""
    if unverified_streak and state in UNVERIFIED:
        return NeedsPerson.UNVERIFIED_REPLY
    if kind is Kind.COLLECT:
        return NeedsPerson.REVERSE_FAILING
    if state is RefundState.ABNORMAL:
        return NeedsPerson.REFUND_ABNORMAL
    return NeedsPerson.REFUND_UNCONFIRMED
