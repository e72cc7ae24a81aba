"""The POS journal's high-water mark file (`<journal>.hwm`): the last durable commit, kept apart.

The record format and the rule are in protocol.integrity. This module only reads the file and
writes a slot: in place (no rename), then fsync, so that after a power cut the file holds a mark no
newer than the journal's last durable commit. (The bridge has its twin: neither may import the other.)
"""

from __future__ import annotations

import os
from pathlib import Path

from protocol.integrity import MARK_FILE_SIZE, MarkRecord, newest_mark, slot_for


def mark_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.name + ".hwm")


class MarkFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._generation = 0

    def read(self) -> MarkRecord | None:
        """The recorded mark; None if the file does not exist (a new journal) or holds no valid slot."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return newest_mark(data[:MARK_FILE_SIZE])

    def exists(self) -> bool:
        return self.path.exists()

    def write(self, mark: int, *, durable: bool = True) -> None:
        if self._fd is None:
            current = self.read()
            self._generation = current.generation if current else 0
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
            self._fd = os.open(self.path, flags, 0o600)
        self._generation += 1
        record = MarkRecord(self._generation, mark).encode()
        os.lseek(self._fd, slot_for(self._generation), os.SEEK_SET)
        os.write(self._fd, record)
        if durable:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
