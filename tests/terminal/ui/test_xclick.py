"""The real POS window under Xvfb, clicked with real X events (xdotool): a collection paid with the
scanner's keystrokes and an order cancelled with a click (see xclick_run.py for the steps).

Xvfb and xdotool are system packages that `make test` installs (the Makefile's APT_PACKAGES); the
test is skipped only where they are truly absent, and says which one is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.terminal.ui.conftest import ROOT, SCRIPT_TIMEOUT_S

MISSING = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
# The X screen: a common desktop, less high than the portrait device (720x1280), so the window must
# be scaled to fit it, as on a cashier's or a developer's PC.
SCREEN = "1280x1024x24"
XVFB_START_TIMEOUT_S = 30


@pytest.fixture
def x_display(tmp_path: Path):
    """A fresh Xvfb on a display number it picks itself (-displayfd: no guessing, no collisions)."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", SCREEN, "-nolisten", "tcp",
                               "-noreset"], pass_fds=(write_end,), stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "xvfb.log", "wb"))
    os.close(write_end)
    try:
        with os.fdopen(read_end) as announced:
            number = announced.readline().strip()  # written once the server accepts connections
        assert number.isdigit(), f"Xvfb did not start; see {tmp_path / 'xvfb.log'}"
        yield f":{number}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=XVFB_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (make test installs them with apt-get)")
def test_a_cashier_collects_and_cancels_with_real_clicks(x_display: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SDL_", "KIVY_", "WAYLAND_"))}
    env.update(DISPLAY=x_display, KIVY_HOME=str(tmp_path / "kivy-home"), KIVY_NO_ARGS="1", KIVY_NO_CONSOLELOG="1",
               KIVY_LOG_MODE="PYTHON", KIVY_METRICS_DENSITY="1")
    env["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    report_path = tmp_path / "xclick.json"
    with open(tmp_path / "xclick.log", "wb") as log:
        done = subprocess.run([sys.executable, "-m", "tests.terminal.ui.xclick_run", "--work", str(tmp_path),
                               "--report", str(report_path)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              timeout=SCRIPT_TIMEOUT_S)
    assert report_path.is_file(), f"no report (exit {done.returncode}); see {tmp_path / 'xclick.log'}"
    import json

    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["error"] is None, f"after {report['steps']}: {report['error']} (log: {tmp_path / 'xclick.log'})"
    assert report["steps"] == ["window on the X display", "camera scan and back, clicked", "collected with the scanner's keystrokes",
                               "printed and reprinted: the receipt image is in the workdir", "cancelled with a click"]
    # the portrait device (720x1280) does not fit this 1024-pixel-high screen: scaled, same shape
    window = report["window"]
    assert window["height"] < 1024 - 40 and abs(window["width"] / window["height"] - 720 / 1280) < 0.01, window
