"""A journal's high-water mark file (`<journal>.hwm`): the last durable commit, kept apart. The bridge's
journal and the POS's both keep one, through this module.

The record format and the rule are in protocol.integrity. This module only reads the file and
writes a slot: in place (no rename), after the journal's commit, so that after a power cut the file
holds a mark no newer than the journal's last durable commit.

The slot is fsynced at most once every `SYNC_INTERVAL_S` (and on close), not on every commit: an
fsync per commit doubled the disk flushes of every instruction and cut throughput by a third. A
mark that lags is allowed by the rule (the check is "the journal does not end before its mark"), so
the cost is only that a rollback of the last second before a power cut is not seen; the rollbacks
the mark is for (a removed WAL, an old copy put back, a truncated file) happen long after the writes,
when the kernel has written the mark out anyway. Windows and POSIX alike (plain os calls).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from protocol.integrity import MARK_FILE_SIZE, MarkRecord, newest_mark, slot_for


def mark_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.name + ".hwm")


SYNC_INTERVAL_S = 1.0


class MarkFile:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._fd: int | None = None
        self._generation = 0
        self._clock = clock
        self._synced_at: float | None = None  # None: nothing written since the last fsync
        self._dirty = False

    def read(self) -> MarkRecord | None:
        """The recorded mark; None if the file does not exist (a new journal) or holds no valid slot."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return newest_mark(data[:MARK_FILE_SIZE])

    def exists(self) -> bool:
        return self.path.exists()

    def write(self, mark: int, *, durable: bool | None = None) -> None:
        """Write `mark` to the next slot. durable=None (the default): fsync if the last fsync is at
        least SYNC_INTERVAL_S old; True: fsync now; False: leave it to the kernel (or the next sync)."""
        if self._fd is None:
            current = self.read()
            self._generation = current.generation if current else 0
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
            self._fd = os.open(self.path, flags, 0o600)
        self._generation += 1
        record = MarkRecord(self._generation, mark).encode()
        os.lseek(self._fd, slot_for(self._generation), os.SEEK_SET)
        os.write(self._fd, record)
        self._dirty = True
        now = self._clock()
        if durable is None:
            durable = self._synced_at is None or now - self._synced_at >= SYNC_INTERVAL_S
        if durable:
            self.sync()

    def sync(self) -> None:
        """fsync what has been written."""
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
            self._synced_at = self._clock()

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None
