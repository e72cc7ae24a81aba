"""The incoming instruction: order number, the amount very large, collection or refund in colour,
word and marker, the masked patient name and the bill items. A collection waits here for the
scanner (the wedge works on this screen); a refund offers the supervisor's confirmation."""

from __future__ import annotations

from kivy.app import App
from kivy.factory import Factory
from kivy.properties import BooleanProperty
from kivy.uix.screenmanager import Screen

from terminal.ui.catalogue import tr


class InstructionScreen(Screen):
    collect = BooleanProperty(True)

    def on_kv_post(self, base_widget: object) -> None:
        vm = App.get_running_app().vm
        vm.bind(items=self._fill, lang=self._fill, direction=self._direction)
        self._fill()
        self._direction()

    def _direction(self, *args: object) -> None:
        self.collect = App.get_running_app().vm.direction == "collect"

    def _fill(self, *args: object) -> None:
        vm = App.get_running_app().vm
        box = self.ids.item_list
        box.clear_widgets()
        if not vm.items:
            box.add_widget(Factory.MutedLabel(text=tr("instr.no_items", vm.lang)))
        for name, qty, amount in vm.items:
            row = Factory.ItemRow()
            row.ids.name.text = name
            row.ids.qty.text = tr("instr.item_line", vm.lang, qty=qty)
            row.ids.amount.text = amount
            box.add_widget(row)
