"""The incoming instruction: order number, the amount very large, collection or refund in colour,
word and marker, the masked patient name and the bill items. A collection waits here for the
scanner (the wedge works on this screen); a refund offers the supervisor's confirmation."""

from __future__ import annotations

from kivy.app import App
from kivy.factory import Factory
from kivy.properties import BooleanProperty
from kivy.uix.screenmanager import Screen

from terminal.ui import theme
from terminal.ui.catalogue import tr


class InstructionScreen(Screen):
    collect = BooleanProperty(True)
    _rows: list[object]

    def on_kv_post(self, base_widget: object) -> None:
        self._rows = []
        vm = App.get_running_app().vm
        vm.bind(items=self._fill, lang=self._fill, direction=self._direction)
        self._fill()
        self._direction()

    def _direction(self, *args: object) -> None:
        self.collect = App.get_running_app().vm.direction == "collect"

    def _fill(self, *args: object) -> None:
        """The bill items, reusing the row widgets already built: creating widgets from kv rules
        costs milliseconds each, and this runs while the cashier waits for the amount."""
        vm = App.get_running_app().vm
        box = self.ids.item_list
        rows = [(name, tr("instr.item_line", vm.lang, qty=qty), amount) for name, qty, amount in vm.items]
        if not rows:
            rows = [(tr("instr.no_items", vm.lang), "", "")]
        while len(self._rows) < len(rows):
            self._rows.append(Factory.ItemRow())
        shown = self._rows[:len(rows)]
        if box.children[::-1] != shown:
            box.clear_widgets()
            for row in shown:
                box.add_widget(row)
        for row, (name, qty, amount) in zip(shown, rows):
            row.ids.name.text, row.ids.qty.text, row.ids.amount.text = name, qty, amount
            row.ids.name.color = theme.MUTED if not vm.items else theme.INK
