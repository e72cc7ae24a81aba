"""The PIN pad: the supervisor confirms a refund, or the admin opens the settings (or clears the
supervisor PIN's lockout: the refund pad offers it while the lockout lasts).

Digits are typed on a large on-screen keypad only (the hardware keyboard is the scanner); they live
in the view-model until OK and are never shown, logged or kept. A wrong PIN is answered with the
tries left; the lockout itself is the service's rule.

The refund mode shows what is refunded and the payment it goes back against, and offers to decline.
The admin mode says up front when the device has no admin PIN (and how a field engineer sets one),
instead of a keypad that cannot succeed."""

from __future__ import annotations

from kivy.app import App
from kivy.properties import OptionProperty
from kivy.uix.screenmanager import Screen

from terminal.ui.widgets import show_child


class PinScreen(Screen):
    mode = OptionProperty("refund", options=["refund", "admin"])

    def prompt_key(self, admin_pin_set: bool, admin_for: str = "settings") -> str:
        if self.mode == "refund":
            return "pin.refund_prompt"
        if not admin_pin_set:
            return "pin.admin_not_set"
        return "pin.unlock_prompt" if admin_for == "reset_lockout" else "pin.admin_prompt"

    def pin_possible(self, admin_pin_set: bool) -> bool:
        return self.mode == "refund" or admin_pin_set

    def on_kv_post(self, base_widget: object) -> None:
        ids = self.ids
        self._left = [ids[n].__self__ for n in ("badge", "amount", "order", "original")]  # kept while out of the tree
        self._hint, self._dots, self._message = ids.hint.__self__, ids.dots.__self__, ids.message.__self__
        self._pad, self._ok, self._decline = ids.pad.__self__, ids.ok.__self__, ids.decline.__self__
        self._unlock = ids.unlock.__self__
        App.get_running_app().vm.bind(admin_pin_set=self._arrange, pin_locked=self._arrange)
        self._arrange()

    def _arrange(self, *args: object) -> None:
        refund = self.mode == "refund"
        possible = self.pin_possible(App.get_running_app().vm.admin_pin_set)
        for position, widget in enumerate(self._left):
            show_child(self.ids.left, widget, refund, position)
        first = len(self._left) if refund else 0
        show_child(self.ids.left, self._hint, not possible, first + 1)
        locked = refund and App.get_running_app().vm.pin_locked  # the admin button takes the dots' place
        show_child(self.ids.left, self._dots, possible and not locked, first + 1 + (not possible))
        show_child(self.ids.left, self._message, possible, first + 2 + (not possible) - locked)
        show_child(self.ids.left, self._unlock, locked, first + 2)
        show_child(self.ids.right, self._pad, possible, 1)
        show_child(self.ids.buttons, self._ok, possible, 0)
        show_child(self.ids.buttons, self._decline, refund, 2 if possible else 1)
