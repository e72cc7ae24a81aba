"""Device messages the journal could not take yet, re-applied with backoff until it can.

When the journal cannot be written (disk full, "database is locked" by another program) a result
or refusal from the device must neither be lost nor kill the device port's thread (issue 14,
finding 3). The relay hands it here; one thread re-applies the messages in arrival order, waiting
RETRY_MIN_S, doubling to RETRY_MAX_S between tries, and the relay queues new device messages
behind them so their order is kept. /v1/health shows how many wait.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable

from bridge.journal import JournalError, JournalIntegrityError
from bridge.logjson import log_event

log = logging.getLogger("bridge.storage_retry")

RETRY_MIN_S = 0.2  # first retry: a lock held for a moment is gone by then
RETRY_MAX_S = 5.0  # at most this long between tries: a freed disk is used within seconds


class DeferredWrites:
    def __init__(self, apply: Callable[[object, object, bytes], None], *,
                 retry_min_s: float = RETRY_MIN_S, retry_max_s: float = RETRY_MAX_S) -> None:
        self._apply = apply
        self._items: deque[tuple[object, object, bytes]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s

    def pending(self) -> int:
        with self._lock:
            return len(self._items)

    def add(self, port: object, identity: object, payload: bytes) -> None:
        with self._lock:
            self._items.append((port, identity, payload))
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="journal-retry", daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def _run(self) -> None:
        delay = self.retry_min_s
        while not self._stopped:
            with self._lock:
                item = self._items[0] if self._items else None
                if item is None:
                    self._thread = None
                    return
            try:
                self._apply(*item)
            except JournalIntegrityError as exc:  # locked: nothing more can be written until recovery
                log_event(log, "journal_retry_stopped", level=logging.ERROR, reason=str(exc), pending=self.pending())
                with self._lock:
                    self._thread = None
                return
            except JournalError as exc:
                log_event(log, "journal_retry_failed", level=logging.WARNING, cause=exc.cause.value, retry_in_s=delay,
                          pending=self.pending())
                self._wake.clear()
                self._wake.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            with self._lock:
                self._items.popleft()
            delay = self.retry_min_s
            log_event(log, "journal_retry_applied", pending=self.pending())
