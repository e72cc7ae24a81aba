"""How a daemon stops when asked: SIGINT / SIGTERM (SIGBREAK on Windows) set a `threading.Event`, safely.

    stop = StopSignals(on_signal=lambda name: log.info("signal %s", name)).install()
    service.start()
    try:
        stop.wait()                  # returns once a signal came (or someone else set stop.event)
    finally:
        service.stop()
        stop.close()                 # after the stop's work: a second Ctrl-C meanwhile changes nothing

Why not `signal.signal(SIGTERM, lambda *_: event.set())`: Python runs a handler in the main thread
between two bytecodes, and that thread may be inside `event.wait()` at that instant, holding the
event's own lock (re-taking it after a timed wait). `event.set()` then waits for a lock its own
thread holds, for ever. Seen on this project: a `pos-sim run` in one stop of 38 under load, and the
headless system, which never stopped after Ctrl-C. The handler here takes no lock: it writes the
signal's number to a pipe, and a small thread of ours reads it and sets the event (and calls
`on_signal`, which may log: logging takes locks too).

`wait()` wakes every `poll_s`: a signal the kernel gave another thread has its Python handler run
only when the main thread next wakes (and Windows delivers Ctrl-C to a waiting thread only so).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable, Iterable

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGBREAK")  # those this platform lacks (SIGBREAK off Windows) are skipped
_CLOSE = 0  # no signal has number 0: the pipe byte that ends the reader thread


class StopSignals:
    """The stop request of a process: `event` is set by the first of `signals` (or by anyone else)."""

    def __init__(self, event: threading.Event | None = None, *, signals: Iterable[str] = STOP_SIGNALS,
                 on_signal: Callable[[str], None] | None = None) -> None:
        self.event = event if event is not None else threading.Event()
        self._signums = [getattr(signal, name) for name in signals if hasattr(signal, name)]
        self._on_signal = on_signal
        self._previous: dict[int, object] = {}
        self._read_fd, self._write_fd = os.pipe()
        try:
            os.set_blocking(self._write_fd, False)  # a storm of signals never blocks the handler: one byte is enough
        except (OSError, AttributeError):  # Windows before Python 3.12 (no set_blocking for pipes): the reader drains the pipe
            pass
        self._reader = threading.Thread(target=self._read, name="stop-signals", daemon=True)

    def install(self) -> "StopSignals":
        """Take over the signals (main thread only, as `signal.signal` requires)."""
        self._reader.start()
        for signum in self._signums:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        # No lock, no logging, no Event here (see the module's docstring): one byte into the pipe.
        try:
            os.write(self._write_fd, bytes((signum,)))
        except OSError:  # the pipe is full (the stop is already on its way) or closed (we are closing)
            pass

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._read_fd, 64)
            except OSError:
                return
            for signum in data:
                if signum == _CLOSE:
                    return
                if self._on_signal is not None:
                    try:
                        self._on_signal(signal.Signals(signum).name)
                    except Exception:  # noqa: BLE001 - a failing note must not keep the process from stopping
                        pass
                self.event.set()
            if not data:
                return

    def wait(self, poll_s: float = 0.5) -> None:
        """Block until the stop is requested, waking every `poll_s` so that signals get handled."""
        while not self.event.wait(poll_s):
            pass

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def close(self) -> None:
        """Give the signals back to their earlier handlers and end the reader thread. Call it once the
        shutdown's work is done: until then a second signal is taken and changes nothing, where the
        default handler would kill the process half-way through its shutdown."""
        for signum, previous in self._previous.items():  # None: a handler set outside Python; the default then
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)  # type: ignore[arg-type]  # what signal.signal returned before: a handler, SIG_DFL or SIG_IGN
        self._previous.clear()
        try:
            os.write(self._write_fd, bytes((_CLOSE,)))
        except OSError:
            pass
        if self._reader.is_alive():
            self._reader.join(timeout=2.0)
        for fd in (self._write_fd, self._read_fd):
            try:
                os.close(fd)
            except OSError:
                pass
