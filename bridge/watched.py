"""A file the running bridge re-reads when it changes (keys, registries), without a restart.

At most one stat() a second; a change that does not parse is reported and the previous contents
stay in force, so a half-saved edit never takes the bridge down or empties its registries. The clock
(monotonic seconds) is a parameter, so a test moves time on instead of sleeping through the interval.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

# How often the file's size and mtime are looked at.
CHECK_INTERVAL_S = 1.0


class WatchedFile(Generic[T]):
    def __init__(self, path: Path, read: Callable[[Path], T], on_error: Callable[[str], None], *,
                 errors: tuple[type[Exception], ...], what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self._read, self.on_error = path, read, on_error
        self._clock = clock
        self._errors, self._what = errors, what
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self.value = read(path)
        self._checked = clock()

    def _stat(self) -> tuple[int, int]:
        try:
            st = self.path.stat()
            return st.st_mtime_ns, st.st_size
        except OSError:
            return (0, 0)

    def get(self) -> T:
        now = self._clock()
        if now - self._checked >= CHECK_INTERVAL_S:
            with self._lock:
                self._checked = now
                stamp = self._stat()
                if stamp != self._stamp:
                    self._stamp = stamp
                    try:
                        self.value = self._read(self.path)
                    except self._errors as exc:
                        self.on_error(f"{self._what} change ignored, the previous contents stay in force: {exc}")
        return self.value
