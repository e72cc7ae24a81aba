"""A daemon stops when asked (local_storage/stop_signals.py: the bridge, the gateway, the sandbox, pos-sim run
and the headless system all stop through it).

What a user would notice: Ctrl-C or a service stop always stops the process, whatever instant the
signal lands at. The finding: `signal.signal(SIGTERM, lambda *_: event.set())` deadlocks when the
handler runs while the main thread, inside `event.wait()`, holds the event's lock (a `pos-sim run`
hung in one stop of 38 under load; the headless system's launcher never stopped after Ctrl-C in CI)."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from local_storage.stop_signals import StopSignals

ROOT = Path(__file__).resolve().parents[2]


def land_inside_wait(event: threading.Event, handler: object) -> threading.Event:
    """Run `handler` the way a signal lands in `event.wait()`: on a thread that holds the event's lock.
    Returns an event set once the handler has returned."""
    returned = threading.Event()

    def run() -> None:
        with event._cond:  # type: ignore[attr-defined]  # the lock Event.wait holds while it re-checks its flag
            handler(signal.SIGTERM, None)  # type: ignore[operator]  # a signal handler: (signum, frame)
        returned.set()

    threading.Thread(target=run, daemon=True).start()
    return returned


def test_a_signal_landing_inside_the_wait_stops_the_process_instead_of_deadlocking_it() -> None:
    stop = StopSignals().install()
    try:
        returned = land_inside_wait(stop.event, signal.getsignal(signal.SIGTERM))
        assert returned.wait(5), "the handler blocked on the lock its own thread holds"
        assert stop.event.wait(5) and stop.requested
    finally:
        stop.close()


def test_the_check_would_see_the_naive_handler_deadlock() -> None:
    event = threading.Event()
    returned = land_inside_wait(event, lambda *_: event.set())  # what the daemons did before
    assert not returned.wait(1)  # stuck for ever (a daemon thread: it dies with the test run)


def test_a_real_signal_sets_the_event_says_which_and_close_gives_the_signal_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[str] = []
    stop = StopSignals(on_signal=seen.append).install()
    try:
        assert signal.getsignal(signal.SIGTERM) != before
        os.kill(os.getpid(), signal.SIGTERM)
        stop.wait(poll_s=0.05)
        assert seen == ["SIGTERM"]
    finally:
        stop.close()
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_failing_note_does_not_keep_the_process_from_stopping() -> None:
    def note(name: str) -> None:
        raise RuntimeError("the log's disk is full")

    stop = StopSignals(on_signal=note).install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.event.wait(5)
    finally:
        stop.close()


def test_an_event_someone_else_sets_ends_the_wait_too() -> None:
    event = threading.Event()
    stop = StopSignals(event).install()
    try:
        threading.Timer(0.1, event.set).start()  # pos-sim's parent watcher, the POS window closing
        stop.wait(poll_s=0.05)
        assert stop.requested
    finally:
        stop.close()


# A process that waits as a daemon does, but whose main thread blocks SIGTERM, so the kernel hands every
# signal to one of its other threads (as it may in a daemon: what hung pos-sim run) and the handler runs
# when the main thread next wakes from its timed wait, inside the event's lock. It takes a stop, reports
# it and waits again: hundreds of real signals in a second. The naive handler hangs within a few dozen.
CHILD = textwrap.dedent("""
    import signal, sys, threading, time
    from local_storage.stop_signals import StopSignals
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # what close() gives back: the last signals find the process leaving
    stop = StopSignals().install()
    threading.Thread(target=lambda: time.sleep(3600), daemon=True).start()  # another thread to take the signals
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    print("ready", flush=True)
    for _ in range(int(sys.argv[1])):
        stop.wait(poll_s=0.002)
        stop.event.clear()
        print("stopped", flush=True)
    stop.close()
""")


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX: which thread takes a signal")
def test_hundreds_of_real_signals_at_any_instant_each_stop_the_wait() -> None:
    rounds = 400
    child = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", CHILD, str(rounds)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        stops: list[str] = []
        threading.Thread(target=lambda: stops.extend(child.stdout), daemon=True).start()  # type: ignore[arg-type]  # started with stdout=PIPE
        deadline = time.monotonic() + 60
        while len(stops) < rounds:
            if time.monotonic() > deadline:
                child.send_signal(signal.SIGABRT)  # faulthandler: where each thread is stuck
                child.wait(10)
                raise AssertionError(f"the process stopped taking signals after {len(stops)} stops:\n"
                                     f"{child.stderr.read()[-4000:]}")  # type: ignore[union-attr]  # started with stderr=PIPE
            os.kill(child.pid, signal.SIGTERM)  # lands anywhere: in the wait, in the clear, in the print
            time.sleep(0.001)
        assert child.wait(timeout=30) == 0 and set(stops) == {"stopped\n"}
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


# Where a signal handler may still be set by hand, and why each is safe: none of them touches a lock.
HAND_SET = {
    "local_storage/stop_signals.py": "the helper itself",
    "firmware_sim/system.py": "while starting, a signal raises KeyboardInterrupt (start_system stops what it started); "
                              "the HIS console gets Python's own Ctrl-C back",
}


def test_every_daemon_takes_its_stop_signals_through_the_helper() -> None:
    found = []
    for package in ("protocol", "local_storage", "bridge", "terminal", "posflash", "gateway", "firmware_sim", "reconcile"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "signal"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "signal"):
                    found.append(path.relative_to(ROOT).as_posix())
    assert found and set(found) <= set(HAND_SET), sorted(set(found) - set(HAND_SET))
