"""Every button on every screen answers a finger at its own position. Run in its own process (one
window size per process) by test_touch.py:

    SDL_VIDEODRIVER=offscreen python -m tests.terminal.ui.touch_run --orientation portrait --report FILE

For each showcase state (terminal.ui.showcase.STATES, the screens of docs/screenshots/) in both
languages, it lists the visible, enabled buttons; for each it names any disabled or invisible widget
that would take a touch on it first; then it taps each button with a finger through the Window
(terminal.ui.finger.tap) and records which buttons released and which view-model action ran.
The test decides what is right; this script only reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

# The view-model's cashier actions: what a button's on_release in a .kv file calls.
ACTIONS = ("open", "back", "cancel", "recheck", "scan", "pin_key", "pin_submit", "decline_refund", "dismiss_result",
           "search_history", "print_receipt", "reprint_last", "set_language")


def record_actions(vm: object, log: list[list[object]]) -> None:
    """Wrap the view-model's actions on this instance: each call is logged, then done."""
    for name in ACTIONS:
        original = getattr(vm, name, None)
        if original is None:
            continue

        def wrapper(*args: object, _name: str = name, _original: object = original) -> object:
            log.append([_name, *[a if isinstance(a, (str, int, float, bool)) or a is None else repr(a) for a in args]])
            return _original(*args)  # type: ignore[operator]  # a view-model method looked up by name with getattr

        setattr(vm, name, wrapper)


def describe(widget: object) -> str:
    return f"{type(widget).__name__} {getattr(widget, 'text', '')!r}"


async def self_check() -> dict:
    """The finger is honest: a button under a disabled widget does not answer a tap (and covering()
    names the widget), the same button uncovered does. Kivy widgets laid straight on the Window."""
    from kivy.core.window import Window
    from kivy.uix.button import Button
    from kivy.uix.floatlayout import FloatLayout
    from kivy.uix.widget import Widget

    from terminal.ui import finger
    from terminal.ui import offscreen as off

    layer = FloatLayout()
    button = Button(text="probe", size_hint=(None, None), size=(200, 120), pos=(100, 100))
    cover = Widget(disabled=True, size_hint=(None, None), size=(300, 200), pos=(50, 50))
    layer.add_widget(button)
    layer.add_widget(cover)  # added last: on top, offered every touch first
    Window.add_widget(layer)
    result: dict = {}
    try:
        await off.frames(2)
        result["covering"] = [type(w).__name__ for w in finger.covering(button)]
        try:
            await finger.tap(button)
            result["covered_tap"] = "reached"
        except finger.TapMissed as exc:
            result["covered_tap"] = f"missed: {exc}"
        layer.remove_widget(cover)
        await off.frames(2)
        try:
            await finger.tap(button)
            result["uncovered_tap"] = "reached"
        except finger.TapMissed as exc:
            result["uncovered_tap"] = f"missed: {exc}"
    finally:
        Window.remove_widget(layer)
        await off.frames(2)
    return result


async def scenario(app, backend, report: dict) -> None:
    from kivy.uix.behaviors import ButtonBehavior

    from terminal.ui import finger
    from terminal.ui import offscreen as off
    from terminal.texts import LANGUAGES
    from terminal.ui.showcase import STATES, enter

    vm = app.vm
    log: list[list[object]] = []
    record_actions(vm, log)
    await off.until(lambda: app.root is not None, what="the app")
    await off.frames(3)

    async def goto(name: str, screen: str) -> object:
        enter(vm, backend, name)
        await off.until(lambda: vm.screen == screen and vm.worker.busy == 0, what=f"state {name} (now {vm.screen})")
        await off.frames(2)
        return app.root.current_screen

    report["self_check"] = await self_check()
    for lang in LANGUAGES:
        vm.set_language(lang)
        for name, screen in STATES:
            root = await goto(name, screen)
            buttons = finger.tappable(root)
            entry: dict = {"state": name, "lang": lang, "buttons": []}
            report["states"].append(entry)
            for index, button in enumerate(buttons):
                root = await goto(name, screen)
                again = finger.tappable(root)
                assert len(again) == len(buttons) and again[index] is button, f"{name}: the buttons changed"
                released: list[str] = []
                spies = []
                for other in off.walk(root):
                    if isinstance(other, ButtonBehavior):
                        spy = (lambda w: lambda *a: released.append(describe(w)))(other)
                        other.fbind("on_release", spy)
                        spies.append((other, spy))
                log.clear()
                x, y = finger.window_centre(button)
                record = {"text": button.text, "at": [round(x), round(y)],
                          "covering": [describe(w) for w in finger.covering(button)]}
                try:
                    await finger.tap(button)
                    record["reached"] = True
                except finger.TapMissed as exc:
                    record["reached"], record["missed"] = False, str(exc)
                finally:
                    for other, spy in spies:
                        other.funbind("on_release", spy)
                record["released"], record["actions"] = released, list(log)
                entry["buttons"].append(record)
                await off.until(lambda: vm.worker.busy == 0, what="the action to finish")
    app.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orientation", choices=("portrait", "landscape"), required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)

    from terminal.ui import display

    display.prepare_kivy(kivy_home=tempfile.mkdtemp(prefix="kivy-home-"), offscreen=True, clock="default")
    from terminal.ui.app import LANDSCAPE, PORTRAIT, configure_window, create_app

    configure_window(PORTRAIT if args.orientation == "portrait" else LANDSCAPE)
    from terminal.ui import finger
    from terminal.ui import offscreen as off
    from terminal.ui.fonts import prepare_fonts
    from terminal.ui.showcase import StaticBackend, clock

    backend = StaticBackend()
    app = create_app(backend, fonts=prepare_fonts(), receipts_dir=None, clock=clock)
    report: dict = {"orientation": args.orientation, "states": [], "error": None}
    report["error"] = off.run_app(app, lambda a: scenario(a, backend, report))
    args.report.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0 if report["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
