"""Real full disks for the fault campaign (issue 14): a small tmpfs mounted where a journal lives, and
a filler file that takes every free block, so the journal's next write that needs space gets ENOSPC
from the kernel (SQLITE_FULL), not from a mock. Mounting needs root (CAP_SYS_ADMIN): `mount_works()`
says whether this machine can; the campaign leaves the full-disk faults out, and says so, when not.

    disk = SmallDisk(path, size_mib=32).mount()     # an empty directory, or one whose files are moved in
    disk.fill(); ...; disk.free()
    disk.unmount()
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

FILLER = ".filler"


def mount_works() -> bool:
    """Whether this process may mount a tmpfs (root in a container that allows it)."""
    probe = Path(tempfile.mkdtemp(prefix="tmpfs-probe-"))
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True)
        if done.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], capture_output=True)
        return True
    except OSError:
        return False
    finally:
        probe.rmdir()


class SmallDisk:
    def __init__(self, path: Path, *, size_mib: int = 32) -> None:
        self.path = Path(path)
        self.size_mib = size_mib
        self.mounted = False

    def mount(self) -> "SmallDisk":
        """Mount over `path`; files already there are moved onto the new filesystem (the program that
        uses them must be stopped meanwhile)."""
        self.path.mkdir(parents=True, exist_ok=True)
        keep = Path(tempfile.mkdtemp(prefix="tmpfs-move-"))
        moved = [p for p in self.path.iterdir()]
        for p in moved:
            shutil.move(str(p), keep / p.name)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m,mode=0700", "tmpfs", str(self.path)],
                       check=True, capture_output=True)
        self.mounted = True
        for p in keep.iterdir():
            shutil.move(str(p), self.path / p.name)
        keep.rmdir()
        return self

    def fill(self, *, checkpoint: Path | None = None) -> int:
        """Take every free block; returns the bytes taken. `checkpoint`: a journal whose WAL is
        checkpointed and truncated first (as a second program may do), so that its next commit needs
        new blocks: a full disk then strikes at once, not only when the WAL would have grown."""
        if checkpoint is not None:
            try:
                db = sqlite3.connect(str(checkpoint), timeout=1)
                try:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    db.close()
            except sqlite3.Error:
                pass  # busy: the fault strikes when the WAL grows
        filler = self.path / FILLER
        st = os.statvfs(self.path)
        free = st.f_bavail * st.f_frsize
        taken = 0
        with open(filler, "ab", buffering=0) as f:
            try:
                os.posix_fallocate(f.fileno(), 0, free)
                taken = free
            except OSError:
                pass
            chunk = b"\0" * 4096
            try:
                while True:  # the last blocks fallocate may have left
                    written = f.write(chunk)
                    if not written:
                        break
                    taken += written
            except OSError:
                pass
        return taken

    def free(self) -> None:
        try:
            (self.path / FILLER).unlink()
        except FileNotFoundError:
            pass

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False
