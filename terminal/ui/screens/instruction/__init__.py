"""The incoming instruction: order number, the amount very large, collection or refund in colour,
word and marker, the masked patient name and the bill items. A collection waits here for the
scanner (the wedge works on this screen); a refund shows the payment it goes back against (channel,
paid, refunded already, what remains) and offers the supervisor's confirmation."""

from __future__ import annotations

from kivy.app import App
from kivy.factory import Factory
from kivy.properties import BooleanProperty
from kivy.uix.screenmanager import Screen

from terminal.texts import CHANNEL_NAME, pick, tr
from terminal.ui import theme
from terminal.texts import display_yuan
from terminal.ui.widgets import show_child
from terminal.view import OriginalPayment


def original_field(original: OriginalPayment | None, field: str, lang: str) -> str:
    """One value of the original-payment card ("—" when this device holds no such payment)."""
    if original is None:
        return tr("orig.unknown", lang)
    if field == "channel":
        return pick(CHANNEL_NAME[original.channel], lang)
    fen = {"paid": original.paid_fen, "refunded": original.refunded_fen, "remaining": original.remaining_fen}[field]
    return tr("yuan", lang, amount=display_yuan(fen))


def original_line(original: OriginalPayment | None, lang: str) -> str:
    """The original payment in one line, for the supervisor's PIN pad."""
    if original is None:
        return tr("orig.not_found", lang)
    return tr("orig.line", lang, channel=pick(CHANNEL_NAME[original.channel], lang), paid=display_yuan(original.paid_fen),
              refunded=display_yuan(original.refunded_fen), remaining=display_yuan(original.remaining_fen))


class InstructionScreen(Screen):
    collect = BooleanProperty(True)
    _rows: list[object]

    def on_kv_post(self, base_widget: object) -> None:
        self._rows = []
        # the widgets themselves (ids holds weak proxies, and a part taken out of the tree must live on)
        self._parts = [self.ids[name].__self__ for name in ("original", "items_title", "items", "no_items", "spacer")]
        vm = App.get_running_app().vm
        vm.bind(items=self._fill, lang=self._fill, direction=self._direction)
        self._direction()
        self._fill()

    def _direction(self, *args: object) -> None:
        self.collect = App.get_running_app().vm.direction == "collect"
        self._arrange()

    def _arrange(self) -> None:
        """Only the parts this instruction needs, so none leaves an empty box: the original payment
        for a refund; the item list when the bill has items, else one line saying it has none."""
        has_items = bool(App.get_running_app().vm.items)
        shown = (not self.collect, has_items, has_items, not has_items, not has_items)
        for position, (part, show) in enumerate(zip(self._parts, shown)):
            show_child(self.ids.right, part, show, sum(shown[:position]))

    def _fill(self, *args: object) -> None:
        """The bill items, reusing the row widgets already built: creating widgets from kv rules
        costs milliseconds each, and this runs while the cashier waits for the amount."""
        vm = App.get_running_app().vm
        box = self.ids.item_list
        rows = [(name, tr("instr.item_line", vm.lang, qty=qty), amount) for name, qty, amount in vm.items]
        while len(self._rows) < len(rows):
            self._rows.append(Factory.ItemRow())
        shown = self._rows[:len(rows)]
        if box.children[::-1] != shown:
            box.clear_widgets()
            for row in shown:
                box.add_widget(row)
        for row, (name, qty, amount) in zip(shown, rows):
            row.ids.name.text, row.ids.qty.text, row.ids.amount.text = name, qty, amount
            row.ids.name.color = theme.INK
        self._arrange()
