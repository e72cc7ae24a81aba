"""Who hears about the POS screen, and what the screen holds besides the journal.

    ScreenState()              revision, notice, the result on show (call its methods with the service lock held)
    Observers()                add(fn) -> remove; tell(view) calls every fn(view), in order, on this thread

What it owns: the screen's transient state that is not in the journal — the growing `revision`
every ScreenView carries (a UI redraws when it grows), the one-line `notice` after a refused scan or
a wrong PIN (cleared by the next change or by dismiss), and which finished instruction the result
screen shows — and the list of observers. An observer may call back into the service (it has its
own re-entrant lock), and an observer that raises is logged and skipped: a UI bug must not stop the
money work. Views are built by terminal.view from the journal and this state.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Generic, TypeVar

from terminal.texts import Text

log = logging.getLogger("terminal.observers")
V = TypeVar("V")


class ScreenState:
    def __init__(self) -> None:
        self.revision = 0
        self.notice: Text | None = None
        self.show_result = False
        self.last_seq: int | None = None  # the last finished instruction the result screen is about

    def changed(self) -> None:
        """Something on the screen changed: views from now on carry a higher revision."""
        self.revision += 1

    def moved_on(self) -> None:
        """An instruction changed state: the notice about the previous step goes."""
        self.revision += 1
        self.notice = None

    def set_notice(self, notice: Text) -> None:
        self.notice = notice
        self.revision += 1

    def clear_notice(self) -> None:
        self.notice = None
        self.revision += 1

    def finished(self, seq: int, *, show: bool) -> None:
        """`seq` finished; `show`: put its result on the screen (not for a refund that finished in the
        background while the cashier serves the next patient)."""
        if show:
            self.last_seq, self.show_result = seq, True

    def remember_last(self, seq: int | None) -> None:
        """At start: the newest finished instruction, for the result screen if it is asked for."""
        self.last_seq = seq

    def dismiss(self) -> None:
        self.show_result = False
        self.notice = None
        self.revision += 1


class Observers(Generic[V]):
    def __init__(self) -> None:
        self._lock = threading.RLock()  # an observer may call back into the service, and so here
        self._observers: list[Callable[[V], None]] = []

    def add(self, observer: Callable[[V], None]) -> Callable[[], None]:
        """Register `observer`; call the returned function to remove it (twice is harmless)."""
        with self._lock:
            self._observers.append(observer)

        def remove() -> None:
            with self._lock:
                if observer in self._observers:
                    self._observers.remove(observer)
        return remove

    def tell(self, view: Callable[[], V]) -> None:
        """Build the view once (under this lock, so observers see views in revision order) and hand
        it to every observer; one that raises is logged and the others still hear."""
        with self._lock:
            current = view()
            for observer in list(self._observers):
                try:
                    observer(current)
                except Exception:  # an observer's bug must not stop the service
                    log.exception("observer %r failed", observer)
