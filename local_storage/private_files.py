"""Journal and log files, on the bridge and on the POS: owner-only (files 0600, the directories it makes 0700).

They hold order numbers, amounts and masked patient names (issue 12 finding 8: they were 0644).
One module for both ends (it was written twice, once in bridge/ and once in terminal/).
The file is created before SQLite or logging opens it, so it never exists with a wider mode even
for a moment; SQLite gives its -wal and -shm files the mode of the database file. A file that
already exists with a wider mode (from an earlier version) is tightened. An existing directory is
left as the administrator made it (on the POS, the device storage is the app's own): the files in
it are private either way. On Windows the mode bits mean nothing; the folder's NTFS permissions
protect the files (docs/bridge.md).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def prepare_private_file(path: Path) -> None:
    """Make `path`'s missing directories 0700 and `path` itself 0600 (created empty if missing)."""
    make_private_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), FILE_MODE)
    os.close(fd)
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, FILE_MODE)


def make_private_dirs(directory: Path) -> None:
    """mkdir -p, each directory it creates 0700 (the umask cannot widen that: it only removes bits)."""
    missing: list[Path] = []
    for parent in [directory, *directory.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for parent in reversed(missing):
        try:
            parent.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
