"""The gateway's files replaced whole or not at all: a temporary sibling, fsync, rename, fsync the directory.

For what the gateway writes to its own disk and others later read (the channels' T+1 bills, a day's
ledger export): a reader finds the old file or the new one, never half of one. This is the twin of
local_storage/atomic_file.py, which the bridge, the POS and the field tool share: the gateway may
import neither local_storage/ nor the POS's packages (tests/test_structure.py), and protocol/ does
no I/O, so the gateway keeps its own copy of the few lines, with the same names.
"""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, TextIO


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes `path` when the block ends; if it raises, `path` is untouched."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: two writers never share one
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # Windows has no directory fsync; NTFS journals the rename
        fd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def atomic_text_writer(path: Path) -> Iterator[TextIO]:
    """`atomic_writer` for UTF-8 text, newlines as written."""
    with atomic_writer(path) as raw:
        f = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        try:
            yield f
            f.flush()
        finally:
            f.detach()


def write_atomically(path: Path, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)
