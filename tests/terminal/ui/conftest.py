"""Run a Kivy scenario script in its own process (an App cannot be restarted in one process),
offscreen, and hand its JSON report to the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from terminal.ui.display import offscreen_env

ROOT = Path(__file__).resolve().parents[3]
# One scenario process may take this long on a loaded 2-core machine before we call it hung.
SCRIPT_TIMEOUT_S = 120


def start_script(module: str, args: list[str], tmp: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(offscreen_env(str(tmp / "kivy-home")))
    env["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    log = open(tmp / f"{module.rsplit('.', 1)[-1]}-{abs(hash(tuple(args)))}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen[bytes], report: Path) -> dict:
    try:
        process.wait(timeout=SCRIPT_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert report.is_file(), f"the scenario wrote no report (exit {process.returncode}); see {process.args}"
    return json.loads(report.read_text(encoding="utf-8"))


@pytest.fixture
def run_script(tmp_path: Path):
    started: list[subprocess.Popen[bytes]] = []

    def start(module: str, *args: str) -> subprocess.Popen[bytes]:
        process = start_script(module, list(args), tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:  # never leave a Kivy process behind, even when a test failed
        if process.poll() is None:
            process.kill()
            process.wait()
