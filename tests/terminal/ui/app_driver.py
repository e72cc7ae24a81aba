"""What the offscreen runs of the real app that play a cashier's scenario share (flow_run,
problems_run): the channel timings that keep them quick, `check`, the screen helpers a scenario
waits and looks with (`ScreenDriver`), and the run's command line (`--work DIR --report FILE`,
the report JSON with the error and the steps done). Each run keeps only its own setup and steps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from terminal.ui import finger
from terminal.ui import offscreen as off

# The channels' timings for a scenario: queries every 0.1 s, a payment given up after 8 s.
FAST = {"query_interval_s": 0.1, "pay_deadline_s": 8.0, "read_timeout_s": 2.0}


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


class ScreenDriver:
    """The app's current screen, waited for and read as the cashier sees it."""

    def __init__(self, app: Any, *, timeout: float, detail: Callable[[], object] | None = None) -> None:
        self.app, self.vm = app, app.vm
        self.timeout = timeout  # how long `on` waits by default
        self._detail = detail  # what else a timed-out wait should say (the service's message)

    def screen(self) -> Any:
        return self.app.root.current_screen

    async def on(self, name: str, timeout: float | None = None) -> None:
        """Wait until the app shows screen `name` and no cashier action is running, and it is drawn."""
        timeout = self.timeout if timeout is None else timeout
        detail = "" if self._detail is None else f", {self._detail()}"
        await off.until(lambda: self.vm.screen == name, timeout, f"screen {name} (now {self.vm.screen}{detail})")
        await off.until(lambda: self.vm.worker.busy == 0, timeout, "cashier actions")
        await off.frames(2)

    def shows(self, text: str) -> bool:
        return bool(off.find_text(self.screen(), text))

    def can_press(self, text: str) -> bool:
        try:
            finger.find_button(self.screen(), text)
        except AssertionError:
            return False
        return True


def main_with_report(description: str | None, argv: list[str] | None, run: Callable[[Path, list[str]], str | None]) -> int:
    """The command line of a scenario run: `run(work, steps)` returns the scenario's error (or None)
    and appends the steps it completed; both are written to the --report file. Exit status 0 if none."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    report: dict = {"error": None, "steps": []}
    report["error"] = run(args.work, report["steps"])
    args.report.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0 if report["error"] is None else 1
