"""Render every screen, in both orientations and both languages, to PNG, and report what a test
checks: layout problems, small touch targets and the texts on screen.

Run in its own process (Kivy's App cannot be restarted in one process), offscreen:

    SDL_VIDEODRIVER=offscreen python -m tests.terminal.ui.render_screens --out docs/screenshots --report r.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from terminal.ui import display

display.prepare_kivy(kivy_home=tempfile.mkdtemp(prefix="kivy-home-"), offscreen=True, clock="default")

from terminal.ui.app import LANDSCAPE, PORTRAIT, configure_window, create_app  # noqa: E402
from terminal.ui.fonts import prepare_fonts  # noqa: E402

ORIENTATIONS = {"portrait": PORTRAIT, "landscape": LANDSCAPE}
# The window size is fixed at start: SDL's offscreen driver keeps its first surface size, so each
# orientation renders in its own process.
_orientation = sys.argv[sys.argv.index("--orientation") + 1] if "--orientation" in sys.argv else "portrait"
configure_window(ORIENTATIONS[_orientation])

from kivy.metrics import dp  # noqa: E402

from terminal.ui import offscreen as off  # noqa: E402
from terminal.ui.model import Screen  # noqa: E402
from tests.terminal.ui.static_backend import StaticBackend, views  # noqa: E402



async def scenario(app, backend: StaticBackend, out: Path, report: dict, orientation: str) -> None:  # type: ignore[no-untyped-def]
    vm = app.vm
    await off.until(lambda: app.root is not None, what="the app to start")
    await off.frames(3)

    async def shot(name: str, orientation: str, lang: str, expect: str) -> None:
        await off.frames(3)
        await off.until(lambda: vm.worker.busy == 0, what="cashier actions to finish")
        await off.frames(2)
        assert vm.screen == expect, f"{name}: expected screen {expect}, got {vm.screen} (phase {vm.phase}, pending {vm._pending})"
        path = out / f"{name}_{orientation}_{lang}.png"
        off.grab(path)
        root = app.root.current_screen
        report["shots"].append({
            "file": path.name, "screen": name, "orientation": orientation, "lang": lang,
            "problems": off.layout_problems(root), "small_targets": off.small_targets(root, dp(48)),
            "texts": [label.text for label in off.labels(root)],
        })

    for lang in ("zh", "en"):
        vm.set_language(lang)
        vm._dismissed = None  # the same fixed outcomes are shown again in this language
        v = views()
        backend.pin_tries = 3
        backend.show(v["home"])
        await shot("home", orientation, lang, Screen.HOME.value)
        backend.show(v["instruction_collect"])
        await shot("instruction_collect", orientation, lang, Screen.INSTRUCTION.value)
        vm.open("scan")
        await shot("scan", orientation, lang, Screen.SCAN.value)
        backend.show(v["paying"])
        await shot("paying", orientation, lang, Screen.PAYING.value)
        backend.show(v["result_ok"])
        await shot("result_ok", orientation, lang, Screen.RESULT.value)
        backend.show(v["instruction_refund"])
        await shot("instruction_refund", orientation, lang, Screen.INSTRUCTION.value)
        vm.open("refund_pin")
        for key in "1234":
            vm.pin_key(key)
        vm.pin_submit()  # the static backend answers "wrong PIN, 2 tries left"
        await off.until(lambda: vm.worker.busy == 0)
        for key in "24":
            vm.pin_key(key)
        await shot("refund_pin", orientation, lang, Screen.REFUND_PIN.value)
        backend.show(v["result_fail"])
        await shot("result_fail", orientation, lang, Screen.RESULT.value)
        vm.dismiss_result()
        vm.open("history")
        await shot("history", orientation, lang, Screen.HISTORY.value)
        vm.back()
        vm.open("admin_pin")
        await shot("admin_pin", orientation, lang, Screen.ADMIN_PIN.value)
        vm.open("settings")
        await shot("settings", orientation, lang, Screen.SETTINGS.value)
        vm.back()
    app.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--orientation", choices=sorted(ORIENTATIONS), default="portrait")
    args = parser.parse_args(argv)
    backend = StaticBackend()
    app = create_app(backend, fonts=prepare_fonts(), receipts_dir=None)
    report: dict = {"shots": [], "error": None}
    report["error"] = off.run_app(app, lambda a: scenario(a, backend, args.out, report, args.orientation))
    args.report.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0 if report["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
