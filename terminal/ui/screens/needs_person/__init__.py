"""The open "needs a person" cases (issue 17), oldest first: each with its order, amount and what to
do; one button asks the channel again about the oldest (TerminalService.recheck) once a person has
acted on the merchant platform. Opened from the home screen's count."""

from __future__ import annotations

from kivy.app import App
from kivy.factory import Factory
from kivy.uix.screenmanager import Screen


class NeedsPersonScreen(Screen):
    def on_kv_post(self, base_widget: object) -> None:
        App.get_running_app().vm.bind(needs_person_rows=self._fill)
        self._fill()

    def _fill(self, *args: object) -> None:
        box = self.ids.cases
        box.clear_widgets()
        for row in App.get_running_app().vm.needs_person_rows:
            card = Factory.NeedsPersonCard()
            card.order_no, card.amount, card.refund = row["order_no"], row["amount"], row["refund"]
            card.since, card.message = row["since"], row["message"]
            box.add_widget(card)
