"""Files that hold or sit beside secrets: created exclusively, private ones 0600, and refused when
other users can read them. Used by the device's own storage (terminal.identity) and by the field
engineer's tool (posflash), which writes keys and reads trust stores the same way.

Errors are protocol.flash.FlashError (bad_input / exists / bad_key) with the path and the fix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from local_storage.atomic_file import create_new
from protocol.flash import FlashCode, FlashError


def write_new_file(path: Path, text: str, *, private: bool) -> None:
    """Create `path` exclusively (never overwrite); mode 0600 when private, and then the directories
    this makes for it are 0700 (a key's folder is nobody else's business either)."""
    try:
        create_new(path, text, private=private)
    except FileExistsError:
        raise FlashError(FlashCode.EXISTS, f"{path} already exists") from None


def check_private_mode(path: Path) -> None:
    """Refuse a private file that other users can read (POSIX; Windows ACLs are the OS's job)."""
    if os.name != "posix":
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise FlashError(FlashCode.BAD_KEY, f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}")


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlashError(FlashCode.BAD_INPUT, f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlashError(FlashCode.BAD_INPUT, f"cannot read {what} {path}: {exc}") from None
