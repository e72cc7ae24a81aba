"""Render every screen, in both orientations and both languages, to PNG files, and report what the
layout checks need (widgets outside the window, clipped text, small touch targets, the texts shown).

    python -m terminal.ui.screenshots --out docs/screenshots        (what `make screenshots` runs)
    python -m terminal.ui.screenshots --out /tmp/shots --report r.json

The pictures are deterministic: fixed data (terminal.ui.showcase), a clock stopped at one moment
(the paying countdown always shows the same second), one time zone, and no display needed (SDL's
offscreen driver with Mesa's llvmpipe). Two runs on the same machine write identical files; a
different Mesa or FreeType version may change pixels, so regenerate and commit from one machine.

The tests render into a temporary folder and check those files; only this command writes
docs/screenshots/. Each orientation renders in its own process: SDL's offscreen driver keeps the
first window size, and a Kivy App cannot be restarted in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from terminal.ui.showcase import STATES

SCREENS = tuple(name for name, screen in STATES)
ORIENTATIONS = ("portrait", "landscape")
LANGUAGES = ("zh", "en")
# A child that takes longer than this on a loaded 2-core machine is hung.
CHILD_TIMEOUT_S = 180


def file_name(screen: str, orientation: str, lang: str) -> str:
    return f"{screen}_{orientation}_{lang}.png"


def sheet_name(orientation: str, lang: str) -> str:
    return f"sheet_{orientation}_{lang}.png"


def screen_files() -> set[str]:
    return {file_name(s, o, lang) for s in SCREENS for o in ORIENTATIONS for lang in LANGUAGES}


def expected_files() -> set[str]:
    """Every file the command writes: one per screen, orientation and language, and one contact
    sheet (all screens side by side, for a reviewer's single glance) per orientation and language."""
    return screen_files() | {sheet_name(o, lang) for o in ORIENTATIONS for lang in LANGUAGES}


# columns and scale of the contact sheets: portrait 7 x 2 at 40 %, landscape 4 x 4 at 60 %
SHEET_LAYOUT = {"portrait": (7, 0.4), "landscape": (4, 0.6)}
SHEET_GAP = 6
SHEET_BG = (40, 44, 52)


def contact_sheet(folder: Path, orientation: str, lang: str) -> Path:
    from PIL import Image

    columns, scale = SHEET_LAYOUT[orientation]
    images = [Image.open(folder / file_name(s, orientation, lang)).convert("RGB") for s in SCREENS]
    w, h = (round(images[0].width * scale), round(images[0].height * scale))
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * (w + SHEET_GAP), rows * (h + SHEET_GAP)), SHEET_BG)
    for i, image in enumerate(images):
        sheet.paste(image.resize((w, h), Image.LANCZOS), ((i % columns) * (w + SHEET_GAP), (i // columns) * (h + SHEET_GAP)))
    path = folder / sheet_name(orientation, lang)
    sheet.save(path, format="PNG", optimize=True)
    return path


# --- the parent: one child process per orientation -----------------------------------------------

def child_command(out: Path, report: Path, orientation: str) -> list[str]:
    return [sys.executable, "-m", "terminal.ui.screenshots", "--out", str(out), "--report", str(report),
            "--orientation", orientation]


def child_env(kivy_home: Path) -> dict[str, str]:
    from terminal.ui.display import offscreen_env
    from terminal.ui.showcase import TIME_ZONE

    env = dict(os.environ)
    env.update(offscreen_env(str(kivy_home)))
    env["TZ"] = TIME_ZONE
    return env


def render_all(out: Path, *, log_dir: Path | None = None) -> dict:
    """Render both orientations side by side; returns {"shots": [...], "errors": [...]}."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pos-shots-") as tmp:
        logs = log_dir or Path(tmp)
        running = []
        for orientation in ORIENTATIONS:
            report = Path(tmp) / f"{orientation}.json"
            log = open(logs / f"screenshots-{orientation}.log", "wb")
            process = subprocess.Popen(child_command(out, report, orientation), env=child_env(Path(tmp) / f"kivy-{orientation}"),
                                       stdout=log, stderr=subprocess.STDOUT)
            running.append((orientation, process, report, log))
        result: dict = {"shots": [], "errors": []}
        try:
            for orientation, process, report, log in running:
                process.wait(timeout=CHILD_TIMEOUT_S)
        finally:  # never leave a renderer behind (a timeout, or Ctrl-C)
            for orientation, process, report, log in running:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                log.close()
        for orientation, process, report, log in running:
            if not report.is_file():
                tail = (logs / f"screenshots-{orientation}.log").read_bytes()[-3000:].decode("utf-8", "replace")
                result["errors"].append(f"{orientation}: the renderer exited with {process.returncode} and no report; "
                                        f"the end of its log:\n{tail}")
                continue
            data = json.loads(report.read_text(encoding="utf-8"))
            result["shots"] += data["shots"]
            if data["error"]:
                result["errors"].append(f"{orientation}: {data['error']}")
            else:
                for lang in LANGUAGES:
                    contact_sheet(out, orientation, lang)
        return result


# --- the child: one orientation, both languages ---------------------------------------------------

def render_orientation(out: Path, orientation: str) -> dict:
    from terminal.ui import display

    if hasattr(time, "tzset"):
        time.tzset()  # TZ from child_env: the history's clock times
    display.prepare_kivy(kivy_home=tempfile.mkdtemp(prefix="kivy-home-"), offscreen=True, clock="default")
    from terminal.ui.app import LANDSCAPE, PORTRAIT, configure_window, create_app

    configure_window(PORTRAIT if orientation == "portrait" else LANDSCAPE)
    from terminal.ui import offscreen as off
    from terminal.ui.fonts import prepare_fonts
    from terminal.ui.showcase import StaticBackend, clock

    backend = StaticBackend()
    app = create_app(backend, fonts=prepare_fonts(), receipts_dir=None, clock=clock)
    report: dict = {"shots": [], "error": None}
    report["error"] = off.run_app(app, lambda a: _scenario(a, backend, out, report, orientation))
    return report


async def _scenario(app, backend, out: Path, report: dict, orientation: str) -> None:
    from kivy.metrics import dp

    from terminal.ui import offscreen as off
    from terminal.ui.showcase import STATES, enter

    vm = app.vm
    await off.until(lambda: app.root is not None, what="the app to start")
    await off.frames(3)

    async def shot(name: str, lang: str, expect: str) -> None:
        await off.frames(3)
        await off.until(lambda: vm.worker.busy == 0, what="cashier actions to finish")
        await off.frames(2)
        assert vm.screen == expect, f"{name}: expected screen {expect}, got {vm.screen} (showing {vm.shown})"
        path = out / file_name(name, orientation, lang)
        off.grab(path)
        root = app.root.current_screen
        report["shots"].append({
            "file": path.name, "screen": name, "orientation": orientation, "lang": lang,
            "problems": off.layout_problems(root), "small_targets": off.small_targets(root, dp(48)),
            "texts": [label.text for label in off.labels(root)],
        })

    for lang in LANGUAGES:
        vm.set_language(lang)
        backend.pin_tries = 3
        for name, screen in STATES:
            enter(vm, backend, name)
            if name == "refund_pin":  # a wrong PIN: the message with the tries left (typing again clears it)
                for key in "1234":
                    vm.pin_key(key)
                vm.pin_submit()  # the static backend answers "wrong PIN, 2 tries left"
                await off.until(lambda: vm.worker.busy == 0)
            if name == "admin_pin":  # three digits typed: the dots
                for key in "135":
                    vm.pin_key(key)
            await shot(name, lang, screen)
    app.stop()


# --- command line ---------------------------------------------------------------------------------

def findings(shots: list[dict]) -> list[str]:
    lines = []
    for shot in shots:
        lines += [f"{shot['file']}: {p}" for p in shot["problems"]]
        lines += [f"{shot['file']}: touch target too small: {t}" for t in shot["small_targets"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m terminal.ui.screenshots",
        description="Render every POS screen (portrait 720x1280 and landscape 800x480, Chinese and English) to PNG, "
                    "offscreen and deterministically, and report layout problems.")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files (docs/screenshots for the docs)")
    parser.add_argument("--report", type=Path, help="also write the JSON report (texts, layout findings) here")
    parser.add_argument("--orientation", choices=ORIENTATIONS, help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args(argv)
    if args.orientation:
        report = render_orientation(args.out, args.orientation)
        if args.report:
            args.report.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        return 0 if report["error"] is None else 1
    result = render_all(args.out)
    if args.report:
        args.report.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    problems = result["errors"] + findings(result["shots"])
    for line in problems:
        print(f"screenshots: {line}", file=sys.stderr)
    print(f"{len(result['shots'])} screenshots in {args.out}" + (f"; {len(problems)} problems" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
