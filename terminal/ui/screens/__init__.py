"""The screen registry: one folder per screen (its .kv layout and its view class), and which of
the POS's screens (terminal.view.Screen) each one renders.

`build_screens()` loads each layout once and returns the screen widgets for the ScreenManager;
the PIN screen serves twice (supervisor for refunds, admin for settings) with a different mode.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from terminal.view import Screen

HERE = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class ScreenSpec:
    name: str  # the Kivy screen's name in the ScreenManager
    shows: frozenset[Screen]  # what it renders (terminal.view.Screen)
    folder: str
    cls: str
    kwargs: dict[str, object] = field(default_factory=dict)


SCREENS: tuple[ScreenSpec, ...] = (
    ScreenSpec("home", frozenset({Screen.IDLE}), "home", "HomeScreen"),
    ScreenSpec("instruction", frozenset({Screen.AWAITING_SCAN, Screen.DECLINED, Screen.AWAITING_SUPERVISOR}),
               "instruction", "InstructionScreen"),
    ScreenSpec("scan", frozenset({Screen.CAMERA_SCAN}), "scan", "ScanScreen"),
    ScreenSpec("paying", frozenset({Screen.PAYING, Screen.REFUNDING}), "paying", "PayingScreen"),
    ScreenSpec("refund_pin", frozenset({Screen.REFUND_PIN}), "pin", "PinScreen", {"mode": "refund"}),
    ScreenSpec("admin_pin", frozenset({Screen.ADMIN_PIN}), "pin", "PinScreen", {"mode": "admin"}),
    ScreenSpec("result", frozenset({Screen.RESULT}), "result", "ResultScreen"),
    ScreenSpec("history", frozenset({Screen.HISTORY}), "history", "HistoryScreen"),
    ScreenSpec("settings", frozenset({Screen.SETTINGS}), "settings", "SettingsScreen"),
    ScreenSpec("problem", frozenset({Screen.JOURNAL_PROBLEM, Screen.DEVICE_DISABLED, Screen.GATEWAY_UNREACHABLE}),
               "problem", "ProblemScreen"),
    ScreenSpec("needs_person", frozenset({Screen.NEEDS_PERSON}), "needs_person", "NeedsPersonScreen"),
)
_WIDGET = {screen: spec.name for spec in SCREENS for screen in spec.shows}


def widget_name(screen: Screen) -> str:
    """The Kivy screen that renders `screen` (every Screen has exactly one)."""
    return _WIDGET[screen]


def kv_files() -> list[Path]:
    return sorted({HERE / spec.folder / f"{spec.folder}.kv" for spec in SCREENS})


def build_screens() -> list[object]:
    from kivy.lang import Builder

    for path in kv_files():
        if str(path) not in Builder.files:
            Builder.load_file(str(path))
    screens = []
    for spec in SCREENS:
        module = importlib.import_module(f"terminal.ui.screens.{spec.folder}")
        screens.append(getattr(module, spec.cls)(name=spec.name, **spec.kwargs))
    return screens
