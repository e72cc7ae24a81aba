"""Settings, behind the admin PIN: language, the payment environment (read-only here: it comes from
the signed configuration image), the printer, and what this device is."""

from __future__ import annotations

from kivy.uix.screenmanager import Screen


class SettingsScreen(Screen):
    pass
