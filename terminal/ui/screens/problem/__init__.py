"""Why this POS cannot take payments now, instead of "waiting for the next order": the journal is
locked or cannot be written (issue 14), the provider disabled the device at the gateway, or the
gateway cannot be reached. Today's list and the settings stay open."""

from __future__ import annotations

from kivy.uix.screenmanager import Screen

from terminal.texts import tr
from terminal.view import Screen as Shown

_HINT = {Shown.JOURNAL_PROBLEM.value: "problem.hint.journal", Shown.DEVICE_DISABLED.value: "problem.hint.disabled",
         Shown.GATEWAY_UNREACHABLE.value: "problem.hint.network"}


class ProblemScreen(Screen):
    def hint(self, shown: str, about: object, lang: str) -> str:
        key = _HINT.get(shown)
        if key is None:
            return ""
        return tr(key, lang, device_id=getattr(about, "device_id", "")) if "{device_id}" in tr(key, "en") else tr(key, lang)
