"""Ctrl-C on the whole system at any instant, over and over (slow: `make fuzz ARGS=tests/firmware_sim/test_system_stops.py`,
or with SYSTEM_STOP_CYCLES=N; 20 cycles take about four minutes).

What the newcomer and the field engineer would notice: `make run` always stops on Ctrl-C, whether it
lands while the system starts or once it runs, no process is left behind, and the next `make run` on
the same directory comes up. The finding behind it: a signal handler that set an Event deadlocked
the launcher (and pos-sim run) when it landed inside that Event's wait (local_storage/stop_signals.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.firmware_sim.test_system import Launcher

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find what is left")]

CYCLES = int(os.environ.get("SYSTEM_STOP_CYCLES", "20"))


def processes_of(workdir: Path) -> list[int]:
    """Every process whose command line names `workdir` (the launcher and each of its children do)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if str(workdir).encode() in (entry / "cmdline").read_bytes():
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "(gone)"


def interrupt_while_starting(workdir: Path, after_s: float) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "firmware_sim.system", "--headless", "--workdir", str(workdir),
                             "--bridge-port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]  # started with stderr=PIPE
    time.sleep(after_s)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        status = proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"the system did not stop within 90 s of Ctrl-C {after_s:.2f} s into its start:\n{''.join(err)}") from None
    # -SIGINT: Python's own Ctrl-C, still importing (nothing started); 130: interrupted while starting,
    # what had started was stopped; 0: it had finished starting when the signal came.
    assert status in (-signal.SIGINT, 130, 0), f"exit {status} after Ctrl-C {after_s:.2f} s into its start:\n{''.join(err)}"
    return status


def test_ctrl_c_at_any_instant_always_stops_everything_and_the_next_start_comes_up(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    rng = random.Random(int(os.environ.get("SEED", "1")))
    outcomes: dict[str, int] = {"interrupted while importing": 0, "interrupted while starting": 0, "stopped once running": 0}
    for cycle in range(CYCLES):
        if cycle % 2 == 0:
            status = interrupt_while_starting(workdir, rng.uniform(0.2, 3.0))
            outcomes[{0: "stopped once running", 130: "interrupted while starting"}.get(status, "interrupted while importing")] += 1
        else:
            system = Launcher(workdir)  # every other cycle must come up on what the interrupted one left
            try:
                time.sleep(rng.choice([0.0, 0.01, 0.1, 0.5, 1.0]))
                assert system.stop(rng.choice([signal.SIGINT, signal.SIGTERM])) == 0, system.err
                assert "exit 0" in "".join(system.out) and "exit -" not in "".join(system.out), "".join(system.out)
            finally:
                system.kill()
            outcomes["stopped once running"] += 1
        left = {pid: command_line(pid) for pid in processes_of(workdir)}
        assert not left, f"cycle {cycle}: processes left behind: {left}"
    print(outcomes)
    assert outcomes["interrupted while starting"] > 0
