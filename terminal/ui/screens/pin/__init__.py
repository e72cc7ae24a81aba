"""The PIN pad: the supervisor confirms a refund, or the admin opens the settings.

Digits are typed on a large on-screen keypad only (the hardware keyboard is the scanner); they live
in the view-model until OK and are never shown, logged or kept. A wrong PIN is answered with the
tries left; the lockout itself is the service's rule."""

from __future__ import annotations

from kivy.properties import OptionProperty
from kivy.uix.screenmanager import Screen


class PinScreen(Screen):
    mode = OptionProperty("refund", options=["refund", "admin"])
