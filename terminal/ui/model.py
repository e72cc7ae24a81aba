"""What the screens need besides the service's view model, and the backend they talk to: pure, no Kivy.

The screens render `terminal.view.ScreenView` (the one view model, made by the terminal service) and
show the screen `terminal.view.route()` picks (the one screen enum, `terminal.view.Screen`). This
module adds only what is not the service's: the device's "about" facts, the answer to a PIN typed on
the pad, how amounts are grouped for the eye, and `Backend`, the cashier side of the service as the
screens call it (terminal.ui.adapter.ServiceBackend over a real service; terminal.ui.showcase for
the screenshots).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from terminal.receipt import Receipt
from terminal.texts import Text
from terminal.history import DayTotals, HistoryEntry
from terminal.view import NeedsPersonCase, ScreenView


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


@dataclass(frozen=True, slots=True)
class PinAnswer:
    accepted: bool
    message: Text | None = None
    tries_left: int | None = None  # after a wrong PIN
    locked_until: float = 0.0  # unix seconds; 0 when not locked


class Backend(Protocol):
    """The cashier side of the terminal service, as the screens need it (see adapter.py)."""

    def view(self) -> ScreenView: ...
    def subscribe(self, callback: Callable[[], None]) -> None: ...
    def scan(self, code: str) -> Text | None: ...  # a refusal to show, or None when accepted
    def cancel(self) -> None: ...
    def confirm_refund(self, pin: str) -> PinAnswer: ...
    def decline_refund(self) -> None: ...
    def recheck(self) -> None: ...  # a person fixed what an instruction was handed over for
    def needs_person(self) -> list[NeedsPersonCase]: ...
    def dismiss_result(self) -> None: ...
    def history(self, search: str = "") -> list[HistoryEntry]: ...
    def totals(self) -> DayTotals: ...
    def about(self) -> About: ...
    def check_admin_pin(self, pin: str) -> PinAnswer: ...
    def reset_pin_lockout(self, admin_pin: str) -> PinAnswer: ...
    def receipt(self, msg_id: str) -> "Receipt | None": ...
