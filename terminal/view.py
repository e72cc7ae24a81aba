"""The POS's one view model and its one screen enum: what the POS shows, as frozen values built
from journal rows.

The terminal service produces `ScreenView`; the Kivy screens render it (terminal.ui.viewmodel binds
its fields to widgets) and the simulator's GET /v1/screen serves it; nobody else reads the journal
for a screen. `Screen` names everything the POS can show. The money state machine's own states
(terminal.machine.State) map to it in `_SCREEN`, here and nowhere else; `route()` adds what the
cashier opened by hand and the device's condition (journal, gateway). Everything here is pure: the
service passes rows, the clock's `now` and transient notices.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol.amount import Amount, Direction, format_amount
from protocol.messages import BillItem, PayChannel, PayStatus, ResultCode
from terminal import texts
from terminal.gateway_watch import GatewayState
from terminal.journal import AttemptRow, InstructionRow, Journal
from terminal.machine import State
from terminal.texts import Text, reason_text


class Screen(enum.Enum):
    """Everything the POS can show: the one enum (issue 11 item 3)."""

    # What the service shows (ScreenView.screen), from machine.State through _SCREEN:
    IDLE = "idle"  # nothing to do (the home screen: today's totals, history, settings)
    AWAITING_SCAN = "awaiting_scan"  # a collection is shown (amount, items); the scanner is armed
    PAYING = "paying"  # channel at work / patient confirming on the phone; countdown to `deadline`
    DECLINED = "declined"  # the channel declined: scan again (new attempt) or cancel (FAILED)
    AWAITING_SUPERVISOR = "awaiting_supervisor"  # a refund is shown; a supervisor enters the PIN
    REFUNDING = "refunding"
    RESULT = "result"  # the last instruction finished; shown until dismissed or the next arrives
    # What route() adds: the device cannot take payments (shown instead of IDLE) ...
    JOURNAL_PROBLEM = "journal_problem"  # the journal is locked (integrity) or cannot be written
    DEVICE_DISABLED = "device_disabled"  # the provider disabled this POS at the gateway
    GATEWAY_UNREACHABLE = "gateway_unreachable"  # no connection to the payment gateway
    # ... and what the cashier opens by hand.
    CAMERA_SCAN = "camera_scan"  # AWAITING_SCAN / DECLINED: the camera instead of the wedge scanner
    REFUND_PIN = "refund_pin"  # AWAITING_SUPERVISOR: the supervisor's PIN pad
    ADMIN_PIN = "admin_pin"  # the admin's PIN pad: settings, or clearing the supervisor PIN's lockout
    HISTORY = "history"
    SETTINGS = "settings"
    NEEDS_PERSON = "needs_person"  # the open "needs a person" cases (issue 17), with "check again"


_SCREEN = {
    State.QUEUED: Screen.IDLE,
    State.AWAITING_SCAN: Screen.AWAITING_SCAN,
    State.DECLINED: Screen.DECLINED,
    State.PAYING: Screen.PAYING,
    State.USER_PAYING: Screen.PAYING,
    State.CONFIRMING: Screen.PAYING,
    State.REVERSING: Screen.PAYING,
    State.AWAITING_SUPERVISOR: Screen.AWAITING_SUPERVISOR,
    State.REFUNDING: Screen.REFUNDING,
    State.REFUND_CONFIRMING: Screen.REFUNDING,
    # Handed to a person: the same screens, the message saying what to do and a "check again" button.
    State.PAYMENT_NEEDS_PERSON: Screen.PAYING,
    State.REFUND_NEEDS_PERSON: Screen.REFUNDING,
}
_MESSAGE = {
    State.QUEUED: texts.QUEUED,
    State.AWAITING_SCAN: texts.SCAN_PROMPT,
    State.PAYING: texts.PAYING,
    State.USER_PAYING: texts.USER_PAYING,
    State.CONFIRMING: texts.CONFIRMING,
    State.REVERSING: texts.REVERSING,
    State.AWAITING_SUPERVISOR: texts.REFUND_PROMPT,
    State.REFUNDING: texts.REFUNDING,
    State.REFUND_CONFIRMING: texts.REFUNDING,
}


@dataclass(frozen=True, slots=True)
class ResultView:
    msg_id: str
    order_no: str
    direction: Direction
    amount_fen: int
    pay_status: PayStatus
    channel: PayChannel | None
    pay_order_no: str
    error_code: str | None
    message: Text
    finished_at: float

    @property
    def ok(self) -> bool:
        return self.pay_status in (PayStatus.SUCCESS, PayStatus.REFUNDED) and self.error_code != ResultCode.DUPLICATE_ORDER.value

    @property
    def amount(self) -> Amount:
        return Amount(self.direction, self.amount_fen)

    @property
    def went_through(self) -> bool:
        """Money moved as asked and nothing needs saying: the result has a receipt."""
        return self.ok and self.error_code is None

    @property
    def reason(self) -> Text | None:
        """Plain words for anything but a simple success (None for one)."""
        return None if self.went_through else self.message

    @property
    def key(self) -> tuple[str, float, str]:
        return (self.msg_id, self.finished_at, self.pay_status.value)


@dataclass(frozen=True, slots=True)
class NeedsPersonCase:
    """An unfinished instruction handed to a person (terminal.machine.NEEDS_PERSON), for the list."""

    msg_id: str
    order_no: str
    direction: Direction
    amount_fen: int
    channel: PayChannel | None
    message: Text  # what happened and what to do
    since: float  # when it was handed over (service clock)


@dataclass(frozen=True, slots=True)
class OriginalPayment:
    """The collection a refund goes back against: what the supervisor approves the refund against."""

    channel: PayChannel
    paid_fen: int
    refunded_fen: int  # refunded already, or being refunded: no longer refundable
    collected_at: float
    channel_txn_id: str

    @property
    def remaining_fen(self) -> int:
        return max(0, self.paid_fen - self.refunded_fen)


@dataclass(frozen=True, slots=True)
class ScreenView:
    revision: int  # grows with every change; a UI drops views older than the one it shows
    screen: Screen
    state: State | None  # the lifecycle state behind the screen (finer than `screen`)
    msg_id: str | None
    order_no: str | None
    terminal_id: str | None
    direction: Direction | None  # COLLECT or REFUND: the UI must make them impossible to confuse
    amount_fen: int | None
    patient: str | None  # masked ("张*明")
    items: tuple[BillItem, ...]
    channel: PayChannel | None
    message: Text  # what is happening / what to do, in plain words
    notice: Text | None  # the last refusal of a cashier action (bad scan, wrong PIN), until the next change
    deadline: float | None  # service clock time when waiting for the patient ends (countdown)
    countdown_s: float | None  # seconds left at the moment this view was made
    can_scan: bool
    can_cancel: bool
    pin_tries_left: int | None  # AWAITING_SUPERVISOR only
    pin_locked_until: float | None
    queued: int  # further instructions waiting behind this one
    last_result: ResultView | None
    link_up: bool
    original: OriginalPayment | None = None  # a refund: the payment it goes back against (None: not found)
    # The journal cannot take new work (integrity check failed, disk full...): shown until it can.
    journal_problem: Text | None = None
    # A reverse waits out the channel's minimum after the payment (WeChat Pay: 15 s) until this time.
    reverse_at: float | None = None
    # Other unfinished instructions handed to a person (shown as a banner; they step aside).
    needs_person_elsewhere: int = 0
    # The whole wait for the patient, in seconds (the countdown bar's full length), with `deadline`.
    deadline_total_s: float | None = None
    # Whether the gateway answers (terminal.gateway_watch); the service's views say UNKNOWN and the
    # screens' backend fills in what its watch knows.
    gateway: GatewayState = GatewayState.UNKNOWN

    @property
    def needs_person(self) -> bool:
        """The instruction on screen waits for a person (terminal.machine.NEEDS_PERSON)."""
        return self.state is not None and self.state.value.endswith("_needs_person")

    @property
    def can_recheck(self) -> bool:
        return self.needs_person or self.needs_person_elsewhere > 0

    @property
    def needs_person_count(self) -> int:
        """Every open "needs a person" case, the one on screen included."""
        return self.needs_person_elsewhere + (1 if self.needs_person else 0)

    @property
    def shown_message(self) -> Text:
        """What the cashier reads: the last refusal of their action, else what is happening."""
        return self.notice or self.message

    @property
    def warning(self) -> bool:
        """The message reports a problem (a refused action, a decline, a case for a person)."""
        return self.notice is not None or self.screen is Screen.DECLINED or self.needs_person

    @property
    def amount_text(self) -> str | None:
        """'+12.50' / '-12.50'."""
        if self.amount_fen is None or self.direction is None:
            return None
        return format_amount(Amount(self.direction, self.amount_fen))


def needs_person_case(row: InstructionRow) -> NeedsPersonCase:
    return NeedsPersonCase(row.msg_id, row.order_no, row.direction, row.amount_fen, row.channel,
                           texts.needs_person_text(row.last_error_code), row.updated_at)


def result_message(status: PayStatus, error_code: str | None) -> Text:
    reason = reason_text(error_code)
    if reason is not None:
        return reason
    if status is PayStatus.REFUNDED:
        return texts.RESULT_REFUNDED
    if status is PayStatus.SUCCESS:
        return texts.RESULT_SUCCESS
    return texts.NOT_COMPLETED


def result_view(row: InstructionRow, pay_order_no: str, amount_fen: int) -> ResultView:
    assert row.pay_status is not None and row.finished_at is not None
    return ResultView(row.msg_id, row.order_no, row.direction, amount_fen, row.pay_status, row.channel, pay_order_no,
                      row.error_code, result_message(row.pay_status, row.error_code), row.finished_at)


def original_payment(journal: Journal, head: InstructionRow | None) -> OriginalPayment | None:
    """For a refund in front of the cashier: the collection of its order on this device, or None."""
    if head is None or head.direction is not Direction.REFUND:
        return None
    collection = journal.collection(head.order_no)
    if collection is None:
        return None
    return OriginalPayment(collection.channel, collection.paid_fen, journal.committed_refunds_fen(head.order_no),
                           collection.collected_at, collection.channel_txn_id)


def journal_problem(journal: Journal) -> Text | None:
    """What the cashier is told when the journal cannot take new work (issue 14, findings 2 and 6)."""
    if journal.locked:
        return texts.JOURNAL_LOCKED
    if journal.storage == "disk_full":
        return texts.STORAGE_FULL
    if journal.storage is not None:
        return texts.STORAGE_UNAVAILABLE
    return None


def screen_view(*, revision: int, head: InstructionRow | None, attempt: AttemptRow | None, queued: int, now: float,
                last_result: ResultView | None, show_result: bool, notice: Text | None, link_up: bool,
                pin_tries_left: int | None, pin_locked_until: float | None,
                original: OriginalPayment | None = None, reverse_at: float | None = None) -> ScreenView:
    if head is None:
        screen = Screen.RESULT if (show_result and last_result is not None) else Screen.IDLE
        message = last_result.message if screen is Screen.RESULT and last_result is not None else texts.IDLE
        return ScreenView(revision, screen, None, None, None, None, None, None, None, (), None, message, notice, None, None,
                          False, False, None, None, queued, last_result, link_up)
    state = head.state
    if state is State.DECLINED:
        message = texts.declined_text(head.last_error_code)
    elif state in (State.PAYMENT_NEEDS_PERSON, State.REFUND_NEEDS_PERSON):
        message = texts.needs_person_text(head.last_error_code)
    elif state is State.REVERSING and reverse_at is not None:
        message = texts.WAITING_TO_REVERSE
    else:
        message = _MESSAGE.get(state, texts.BUSY)
    deadline = attempt.deadline if (attempt is not None and state in (State.PAYING, State.USER_PAYING, State.CONFIRMING)) else None
    display = head.display
    supervisor = state is State.AWAITING_SUPERVISOR
    return ScreenView(
        revision=revision, screen=_SCREEN[state], state=state, msg_id=head.msg_id, order_no=head.order_no,
        terminal_id=head.terminal_id, direction=head.direction, amount_fen=head.amount_fen,
        patient=None if display is None else display.patient, items=() if display is None else display.items,
        channel=head.channel, message=message, notice=notice, deadline=deadline,
        countdown_s=None if deadline is None else max(0.0, deadline - now),
        deadline_total_s=None if deadline is None or attempt is None else max(1.0, deadline - attempt.started_at),
        can_scan=state in (State.AWAITING_SCAN, State.DECLINED),
        can_cancel=state in (State.AWAITING_SCAN, State.DECLINED, State.USER_PAYING, State.AWAITING_SUPERVISOR),
        pin_tries_left=pin_tries_left if supervisor else None, pin_locked_until=pin_locked_until if supervisor else None,
        queued=queued, last_result=last_result, link_up=link_up, original=original, reverse_at=reverse_at,
    )


# The screens a cashier (or an admin) opens by hand; the others follow the service.
BY_HAND = frozenset({Screen.CAMERA_SCAN, Screen.REFUND_PIN, Screen.ADMIN_PIN, Screen.HISTORY, Screen.SETTINGS,
                     Screen.NEEDS_PERSON})
_MONEY_MOVING = frozenset({Screen.PAYING, Screen.REFUNDING})


def device_problem(view: ScreenView) -> Screen | None:
    """Why this POS cannot take a payment now, worst first (None: it can)."""
    if view.journal_problem is not None:
        return Screen.JOURNAL_PROBLEM
    if view.gateway is GatewayState.DISABLED:
        return Screen.DEVICE_DISABLED
    if view.gateway is GatewayState.UNREACHABLE:
        return Screen.GATEWAY_UNREACHABLE
    return None


def route(view: ScreenView, manual: Screen | None, result_dismissed: bool) -> Screen:
    """The screen to show, from the service's view and what the cashier opened by hand. Money
    first: an instruction or a payment in progress always wins over history and settings, and a
    finished one shows its result until the cashier closes it. An instruction handed to a person
    does not hold the screen (nothing moves until a person acts): the home screen counts the open
    cases and opens their list. A device that cannot take payments says why instead of "waiting"."""
    screen = view.screen
    if screen in _MONEY_MOVING and not view.needs_person:
        return screen
    if screen in (Screen.AWAITING_SCAN, Screen.DECLINED):
        return Screen.CAMERA_SCAN if manual is Screen.CAMERA_SCAN else screen
    if screen is Screen.AWAITING_SUPERVISOR:
        # the admin PIN pad here clears the supervisor PIN's lockout
        return manual if manual in (Screen.REFUND_PIN, Screen.ADMIN_PIN) else screen
    if view.last_result is not None and not result_dismissed and (screen is Screen.RESULT or manual is None):
        return Screen.RESULT
    if manual in (Screen.HISTORY, Screen.ADMIN_PIN, Screen.SETTINGS, Screen.NEEDS_PERSON):
        return manual
    return device_problem(view) or Screen.IDLE
