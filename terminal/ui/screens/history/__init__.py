"""Today's list, newest first, with search by order number (a scanned receipt QR or a typed
number); the only text field in the app, and the wedge scanner stays out of it while it is focused."""

from __future__ import annotations

from kivy.uix.screenmanager import Screen


class HistoryScreen(Screen):
    pass
