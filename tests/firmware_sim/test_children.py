"""The headless system's children (firmware_sim/children.py) as the field engineer meets them when one
misbehaves: a child that does not stop on SIGTERM is still stopped, and its log shows where it was stuck."""

from __future__ import annotations

import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from firmware_sim.children import Child

STUCK = textwrap.dedent("""
    import json, signal, threading
    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a daemon whose stop path is broken
    def stuck_in_its_stop_path():
        threading.Event().wait()
    print(json.dumps({"event": "ready"}), flush=True)
    stuck_in_its_stop_path()
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGABRT and faulthandler's stacks: POSIX")
def test_a_child_that_ignores_sigterm_is_aborted_with_its_stacks_in_its_log(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "stuck.log"
    child = Child("stuck", [sys.executable, "-c", STUCK], log_path).start()
    assert child.ready_line(30) == {"event": "ready"}
    began = time.monotonic()
    assert child.stop(grace_s=0.5) == -signal.SIGABRT
    assert time.monotonic() - began < 10 and not child.alive()
    text = log_path.read_text()
    assert "Fatal Python error: Aborted" in text and "in stuck_in_its_stop_path" in text


@pytest.mark.skipif(sys.platform == "win32", reason="exit statuses of signals: POSIX")
def test_a_child_that_stops_on_sigterm_exits_with_its_own_status(tmp_path: Path) -> None:
    child = Child("fine", [sys.executable, "-c", "import json, time; print(json.dumps({'event': 'ready'}), flush=True); "
                                                 "time.sleep(60)"], tmp_path / "fine.log").start()
    child.ready_line(30)
    assert child.stop() == -signal.SIGTERM
    assert "Fatal Python error" not in (tmp_path / "fine.log").read_text()
