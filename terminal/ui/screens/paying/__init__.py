"""Paying: waiting for the channel or for the patient to confirm on the phone, with a countdown and
(once the service allows it) cancel, which reverses the payment. Also shown while a refund runs."""

from __future__ import annotations

from kivy.uix.screenmanager import Screen


class PayingScreen(Screen):
    pass
