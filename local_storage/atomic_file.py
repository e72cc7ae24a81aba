"""Replacing a file whole or not at all: a temporary sibling, fsync, rename over the target, fsync the directory.

A reader (or the process after a power cut) finds either the old file or the new one, never half of
one and never an empty one: the data is on the disk before the rename makes it the file, and the
rename is on the disk before the call returns. Every process that keeps files it later trusts
uses this (the bridge's key file, registries, journal backups and archives; the POS's journal
backups; the field tool's device records; reconciliation's and the gateway's downloaded bills; the
gateway's ledger exports; the simulator's state), so the sequence is written once.

    write_atomically(path, data, private=True)                 # bytes or str (UTF-8), mode 0600
    with atomic_text_writer(path) as f: f.write(...)           # streamed (atomic_writer: bytes)
    publish(partial, path)                                     # a file something else wrote (an SQLite backup)
    create_new(path, data, private=True)                       # a key: never replaces one (FileExistsError)
"""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, TextIO

from local_storage.private_files import make_private_dirs


def temp_sibling(path: Path) -> Path:
    """The temporary name beside `path`: hidden, and per process, so two writers never share one."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def sync_directory(directory: Path) -> None:
    """fsync a directory, so a rename or a new name in it is on the disk."""
    if not hasattr(os, "O_DIRECTORY"):
        return  # Windows: no directory fsync; NTFS journals the rename itself
    fd = os.open(directory, os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(partial: Path, path: Path) -> None:
    """Make the finished file `partial` (written by someone else: an SQLite backup, a copy) be `path`:
    fsync its data, rename it over `path`, fsync the directory."""
    with open(partial, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(partial, path)
    sync_directory(path.parent)


@contextmanager
def atomic_writer(path: Path, *, private: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write that becomes `path` when the block ends; if the block raises, `path`
    is untouched and the temporary file gone. `private`: mode 0600 from the moment it exists (keys);
    otherwise 0644 less the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    tmp.unlink(missing_ok=True)  # left by a process of the same pid that died
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


@contextmanager
def atomic_text_writer(path: Path, *, bom: bool = False) -> Iterator[TextIO]:
    """`atomic_writer` for text: UTF-8 (with a BOM if asked, for Excel), newlines as written."""
    with atomic_writer(path) as raw:
        f = io.TextIOWrapper(raw, encoding="utf-8-sig" if bom else "utf-8", newline="")
        try:
            yield f
            f.flush()
        finally:
            f.detach()  # the binary file is closed (and synced) by atomic_writer


def write_atomically(path: Path, data: bytes | str, *, private: bool = False) -> None:
    """Replace `path` with `data` (a str is written as UTF-8, newlines as given), whole or not at all."""
    with atomic_writer(path, private=private) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def create_new(path: Path, data: bytes | str, *, private: bool) -> None:
    """Create `path` holding `data` (a str as UTF-8), never replacing a file that exists
    (FileExistsError: a key is never overwritten), on the disk when this returns. `private`: mode
    0600, and the directories this makes for it 0700 (a key's folder is nobody else's business)."""
    if private:
        make_private_dirs(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    sync_directory(path.parent)
