"""The result: success or failure in plain words (the service's reason text), the order, channel
and transaction number, and a printed receipt on request (only for a payment or refund that went
through: a failure has no receipt)."""

from __future__ import annotations

from kivy.app import App
from kivy.factory import Factory
from kivy.uix.screenmanager import Screen

from protocol.amount import Direction
from terminal.texts import CHANNEL_NAME, pick, tr
from terminal.texts import display_yuan
from terminal.view import ResultView as Outcome
from terminal.ui.widgets import show_child


def title(outcome: Outcome | None, lang: str) -> str:
    if outcome is None:
        return ""
    refund = outcome.direction is Direction.REFUND
    if outcome.error_code == "duplicate_order":
        return tr("result.duplicate", lang)
    if outcome.error_code in ("expired", "withdrawn"):  # HIS's deadline passed, or HIS took it back
        return tr(f"result.{outcome.error_code}", lang)
    if outcome.went_through:
        return tr("result.refunded" if refund else "result.collected", lang)
    return tr("result.not_refunded" if refund else "result.not_collected", lang)


def details(outcome: Outcome | None, lang: str) -> list[tuple[str, str]]:
    """(label, value) lines: the order number, the channel, the channel's transaction number."""
    if outcome is None:
        return []
    lines = [(tr("detail.order_no", lang), outcome.order_no)]
    if outcome.channel is not None:
        lines.append((tr("detail.channel", lang), pick(CHANNEL_NAME[outcome.channel], lang)))
    if outcome.pay_order_no:
        lines.append((tr("detail.pay_order_no", lang), outcome.pay_order_no))
    return lines


def direction(outcome: Outcome | None) -> str:
    return "refund" if outcome is not None and outcome.direction is Direction.REFUND else "collect"


def amount(outcome: Outcome | None) -> str:
    return "" if outcome is None else display_yuan(outcome.amount_fen)


class ResultScreen(Screen):
    def on_kv_post(self, base_widget: object) -> None:
        self._print_button = self.ids.print_button.__self__  # kept while out of the tree
        self._rows: list[object] = []
        vm = App.get_running_app().vm
        vm.bind(outcome=self._update, lang=self._update, result_ok=self._update)
        self._update()

    def _update(self, *args: object) -> None:
        vm = App.get_running_app().vm
        show_child(self.ids.buttons, self._print_button, vm.result_ok, 0)
        lines = details(vm.outcome, vm.lang)
        while len(self._rows) < len(lines):
            self._rows.append(Factory.DetailRow())
        box = self.ids.details
        if box.children[::-1] != self._rows[:len(lines)]:
            box.clear_widgets()
            for row in self._rows[:len(lines)]:
                box.add_widget(row)
        for row, (label, value) in zip(self._rows, lines):
            row.label, row.value = label, value
