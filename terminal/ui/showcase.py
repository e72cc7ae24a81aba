"""Fixed screens for the screenshots (docs/screenshots/) and the layout checks: a backend that shows
the views it is given, and the views themselves, all at one fixed moment (T0) so every run draws the
same pixels.

It never decides anything about money: it returns the views it is given and records the cashier's
actions. The real flows (scan, pay, refund, PIN) are tested against the real TerminalService in
tests/terminal/ui/test_flow.py.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

from protocol.amount import Direction
from protocol.messages import BillItem, PayChannel, PayStatus, ResultCode
from terminal import texts
from terminal.gateway_watch import GatewayState
from terminal.machine import NeedsPerson, State
from terminal.texts import Text
from terminal.ui.model import About, PinAnswer
from terminal.history import ChannelTotals, DayTotals, HistoryEntry
from terminal.view import NeedsPersonCase, OriginalPayment, ResultView, Screen, ScreenView, result_message

if TYPE_CHECKING:
    from terminal.ui.viewmodel import PosViewModel

# A fixed moment, so the screenshots do not change from run to run: 2026-11-23 10:15:32 +08:00.
# The showcase app runs on a clock stopped at T0 (PosViewModel(clock=...)), in this time zone.
T0 = 1795400132.0
TIME_ZONE = "CST-8"  # China Standard Time as a POSIX rule: no time zone database needed


def clock() -> float:
    return T0
ABOUT = About("D-SN-000123", "1.4.2", "HIS-POS-1", "SN000123", Text("示例市人民医院", "Example City Hospital"),
              Text("沙箱（127.0.0.1:18080）", "Sandbox (127.0.0.1:18080)"), sandbox=True)
TOTALS = DayTotals("2026-11-23", (ChannelTotals(PayChannel.WECHAT, 11, 1_236_50, 1, 12_50),
                                  ChannelTotals(PayChannel.ALIPAY, 7, 845_00, 0, 0)))
ITEMS = (BillItem("阿莫西林胶囊 0.25g", "2盒", 36_80), BillItem("血常规检查", "1", 25_00), BillItem("门诊诊查费", "1", 10_00))
PAID = OriginalPayment(PayChannel.WECHAT, 71_80, 0, T0 - 3600, "4200001234202611230000012345")


def _view(**fields: object) -> ScreenView:
    """A view as the service makes one (idle unless `fields` say otherwise), with the cashier PC
    connected and the gateway reachable."""
    view = ScreenView(0, Screen.IDLE, None, None, None, None, None, None, None, (), None, texts.IDLE, None, None, None,
                      False, False, None, None, 0, None, True, gateway=GatewayState.REACHABLE)
    return dataclasses.replace(view, **fields)  # type: ignore[arg-type]  # ScreenView's fields by name, of many types


ORDER_NO = "MZ20261123000123"
COLLECT: dict[str, object] = dict(msg_id="HIS-000010", order_no=ORDER_NO, terminal_id="T01", direction=Direction.COLLECT,
               amount_fen=71_80, patient="张*明", items=ITEMS)
REFUND: dict[str, object] = dict(COLLECT, msg_id="HIS-000011", direction=Direction.REFUND, amount_fen=36_80, items=ITEMS[:1], original=PAID)
# An inpatient deposit: no item list; the channel declined the first code (the patient's balance).
DEPOSIT: dict[str, object] = dict(msg_id="HIS-000012", order_no="ZY20261123000007", terminal_id="T01", direction=Direction.COLLECT,
               amount_fen=2_000_00, patient="李*华")


def _result(order_no: str, direction: Direction, fen: int, status: PayStatus, at: float, channel: PayChannel | None,
            pay_order_no: str, code: ResultCode | None, msg_id: str) -> ResultView:
    error = None if code is None else code.value
    return ResultView(msg_id, order_no, direction, fen, status, channel, pay_order_no, error, result_message(status, error), at)


def views() -> dict[str, ScreenView]:
    ok = _result(ORDER_NO, Direction.COLLECT, 71_80, PayStatus.SUCCESS, T0, PayChannel.WECHAT,
                 "4200001234202611230000012345", None, "HIS-000001")
    failed = _result("MZ20261123000124", Direction.COLLECT, 1_280_00, PayStatus.FAILED, T0, PayChannel.ALIPAY, "",
                     ResultCode.INSUFFICIENT_FUNDS, "HIS-000002")
    refund_failed = _result(ORDER_NO, Direction.REFUND, 36_80, PayStatus.REFUND_FAILED, T0 + 90,
                            PayChannel.WECHAT, "", ResultCode.REFUND_REJECTED, "HIS-000003")
    expired = _result("MZ20261123000125", Direction.COLLECT, 58_00, PayStatus.CLOSED, T0 + 120, None, "",
                      ResultCode.EXPIRED, "HIS-000007")
    withdrawn = _result(ORDER_NO, Direction.REFUND, 36_80, PayStatus.REFUND_FAILED, T0 + 150, None, "",
                        ResultCode.WITHDRAWN, "HIS-000008")
    # The same order sent to two windows: the other window's patient paid first, the gateway refused
    # this one before calling the channel (nothing charged here).
    elsewhere = _result("MZ20261123000126", Direction.COLLECT, 45_60, PayStatus.FAILED, T0 + 180, PayChannel.ALIPAY, "",
                        ResultCode.DUPLICATE_ORDER, "HIS-000009")
    supervisor: dict[str, object] = dict(REFUND, screen=Screen.AWAITING_SUPERVISOR, state=State.AWAITING_SUPERVISOR,
                                         message=texts.REFUND_PROMPT, can_cancel=True, pin_tries_left=3)
    # A refund the patient's bank bounced (WeChat CHANGE), handed to a person (issue 17): the service
    # shows it when nothing else is on; it does not hold the screen, the home screen counts it.
    parked: dict[str, object] = dict(REFUND, screen=Screen.REFUNDING, state=State.REFUND_NEEDS_PERSON,
                                     message=texts.NEEDS_PERSON[NeedsPerson.REFUND_ABNORMAL.value], needs_person_elsewhere=1)
    return {
        "home": _view(),
        "home_needs_person": _view(**parked),
        "instruction_collect": _view(**{**COLLECT, "screen": Screen.AWAITING_SCAN, "state": State.AWAITING_SCAN,
                                        "message": texts.SCAN_PROMPT, "can_scan": True, "can_cancel": True, "queued": 1}),
        "instruction_declined": _view(**{**DEPOSIT, "screen": Screen.DECLINED, "state": State.DECLINED,
                                         "message": texts.declined_text(ResultCode.INSUFFICIENT_FUNDS.value),
                                         "can_scan": True, "can_cancel": True}),
        "paying": _view(**{**COLLECT, "screen": Screen.PAYING, "state": State.USER_PAYING, "message": texts.USER_PAYING,
                           "deadline": T0 + 24.2, "countdown_s": 24.2, "deadline_total_s": 30.0, "can_cancel": True}),
        "result_ok": _view(screen=Screen.RESULT, last_result=ok),
        "result_fail": _view(screen=Screen.RESULT, last_result=failed),
        "result_refund_fail": _view(screen=Screen.RESULT, last_result=refund_failed),
        "result_expired": _view(screen=Screen.RESULT, last_result=expired),
        "result_withdrawn": _view(screen=Screen.RESULT, last_result=withdrawn),
        "result_paid_elsewhere": _view(screen=Screen.RESULT, last_result=elsewhere),
        "instruction_refund": _view(**supervisor),
        "refund_locked": _view(**{**supervisor, "pin_tries_left": 0, "pin_locked_until": T0 + 14 * 60,
                                  "notice": texts.PIN_LOCKED}),
        "journal_locked": _view(screen=Screen.IDLE, journal_problem=texts.JOURNAL_LOCKED),
        "storage_unavailable": _view(screen=Screen.IDLE, journal_problem=texts.STORAGE_UNAVAILABLE),
        "device_disabled": _view(screen=Screen.IDLE, gateway=GatewayState.DISABLED),
        "gateway_unreachable": _view(screen=Screen.IDLE, gateway=GatewayState.UNREACHABLE),
    }


NEEDS_PERSON_CASES = [
    NeedsPersonCase("HIS-000011", "MZ20261123000123", Direction.REFUND, 36_80, PayChannel.WECHAT,
                    texts.NEEDS_PERSON[NeedsPerson.REFUND_ABNORMAL.value], T0 - 1800),
    NeedsPersonCase("HIS-000009", "MZ20261123000098", Direction.COLLECT, 128_00, PayChannel.ALIPAY,
                    texts.NEEDS_PERSON[NeedsPerson.UNVERIFIED_REPLY.value], T0 - 600),
]


# Every state the screenshots show, in their order: (name, the screen the app then shows).
STATES: tuple[tuple[str, str], ...] = (
    ("home", "home"), ("instruction_collect", "instruction"), ("scan", "scan"), ("instruction_declined", "instruction"),
    ("paying", "paying"), ("home_needs_person", "home"), ("needs_person", "needs_person"),
    ("result_ok", "result"), ("instruction_refund", "instruction"), ("refund_pin", "refund_pin"),
    ("refund_locked", "refund_pin"), ("admin_pin_unlock", "admin_pin"),
    ("result_fail", "result"), ("result_refund_fail", "result"), ("result_expired", "result"),
    ("result_withdrawn", "result"), ("result_paid_elsewhere", "result"), ("journal_locked", "problem"), ("storage_unavailable", "problem"),
    ("device_disabled", "problem"), ("gateway_unreachable", "problem"), ("history", "history"), ("admin_pin", "admin_pin"),
    ("admin_pin_unset", "admin_pin"),
    ("settings", "settings"),  # last: a finger on its language buttons changes the language of what follows
)
# States that are a view of the service, and those the cashier opens by hand on top of one:
# (the state it is opened on, the screen opened, what for).
_OPENED_ON = {"scan": ("instruction_collect", Screen.CAMERA_SCAN, ""), "refund_pin": ("instruction_refund", Screen.REFUND_PIN, ""),
              "refund_locked": ("refund_locked", Screen.REFUND_PIN, ""),
              "admin_pin_unlock": ("refund_locked", Screen.ADMIN_PIN, "reset_lockout"),
              "history": ("home", Screen.HISTORY, ""), "admin_pin": ("home", Screen.ADMIN_PIN, "settings"),
              "admin_pin_unset": ("home", Screen.ADMIN_PIN, "settings"), "settings": ("home", Screen.SETTINGS, ""),
              "needs_person": ("home_needs_person", Screen.NEEDS_PERSON, "")}
# A device whose configuration has no admin PIN: the PIN screen says so up front.
NO_ADMIN_PIN = dataclasses.replace(ABOUT, admin_pin_set=False)


def enter(vm: "PosViewModel", backend: "StaticBackend", name: str) -> None:
    """Bring the app to showcase state `name` from wherever it is (main thread; the screen follows
    within a frame). Navigation and closed results of earlier states are forgotten."""
    base, opened, purpose = _OPENED_ON.get(name, (name, None, ""))
    vm.back()
    vm.forget_dismissed()  # the same fixed outcomes are shown again
    backend.current = views()[base]
    vm.about = NO_ADMIN_PIN if name == "admin_pin_unset" else ABOUT
    vm.refresh()
    if opened is not None:
        vm.open(opened.value, purpose or "settings")


def _entry(order_no: str, direction: Direction, fen: int, status: PayStatus, at: float, channel: PayChannel | None,
           pay_order_no: str, code: ResultCode | None, msg_id: str) -> HistoryEntry:
    return HistoryEntry.of(_result(order_no, direction, fen, status, at, channel, pay_order_no, code, msg_id), terminal_id="T01", delivered=True)


HISTORY = [
    _entry("MZ20261123000124", Direction.COLLECT, 1_280_00, PayStatus.FAILED, T0 + 60, PayChannel.ALIPAY, "",
           ResultCode.INSUFFICIENT_FUNDS, "HIS-000005"),
    _entry("MZ20261123000123", Direction.REFUND, 36_80, PayStatus.REFUNDED, T0 + 30, PayChannel.WECHAT, "50001234", None,
           "HIS-000004"),
    _entry("MZ20261123000123", Direction.COLLECT, 71_80, PayStatus.SUCCESS, T0, PayChannel.WECHAT, "4200001234", None,
           "HIS-000001"),
    _entry("MZ20261123000119", Direction.COLLECT, 12_345_678_90, PayStatus.SUCCESS, T0 - 600, PayChannel.ALIPAY, "2026", None,
           "HIS-000000"),
    _entry("ZY20261123000007", Direction.COLLECT, 50_00, PayStatus.CLOSED, T0 - 900, None, "", ResultCode.CANCELLED,
           "HIS-000006"),
]


class StaticBackend:
    def __init__(self) -> None:
        self.current = _view()
        self.actions: list[tuple[str, object]] = []
        self._callbacks: list[Callable[[], None]] = []
        self.pin_tries = 3

    def show(self, view: ScreenView) -> None:
        self.current = view
        for callback in self._callbacks:
            callback()

    def view(self) -> ScreenView:
        return self.current

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def scan(self, code: str) -> Text | None:
        self.actions.append(("scan", code))
        return None

    def cancel(self) -> None:
        self.actions.append(("cancel", None))

    def confirm_refund(self, pin: str) -> PinAnswer:
        self.actions.append(("confirm_refund", len(pin)))
        self.pin_tries -= 1
        return PinAnswer(False, texts.WRONG_PIN, self.pin_tries)

    def decline_refund(self) -> None:
        self.actions.append(("decline_refund", None))

    def recheck(self) -> None:
        self.actions.append(("recheck", None))

    def needs_person(self) -> list[NeedsPersonCase]:
        return list(NEEDS_PERSON_CASES)

    def totals(self) -> DayTotals:
        return TOTALS

    def reset_pin_lockout(self, admin_pin: str) -> PinAnswer:
        self.actions.append(("reset_pin_lockout", len(admin_pin)))
        return PinAnswer(False, texts.WRONG_PIN, 4)

    def dismiss_result(self) -> None:
        self.actions.append(("dismiss", None))

    def history(self, search: str = "") -> list[HistoryEntry]:
        return [row for row in HISTORY if search.lower() in row.order_no.lower()]

    def about(self) -> About:
        return ABOUT

    def check_admin_pin(self, pin: str) -> PinAnswer:
        return PinAnswer(False, texts.WRONG_PIN, 4)

    def receipt(self, msg_id: str) -> None:
        return None
