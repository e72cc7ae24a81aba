"""What the screens show, as plain frozen values, and which screen shows it: pure, no Kivy.

`CashierView` is a snapshot of the cashier side of the terminal service (built by
`terminal.ui.adapter` from the real service, or by tests directly); `route()` is the one rule that
picks the screen from the snapshot and from where the cashier navigated by hand. Keeping both here
means the whole screen logic is testable without a window.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Protocol

from protocol.amount import Direction, format_yuan
from protocol.messages import PayChannel, PayStatus
from terminal.receipt import Receipt
from terminal.texts import Text
from terminal.view import OriginalPayment


def display_yuan(fen: int) -> str:
    """12345650 -> "123,456.50": protocol.amount's format with thousands grouped for the eye."""
    whole, _, cents = format_yuan(fen).partition(".")
    return f"{int(whole):,}.{cents}"


class Phase(enum.Enum):
    IDLE = "idle"
    INSTRUCTION = "instruction"  # shown, not yet ready for a scan (e.g. queued behind another)
    AWAITING_SCAN = "awaiting_scan"
    PAYING = "paying"  # a payment call is in flight or the patient is confirming on the phone
    AWAITING_SUPERVISOR = "awaiting_supervisor"
    REFUNDING = "refunding"
    RESULT = "result"


class Screen(str, enum.Enum):
    HOME = "home"
    INSTRUCTION = "instruction"
    SCAN = "scan"
    PAYING = "paying"
    REFUND_PIN = "refund_pin"
    RESULT = "result"
    HISTORY = "history"
    ADMIN_PIN = "admin_pin"
    SETTINGS = "settings"


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    qty: str
    amount_fen: int


@dataclass(frozen=True, slots=True)
class Order:
    """The instruction in front of the cashier; the patient's name is already masked."""

    order_no: str
    direction: Direction
    amount_fen: int
    patient: str | None = None
    items: tuple[Item, ...] = ()
    channel: PayChannel | None = None
    original: OriginalPayment | None = None  # a refund: the payment it goes back against, as the service found it


@dataclass(frozen=True, slots=True)
class Outcome:
    """The last finished instruction, for the result screen and the receipt."""

    order_no: str
    direction: Direction
    amount_fen: int
    pay_status: PayStatus
    finished_at: float  # unix seconds
    channel: PayChannel | None = None
    pay_order_no: str = ""
    reason: Text | None = None  # plain words for anything but a simple success
    error_code: str | None = None
    patient: str | None = None
    items: tuple[Item, ...] = ()
    msg_id: str = ""  # the HIS instruction's msg_id: the service finds the receipt by it

    @property
    def ok(self) -> bool:
        return self.pay_status in (PayStatus.SUCCESS, PayStatus.REFUNDED) and self.error_code is None

    @property
    def key(self) -> tuple[str, float, str]:
        return (self.order_no, self.finished_at, self.pay_status.value)


@dataclass(frozen=True, slots=True)
class PinState:
    tries_left: int
    max_tries: int
    locked_until: float = 0.0  # unix seconds; 0 when not locked
    wrong: bool = False  # the last PIN entered was wrong


@dataclass(frozen=True, slots=True)
class ChannelTotal:
    channel: PayChannel
    count: int
    collected_fen: int
    refunded_fen: int


@dataclass(frozen=True, slots=True)
class HistoryRow:
    order_no: str
    direction: Direction
    amount_fen: int
    pay_status: PayStatus
    finished_at: float
    channel: PayChannel | None = None
    pay_order_no: str = ""
    reason: Text | None = None
    msg_id: str = ""  # the HIS instruction's msg_id: the service finds the receipt by it


@dataclass(frozen=True, slots=True)
class About:
    device_id: str
    firmware_version: str
    model: str = ""
    serial_no: str = ""
    merchant: Text = Text("", "")
    channel_env: Text = Text("", "")
    sandbox: bool = False  # the payment channels are the sandbox: the screens say "test, no real money"
    admin_pin_set: bool = True  # the configuration has an admin PIN: the settings can be opened


class LinkState(enum.Enum):
    UP = "up"  # the bridge on the cashier PC is connected
    DOWN = "down"
    CONNECTING = "connecting"


class NetState(enum.Enum):
    OK = "ok"
    DOWN = "down"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CashierView:
    phase: Phase
    order: Order | None = None
    message: Text | None = None  # what to do now, or why the last scan was refused
    warning: bool = False  # `message` reports a problem (refused code, declined payment)
    deadline: float | None = None  # unix seconds: when the patient's confirmation times out
    deadline_total_s: float | None = None
    can_cancel: bool = False
    # Handed to a person (issue 17): `message` says what to do; a person presses "check again".
    needs_person: bool = False
    can_recheck: bool = False
    outcome: Outcome | None = None
    pin: PinState | None = None
    link: LinkState = LinkState.DOWN
    network: NetState = NetState.UNKNOWN
    queued: int = 0  # instructions waiting behind the current one
    totals: tuple[ChannelTotal, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class PinAnswer:
    accepted: bool
    message: Text | None = None
    pin: PinState | None = None


class Backend(Protocol):
    """The cashier side of the terminal service, as the screens need it (see adapter.py)."""

    def view(self) -> CashierView: ...
    def subscribe(self, callback: Callable[[], None]) -> None: ...
    def scan(self, code: str) -> Text | None: ...  # a refusal to show, or None when accepted
    def cancel(self) -> None: ...
    def confirm_refund(self, pin: str) -> PinAnswer: ...
    def decline_refund(self) -> None: ...
    def recheck(self) -> None: ...  # a person fixed what an instruction was handed over for
    def dismiss_result(self) -> None: ...
    def history(self, search: str = "") -> list[HistoryRow]: ...
    def about(self) -> About: ...
    def check_admin_pin(self, pin: str) -> PinAnswer: ...
    def receipt(self, msg_id: str) -> "Receipt | None": ...


# The screens a cashier (or admin) can open by hand; the others follow the service.
MANUAL = frozenset({Screen.SCAN, Screen.REFUND_PIN, Screen.HISTORY, Screen.ADMIN_PIN, Screen.SETTINGS})


def route(view: CashierView, manual: Screen | None, result_dismissed: bool) -> Screen:
    """The screen to show. Money first: an instruction or a payment in progress always wins over
    history and settings, and a finished payment shows its result until the cashier closes it."""
    phase = view.phase
    if phase is Phase.PAYING or phase is Phase.REFUNDING:
        return Screen.PAYING
    if phase is Phase.AWAITING_SCAN:
        return Screen.SCAN if manual is Screen.SCAN else Screen.INSTRUCTION
    if phase is Phase.AWAITING_SUPERVISOR:
        return Screen.REFUND_PIN if manual is Screen.REFUND_PIN else Screen.INSTRUCTION
    if phase is Phase.INSTRUCTION:
        return Screen.INSTRUCTION
    if view.outcome is not None and not result_dismissed and (phase is Phase.RESULT or manual is None):
        return Screen.RESULT
    if manual in (Screen.HISTORY, Screen.ADMIN_PIN, Screen.SETTINGS):
        return manual
    return Screen.HOME
