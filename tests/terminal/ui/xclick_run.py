"""The real POS window on an X display, driven by real X input: xdotool moves the pointer and clicks
(and types the scanner's keystrokes), the X server hands the events to SDL, SDL to Kivy, Kivy to
whatever widget is at that point. The app is the demo's (firmware_sim.screen: the device's shape
scaled to fit the display, receipts saved in the workdir), around a real TerminalService with the
channel sandbox over HTTP, as in flow_run.py. Run by test_xclick.py under Xvfb:

    DISPLAY=:N python -m tests.terminal.ui.xclick_run --work DIR --report FILE

The app runs as pos-app runs it: `App.run()` on the main thread, Kivy's own loop and clock. A
driver thread plays the HIS (submits instructions), the patient (a sandbox payment code) and the
cashier (xdotool); it reads the screen's state through bindings made on the main thread and waits
on them (conditions and drawn frames, never fixed sleeps).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from firmware_sim.screen import ScreenOptions, prepare_window, screen_app

prepare_window("portrait")  # as the demo does: the interrupt clock, logging inside Python, the device's shape

from kivy.clock import Clock  # noqa: E402
from kivy.core.window import Window  # noqa: E402

from firmware_sim.sandbox.launcher import SandboxProcess  # noqa: E402
from protocol.messages import PayChannel, PayStatus  # noqa: E402
from gateway.channels import build_clients, settings_from_sandbox  # noqa: E402
from terminal.ui import finger  # noqa: E402
from terminal.ui import offscreen as off  # noqa: E402
from terminal.texts import STRINGS  # noqa: E402
from terminal.ui.wedge import MAX_KEY_GAP_S  # noqa: E402
from tests.terminal.helpers import Bridge, His, make_config, open_service  # noqa: E402

FAST = {"query_interval_s": 0.1, "pay_deadline_s": 5.0, "read_timeout_s": 2.0}
WAIT_S = 20.0
XDOTOOL_TIMEOUT_S = 20


class Screen:
    """What the window shows, as seen from the driver thread: the view-model's screen, recorded by a
    binding on the main thread."""

    def __init__(self, app) -> None:
        self.app = app
        self.cond = threading.Condition()
        self.name = app.vm.screen
        app.vm.fbind("screen", self._screen)

    def _screen(self, vm: object, name: str) -> None:
        with self.cond:
            self.name = name
            self.cond.notify_all()

    def wait(self, name: str) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.name == name, WAIT_S):
                raise AssertionError(f"the window did not show {name} within {WAIT_S} s (it shows {self.name})")
        # Three turns of the main loop: the new screen's layout (Clock callbacks, which may trigger
        # each other) is done, so positions read from it are where the widgets are. (Frames are not
        # counted: Kivy draws only when something changed.)
        for _ in range(3):
            self.on_main(lambda: None)

    def leaves(self, name: str, timeout_s: float) -> bool:
        """Whether the window shows another screen than `name` within `timeout_s`."""
        with self.cond:
            return self.cond.wait_for(lambda: self.name != name, timeout_s)

    def until(self, condition: Callable[[], bool], what: str) -> None:
        """Ask again after each turn of the main loop until `condition` holds (it runs on the driver
        thread; anything it reads from widgets it reads through on_main)."""
        deadline = time.monotonic() + WAIT_S
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {WAIT_S} s waiting for {what}")
            self.on_main(lambda: None)

    def on_main(self, fn: Callable[[], object]) -> object:
        """Run `fn` on Kivy's main thread and return its value."""
        done, box = threading.Event(), {}

        def run(dt: float) -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed to the driver thread, which fails with it
                box["error"] = exc
            done.set()

        Clock.schedule_once(run, 0)
        if not done.wait(WAIT_S):
            raise AssertionError("the main thread did not answer")
        if "error" in box:
            raise box["error"]  # type: ignore[misc]  # the box holds the main thread's exception (typed object)
        return box["value"]


def xdotool(*args: str) -> str:
    done = subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=XDOTOOL_TIMEOUT_S)
    if done.returncode != 0:
        raise AssertionError(f"xdotool {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def window_geometry(screen: Screen) -> tuple[str, int, int, int, int]:
    """The POS window on the X screen: id, left, top, width, height (SDL tells its X window id)."""
    window = str(screen.on_main(lambda: Window.get_window_info().window))
    shell = dict(line.split("=", 1) for line in xdotool("getwindowgeometry", "--shell", window).split())
    return window, int(shell["X"]), int(shell["Y"]), int(shell["WIDTH"]), int(shell["HEIGHT"])


SCAN_ATTEMPTS = 3


def scan_with_x_keystrokes(screen: Screen, window: str, code: str, report: dict) -> None:
    """The scanner's burst as X key events (xdotool, 4 ms apart, then Enter), until the window leaves
    the instruction screen. The wedge takes a burst only when no key came more than MAX_KEY_GAP_S
    after the one before, as the window's main loop sees them; on a loaded machine xdotool (or the X
    server) can stall longer than that mid-burst, and a cashier then scans again. So: a burst the
    window saw whole and in time, not taken, fails at once (that would be the app's fault); a burst
    that arrived split or incomplete is scanned again, and the report keeps what each try saw."""
    seen: list[float] = []

    def observe(window: object, key: int, scancode: int, codepoint: str | None, modifiers: list[str]) -> bool:
        seen.append(time.monotonic())  # bound after the app's handler, so called before it (Kivy: newest first)
        return False

    screen.on_main(lambda: Window.bind(on_key_down=observe))
    try:
        for attempt in range(1, SCAN_ATTEMPTS + 1):
            seen.clear()
            xdotool("windowfocus", "--sync", window)
            xdotool("type", "--delay", "4", code)
            xdotool("key", "Return")
            if screen.leaves("instruction", 10.0):
                return
            gaps = [b - a for a, b in zip(seen, seen[1:])]
            burst = {"keys_seen": len(seen), "of": len(code) + 1, "longest_gap_ms": round(max(gaps, default=0.0) * 1000, 1)}
            report.setdefault("scan_retries", []).append(burst)
            if len(seen) == len(code) + 1 and max(gaps, default=0.0) <= MAX_KEY_GAP_S:
                raise AssertionError(f"the window saw the whole burst in time ({burst}) and did not take the code")
        raise AssertionError(f"{SCAN_ATTEMPTS} bursts, none arrived whole and in time: {report['scan_retries']}")
    finally:
        screen.on_main(lambda: Window.unbind(on_key_down=observe))


def drive(app, screen: Screen, sandbox: SandboxProcess, bridge: Bridge, his: His, work: Path,
          report: dict, shots: Path | None) -> None:
    steps = report["steps"]
    started = time.monotonic()

    class Steps(list):  # each step also notes when it was done, for whoever reads a slow run's report
        def append(self, step: str) -> None:
            super().append(step)
            report.setdefault("seconds", {})[step] = round(time.monotonic() - started, 2)

    steps = Steps()
    report["steps"] = steps
    service = bridge.service
    window, left, top, width, height = window_geometry(screen)
    report["window"] = {"x": left, "y": top, "width": width, "height": height}
    size = screen.on_main(lambda: tuple(Window.size))
    assert (width, height) == size, f"the X window is {width}x{height}, Kivy draws {size}"
    report["x_screen"] = xdotool("getdisplaygeometry").split()

    def shoot(name: str) -> None:
        """The window as drawn now, for a person reviewing the run (--shots)."""
        if shots is not None:
            screen.on_main(lambda: off.grab(shots / f"xclick-{name}.png"))

    def click(text: str) -> None:
        """Move the X pointer to the middle of the button showing `text` and click button 1."""
        def centre() -> tuple[float, float]:
            button = finger.find_button(app.root.current_screen, text)
            return finger.window_centre(button)

        x, y = screen.on_main(centre)  # type: ignore[misc]  # on_main returns what the callable returns, typed object
        # Kivy's origin is the window's bottom left, X's the screen's top left. (No --sync: it waits for
        # the pointer to move, forever when it is already there; the click follows the move in order.)
        xdotool("mousemove", str(round(left + x)), str(round(top + height - y)), "click", "1")

    screen.wait("home")
    steps.append("window on the X display")

    # a collection arrives; the camera button and Back answer real clicks
    order = f"MZ{int(time.time() * 1000)}"
    collect = his.envelope(order, "+12.50")
    service.submit_instruction(collect)
    screen.wait("instruction")
    shoot("instruction")
    click("摄像头扫码")
    screen.wait("scan")
    click("返回")
    screen.wait("instruction")
    steps.append("camera scan and back, clicked")

    # the scanner types the patient's code as X key events; the payment goes through
    code = str(sandbox.issue_code(PayChannel.WECHAT.value, "100.00")["code"])
    scan_with_x_keystrokes(screen, window, code, report)
    screen.wait("result")
    result = bridge.result(collect.msg_id, timeout=WAIT_S)
    assert result.pay_status is PayStatus.SUCCESS, f"HIS got {result.pay_status}"
    assert int(sandbox.account(code)["balance_fen"]) == 100_00 - 12_50
    steps.append("collected with the scanner's keystrokes")

    # the demo's printing: the receipt image lands in the workdir and the screen says where
    def said(name: str) -> str:
        return str(screen.on_main(lambda: getattr(app.vm, name) and app.vm.say(getattr(app.vm, name), "zh")))

    printing = STRINGS["result.printing"].zh
    shoot("result")
    click("打印小票")
    screen.until(lambda: said("print_message") not in ("", "None", printing), "the receipt to be saved")
    saved = sorted((work / "receipts").glob(f"receipt-{order}-collect-*.png"))
    assert len(saved) == 1, f"receipts: {list((work / 'receipts').iterdir())}"
    where = saved[0].resolve()
    shown = str(where.relative_to(Path.cwd())) if where.is_relative_to(Path.cwd()) else str(where)
    assert shown in said("print_message"), f"the screen says {said('print_message')!r}, not where the file is"
    report["printed"] = said("print_message")
    click("完成")
    screen.wait("home")
    saved[0].unlink()
    click("重打小票")
    screen.until(lambda: said("reprint_message") not in ("", "None", printing), "the receipt to be saved again")
    assert saved[0].is_file(), "reprinting saved the last receipt again"
    steps.append("printed and reprinted: the receipt image is in the workdir")

    # a second order, cancelled with a click
    cancel_order = f"MZ{int(time.time() * 1000) + 1}"
    cancelled = his.envelope(cancel_order, "+5.00")
    service.submit_instruction(cancelled)
    screen.wait("instruction")
    click("取消收款")
    screen.wait("result")
    assert bridge.result(cancelled.msg_id, timeout=WAIT_S).pay_status is PayStatus.CLOSED
    click("完成")
    screen.wait("home")
    steps.append("cancelled with a click")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--shots", type=Path, help="also save what the window shows at a few steps here (PNG)")
    args = parser.parse_args(argv)
    work: Path = args.work
    report: dict = {"error": None, "steps": [], "display": os.environ.get("DISPLAY")}
    sandbox = SandboxProcess(str(work / "sandbox"))
    sandbox.start()
    service = None
    try:
        settings = settings_from_sandbox(sandbox.credentials_path, wechat=FAST, alipay=FAST)
        service = open_service(work / "journal.db", make_config(), build_clients(settings))
        bridge, his = Bridge(service), His()
        app = screen_app(service, ScreenOptions((work / "receipts").resolve(), "portrait"))

        def driver(screen: Screen) -> None:
            try:
                drive(app, screen, sandbox, bridge, his, work, report, args.shots)
            except BaseException as exc:
                traceback.print_exc()
                report["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                Clock.schedule_once(lambda dt: app.stop(), 0)

        def start_driver(dt: float) -> None:  # on the main thread, once the loop runs
            screen = Screen(app)
            threading.Thread(target=driver, args=(screen,), name="xclick-driver", daemon=True).start()

        Clock.schedule_once(start_driver, 0)
        app.run()
    except BaseException as exc:
        traceback.print_exc()
        report["error"] = report["error"] or f"{type(exc).__name__}: {exc}"
    finally:
        if service is not None:
            service.close()
        sandbox.stop()
        args.report.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0 if report["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
