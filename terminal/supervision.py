"""Who runs the terminal service's threads, and whether the service is still alive.

    Supervision(cond, work=fn(seq), needs_work=fn(seq) -> bool, storage_dead=fn() -> bool)
    kick(seq)            make sure a worker thread runs work(seq) (call with cond's lock held)
    add_background(t)    a thread-owning helper (start() / stop(timeout)) started by start_background()
    check_alive()        raise PowerLostAtCommit once the service (or its journal) has lost power
    power_lost()         a commit failed as the power went: nothing more happens on this object
    close(timeout)       stop: no new workers, wake every waiter, join the background and the workers
    closing / dead / stopping

What it owns: the worker threads (at most one per instruction, named terminal-worker-<seq>), the
thread-owning helpers such as the deadline watcher, and the `closing` and `dead` flags. A worker that
returns while its instruction still `needs_work` (a change landed between its last look and its
end) is started again; a PowerLostAtCommit raised by any worker makes the whole service dead,
because the journal behind it is gone: a new service must be started on the journal.

The lock is the service's (one condition guards the journal and the lifecycle); waiters on it are
woken on close and on a power loss so they can see `stopping` and return.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol

from terminal.journal import PowerLostAtCommit


class Background(Protocol):
    """A helper that owns a thread of its own (terminal.his_outcomes.DeadlineWatcher)."""

    def start(self) -> object: ...

    def stop(self, timeout: float = ...) -> None: ...


class Supervision:
    def __init__(self, cond: threading.Condition, *, work: Callable[[int], None], needs_work: Callable[[int], bool],
                 storage_dead: Callable[[], bool]) -> None:
        self._cond = cond
        self._work = work
        self._needs_work = needs_work
        self._storage_dead = storage_dead
        self._workers: dict[int, threading.Thread] = {}
        self._background: list[Background] = []
        self._closing = False
        self._dead = False

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def dead(self) -> bool:
        """True after a PowerLostAtCommit: the service does nothing more; start a new one on the journal."""
        return self._dead

    @property
    def stopping(self) -> bool:
        """A waiting worker should give up now (the service is closing or lost power)."""
        return self._closing or self._dead

    def check_alive(self) -> None:
        if self._dead or self._storage_dead():
            self._dead = True
            raise PowerLostAtCommit("this service lost power")

    def power_lost(self) -> None:
        self._dead = True
        with self._cond:
            self._cond.notify_all()

    def add_background(self, helper: Background) -> None:
        self._background.append(helper)

    def start_background(self) -> None:
        for helper in self._background:
            helper.start()

    def kick(self, seq: int) -> None:
        """Make sure a worker runs `seq` (call with the lock held)."""
        if self._closing or self._dead:
            return
        running = self._workers.get(seq)
        if running is not None and running.is_alive():
            return
        thread = threading.Thread(target=self._run, args=(seq,), name=f"terminal-worker-{seq}", daemon=True)
        self._workers[seq] = thread
        thread.start()

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            threads = list(self._workers.values())
        for helper in self._background:
            helper.stop(timeout)
        for thread in threads:
            thread.join(timeout)

    def _run(self, seq: int) -> None:
        try:
            self._work(seq)
        except PowerLostAtCommit:
            self.power_lost()
        finally:
            with self._cond:
                if self._workers.get(seq) is threading.current_thread():
                    del self._workers[seq]
                    # A change may have landed between the worker's last look and now.
                    try:
                        again = not self._closing and self._needs_work(seq)
                    except PowerLostAtCommit:
                        self._dead, again = True, False
                    if again:
                        self.kick(seq)
