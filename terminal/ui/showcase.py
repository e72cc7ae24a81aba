"""Fixed screens for the screenshots (docs/screenshots/) and the layout checks: a backend that shows
the views it is given, and the views themselves, all at one fixed moment (T0) so every run draws the
same pixels.

It never decides anything about money: it returns the views it is given and records the cashier's
actions. The real flows (scan, pay, refund, PIN) are tested against the real TerminalService in
tests/terminal/ui/test_flow.py.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from protocol.amount import Direction
from protocol.messages import PayChannel, PayStatus, ResultCode
from terminal import texts
from terminal.texts import Text
from terminal.ui.model import (About, CashierView, ChannelTotal, HistoryRow, Item, LinkState, NetState, Order, Outcome,
                               PinAnswer, PinState, Phase)
from terminal.view import OriginalPayment

# A fixed moment, so the screenshots do not change from run to run: 2026-11-23 10:15:32 +08:00.
# The showcase app runs on a clock stopped at T0 (PosViewModel(clock=...)), in this time zone.
T0 = 1795400132.0
TIME_ZONE = "CST-8"  # China Standard Time as a POSIX rule: no time zone database needed


def clock() -> float:
    return T0
ABOUT = About("D-SN-000123", "1.4.2", "HIS-POS-1", "SN000123", Text("示例市人民医院", "Example City Hospital"),
              Text("沙箱（127.0.0.1:18080）", "Sandbox (127.0.0.1:18080)"), sandbox=True)
TOTALS = (ChannelTotal(PayChannel.WECHAT, 12, 1_236_50, 12_50), ChannelTotal(PayChannel.ALIPAY, 7, 845_00, 0))
ITEMS = (Item("阿莫西林胶囊 0.25g", "2盒", 36_80), Item("血常规检查", "1", 25_00), Item("门诊诊查费", "1", 10_00))
COLLECT = Order("MZ20261123000123", Direction.COLLECT, 71_80, "张*明", ITEMS)
PAID = OriginalPayment(PayChannel.WECHAT, 71_80, 0, T0 - 3600, "4200001234202611230000012345")
REFUND = Order("MZ20261123000123", Direction.REFUND, 36_80, "张*明", ITEMS[:1], original=PAID)
# An inpatient deposit: no item list; the channel declined the first code (the patient's balance).
DEPOSIT = Order("ZY20261123000007", Direction.COLLECT, 2_000_00, "李*华")


def views() -> dict[str, CashierView]:
    base = dict(link=LinkState.UP, network=NetState.OK, totals=TOTALS)
    ok = Outcome(COLLECT.order_no, Direction.COLLECT, COLLECT.amount_fen, PayStatus.SUCCESS, T0, PayChannel.WECHAT,
                 "4200001234202611230000012345", msg_id="HIS-000001")
    failed = Outcome("MZ20261123000124", Direction.COLLECT, 1_280_00, PayStatus.FAILED, T0, PayChannel.ALIPAY, "",
                     texts.REASON[ResultCode.INSUFFICIENT_FUNDS], ResultCode.INSUFFICIENT_FUNDS.value, msg_id="HIS-000002")
    refund_failed = Outcome(REFUND.order_no, Direction.REFUND, REFUND.amount_fen, PayStatus.REFUND_FAILED, T0 + 90,
                            PayChannel.WECHAT, "", texts.REASON[ResultCode.REFUND_REJECTED], ResultCode.REFUND_REJECTED.value,
                            msg_id="HIS-000003")
    reason = texts.REASON[ResultCode.INSUFFICIENT_FUNDS]  # as terminal.view words a decline
    declined = Text(f"{reason.zh}。{texts.DECLINED_CHOICE.zh}", f"{reason.en}. {texts.DECLINED_CHOICE.en}")
    return {
        "home": CashierView(Phase.IDLE, message=texts.IDLE, **base),
        "instruction_collect": CashierView(Phase.AWAITING_SCAN, COLLECT, texts.SCAN_PROMPT, can_cancel=True, queued=1, **base),
        "instruction_declined": CashierView(Phase.AWAITING_SCAN, DEPOSIT, declined, warning=True, can_cancel=True, **base),
        "paying": CashierView(Phase.PAYING, COLLECT, texts.USER_PAYING, deadline=T0 + 24.2, deadline_total_s=30,
                              can_cancel=True, **base),
        # A refund the patient's bank bounced (WeChat CHANGE): handed to a person (issue 17).
        "needs_person": CashierView(Phase.REFUNDING, REFUND, texts.NEEDS_PERSON["refund_abnormal"], warning=True,
                                    needs_person=True, can_recheck=True, **base),
        "result_ok": CashierView(Phase.RESULT, None, outcome=ok, **base),
        "result_fail": CashierView(Phase.RESULT, None, outcome=failed, **base),
        "result_refund_fail": CashierView(Phase.RESULT, None, outcome=refund_failed, **base),
        "instruction_refund": CashierView(Phase.AWAITING_SUPERVISOR, REFUND, texts.REFUND_PROMPT, can_cancel=True,
                                          pin=PinState(3, 3), **base),
    }


# Every state the screenshots show, in their order: (name, the screen the app then shows).
STATES: tuple[tuple[str, str], ...] = (
    ("home", "home"), ("instruction_collect", "instruction"), ("scan", "scan"), ("instruction_declined", "instruction"),
    ("paying", "paying"), ("needs_person", "paying"),
    ("result_ok", "result"), ("instruction_refund", "instruction"), ("refund_pin", "refund_pin"),
    ("result_fail", "result"), ("result_refund_fail", "result"), ("history", "history"), ("admin_pin", "admin_pin"),
    ("admin_pin_unset", "admin_pin"), ("settings", "settings"),
)
# States that are a view of the service, and those the cashier opens by hand on top of one.
_OPENED_ON = {"scan": "instruction_collect", "refund_pin": "instruction_refund", "history": "home",
              "admin_pin": "home", "admin_pin_unset": "home", "settings": "home"}
# A device whose configuration has no admin PIN: the PIN screen says so up front.
NO_ADMIN_PIN = dataclasses.replace(ABOUT, admin_pin_set=False)


def enter(vm: object, backend: "StaticBackend", name: str) -> None:
    """Bring the app to showcase state `name` from wherever it is (main thread; the screen follows
    within a frame). Navigation and closed results of earlier states are forgotten."""
    view = views()[_OPENED_ON.get(name, name)]
    vm.back()  # type: ignore[attr-defined]
    vm._dismissed = None  # type: ignore[attr-defined]  # the same fixed outcomes are shown again
    backend.current = view
    vm.about = NO_ADMIN_PIN if name == "admin_pin_unset" else ABOUT  # type: ignore[attr-defined]
    vm.refresh()  # type: ignore[attr-defined]
    if name in _OPENED_ON:
        vm.open(name.replace("_unset", ""))  # type: ignore[attr-defined]


HISTORY = [
    HistoryRow("MZ20261123000124", Direction.COLLECT, 1_280_00, PayStatus.FAILED, T0 + 60, PayChannel.ALIPAY, "",
               texts.REASON[ResultCode.INSUFFICIENT_FUNDS], "HIS-000005"),
    HistoryRow("MZ20261123000123", Direction.REFUND, 36_80, PayStatus.REFUNDED, T0 + 30, PayChannel.WECHAT, "50001234",
               msg_id="HIS-000004"),
    HistoryRow("MZ20261123000123", Direction.COLLECT, 71_80, PayStatus.SUCCESS, T0, PayChannel.WECHAT, "4200001234",
               msg_id="HIS-000001"),
    HistoryRow("MZ20261123000119", Direction.COLLECT, 12_345_678_90, PayStatus.SUCCESS, T0 - 600, PayChannel.ALIPAY, "2026",
               msg_id="HIS-000000"),
    HistoryRow("ZY20261123000007", Direction.COLLECT, 50_00, PayStatus.CLOSED, T0 - 900, None, "",
               texts.REASON[ResultCode.CANCELLED], "HIS-000006"),
]


class StaticBackend:
    def __init__(self) -> None:
        self.current = CashierView(Phase.IDLE)
        self.actions: list[tuple[str, object]] = []
        self._callbacks: list[Callable[[], None]] = []
        self.pin_tries = 3

    def show(self, view: CashierView) -> None:
        self.current = view
        for callback in self._callbacks:
            callback()

    def view(self) -> CashierView:
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
        return PinAnswer(False, texts.WRONG_PIN, PinState(self.pin_tries, 3, wrong=True))

    def decline_refund(self) -> None:
        self.actions.append(("decline_refund", None))

    def recheck(self) -> None:
        self.actions.append(("recheck", None))

    def dismiss_result(self) -> None:
        self.actions.append(("dismiss", None))

    def history(self, search: str = "") -> list[HistoryRow]:
        return [row for row in HISTORY if search.lower() in row.order_no.lower()]

    def about(self) -> About:
        return ABOUT

    def check_admin_pin(self, pin: str) -> PinAnswer:
        return PinAnswer(False, texts.WRONG_PIN, PinState(4, 5, wrong=True))

    def receipt(self, msg_id: str) -> None:
        return None
