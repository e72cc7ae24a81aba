"""The screen registry: one folder per screen (its .kv layout and its view class).

`build_screens()` loads each layout once and returns the screen widgets for the ScreenManager;
the PIN screen serves twice (supervisor for refunds, admin for settings) with a different mode.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from terminal.ui.model import Screen

HERE = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class ScreenSpec:
    screen: Screen
    folder: str
    cls: str
    kwargs: dict[str, object] = field(default_factory=dict)


SCREENS: tuple[ScreenSpec, ...] = (
    ScreenSpec(Screen.HOME, "home", "HomeScreen"),
    ScreenSpec(Screen.INSTRUCTION, "instruction", "InstructionScreen"),
    ScreenSpec(Screen.SCAN, "scan", "ScanScreen"),
    ScreenSpec(Screen.PAYING, "paying", "PayingScreen"),
    ScreenSpec(Screen.REFUND_PIN, "pin", "PinScreen", {"mode": "refund"}),
    ScreenSpec(Screen.ADMIN_PIN, "pin", "PinScreen", {"mode": "admin"}),
    ScreenSpec(Screen.RESULT, "result", "ResultScreen"),
    ScreenSpec(Screen.HISTORY, "history", "HistoryScreen"),
    ScreenSpec(Screen.SETTINGS, "settings", "SettingsScreen"),
)


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
        screens.append(getattr(module, spec.cls)(name=spec.screen.value, **spec.kwargs))
    return screens
