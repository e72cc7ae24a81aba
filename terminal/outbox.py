"""The service's outgoing link messages, waiting for the link owner to send them.

The service puts `protocol.link.app` messages here (ResultMsg, ProgressMsg, NotTakenMsg) in the order
its commits happened; the link owner (firmware_sim's endpoint, the real device's link loop) takes
them with `get` / `drain` on its own thread, or is told by `set_listener` that something arrived
(the listener runs on the producing thread and must only wake the owner, e.g. write a self-pipe).

Results are not only here: the journal keeps every result until `TerminalService.mark_delivered`,
and `link_up()` queues every undelivered one again. So when the link goes down the queued results
are dropped from here (`drop_results`), and the owner drops the ones it had sent but not had
acknowledged (LinkDown.unacked): the service sends them again after the reconnect.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from protocol.link.app import AppMessage, ResultMsg


class Outbox:
    def __init__(self) -> None:
        self._items: deque[AppMessage] = deque()
        self._cond = threading.Condition()
        self._listener: Callable[[], None] | None = None

    def put(self, message: AppMessage) -> None:
        with self._cond:
            self._items.append(message)
            self._cond.notify_all()
            listener = self._listener
        if listener is not None:
            listener()

    def get(self, timeout: float | None = None) -> AppMessage | None:
        """The next message, waiting up to `timeout` seconds (None: wait forever)."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                return None
            return self._items.popleft()

    def drain(self) -> list[AppMessage]:
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items

    def drop_results(self) -> int:
        with self._cond:
            kept = [m for m in self._items if not isinstance(m, ResultMsg)]
            dropped = len(self._items) - len(kept)
            self._items = deque(kept)
            return dropped

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        with self._cond:
            self._listener = listener

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
