"""Home: link and gateway state, device id, today's count and totals per channel, and the open
"needs a person" cases (a button to their list, only while there are some)."""

from __future__ import annotations

from kivy.app import App
from kivy.factory import Factory
from kivy.uix.screenmanager import Screen

from terminal.texts import pick, tr
from terminal.ui.widgets import show_child


class HomeScreen(Screen):
    def on_kv_post(self, base_widget: object) -> None:
        vm = App.get_running_app().vm
        vm.bind(totals=self._fill, lang=self._fill)
        self._needs_person = self.ids.needs_person.__self__  # kept while out of the tree
        vm.bind(needs_person_count=self._arrange)
        self._fill()
        self._arrange()

    def _arrange(self, *args: object) -> None:
        count = App.get_running_app().vm.needs_person_count
        status = self.ids.status
        show_child(status, self._needs_person, count > 0, 4)  # after the gateway chip

    def _fill(self, *args: object) -> None:
        vm = App.get_running_app().vm
        box = self.ids.totals_box
        box.clear_widgets()
        if not vm.totals:
            box.add_widget(Factory.MutedLabel(text=tr("home.no_totals", vm.lang)))
            return
        for channel, count, collected, refunded in vm.totals:
            row = Factory.TotalsRow()
            row.ids.channel.text = tr("home.channel_count", vm.lang, channel=pick(channel, vm.lang), count=count)
            row.ids.figures.text = tr("home.channel_line", vm.lang, count=count, collected=collected, refunded=refunded)
            box.add_widget(row)
