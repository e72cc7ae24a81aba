"""The device's flash memory and secure storage: files under one directory that the device owns.

Every write is on the medium (fsync) before it returns, in program order, so the state after a
power cut is exactly "everything written before the cut, plus a prefix of the write in progress".
That is the fault model the bootloader is built for and the one the tests inject:

    storage = DeviceStorage(root, cut_after_bytes=N)

cuts the power once N bytes have been written: the write in progress keeps only the bytes that fit,
and every later call raises `PowerLostMidWrite` (the device is off). To power the device on again, open a new
`DeviceStorage` on the same root. Renames, removals and truncations count as one byte each: they
happen entirely or not at all, and the budget decides which.

Two ways to update a file atomically, both used by the bootloader:
- `write_atomic`: write a temporary file, fsync, rename over the old one, fsync the directory;
- `write_in_place` on one of two copies with sequence numbers and CRCs (firmware_sim.bootloader's
  slot metadata), which is how a bootloader without a file system does it.

Names are relative paths with "/" separators; ".." and absolute paths are refused.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

TMP_SUFFIX = ".tmp"


class PowerLostMidWrite(Exception):
    """The simulated power was cut: nothing more reaches the medium until a new DeviceStorage opens it."""


class DeviceStorage:
    def __init__(self, root: Path | str, *, cut_after_bytes: int | None = None) -> None:
        self.root = Path(root)
        self._mkdir(self.root)
        self.bytes_written = 0  # data bytes plus one per rename/remove/truncate
        self._budget = cut_after_bytes
        self._dead = False

    # ----------------------------------------------------------------- fault injection

    def arm_power_cut(self, after_bytes: int | None) -> None:
        """Cut the power after `after_bytes` more bytes (None: never)."""
        self._budget = after_bytes

    @property
    def powered(self) -> bool:
        return not self._dead

    def _alive(self) -> None:
        if self._dead:
            raise PowerLostMidWrite("the device is powered off")

    def _allow(self, n: int) -> int:
        """How many of the next n bytes reach the medium before the power goes."""
        self._alive()
        if self._budget is None:
            self.bytes_written += n
            return n
        allowed = min(n, self._budget)
        self._budget -= allowed
        self.bytes_written += allowed
        return allowed

    def _cut(self) -> PowerLostMidWrite:
        self._dead = True
        return PowerLostMidWrite(f"power cut after {self.bytes_written} bytes written")

    def _metadata_op(self) -> None:
        if self._allow(1) < 1:
            raise self._cut()

    # ----------------------------------------------------------------- paths and reads

    def path(self, name: str) -> Path:
        rel = PurePosixPath(name)
        if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") for p in rel.parts):
            raise ValueError(f"storage name {name!r} must be a relative path without '..'")
        return self.root.joinpath(*rel.parts)

    def exists(self, name: str) -> bool:
        self._alive()
        return self.path(name).is_file()

    def read(self, name: str, *, limit: int | None = None) -> bytes | None:
        """The file's bytes (at most `limit` of them from the start), or None if it does not exist."""
        self._alive()
        try:
            with open(self.path(name), "rb") as f:
                return f.read() if limit is None else f.read(limit)
        except FileNotFoundError:
            return None

    def size(self, name: str) -> int:
        self._alive()
        try:
            return self.path(name).stat().st_size
        except FileNotFoundError:
            return 0

    def list(self, directory: str) -> list[str]:
        """Names of the files directly inside `directory` (sorted)."""
        self._alive()
        base = self.path(directory)
        if not base.is_dir():
            return []
        return sorted(f"{directory}/{p.name}" for p in base.iterdir() if p.is_file())

    # ----------------------------------------------------------------- writes

    def _write_fd(self, fd: int, data: bytes) -> None:
        allowed = self._allow(len(data))
        view = memoryview(data)[:allowed]
        while view:
            done = os.write(fd, view)
            view = view[done:]
        os.fsync(fd)
        if allowed < len(data):
            raise self._cut()

    @staticmethod
    def _mkdir(directory: Path) -> None:
        """Directories of the device's storage are its own: 0700 (images, keys, journal live here)."""
        missing = [d for d in (directory, *directory.parents) if not d.exists()]
        directory.mkdir(parents=True, exist_ok=True)
        if os.name == "posix":
            for made in missing:
                made.chmod(0o700)
            directory.chmod(0o700)

    def _open(self, name: str, flags: int, mode: int = 0o600) -> int:
        """Every file of the device's storage is private (0600): slot images hold sealed configurations,
        the metadata their state; nothing here is for another user of the machine."""
        target = self.path(name)
        self._mkdir(target.parent)
        return os.open(target, flags | getattr(os, "O_BINARY", 0), mode)

    def append(self, name: str, data: bytes) -> None:
        """Add `data` at the end of `name` (created if missing); on the medium when this returns."""
        self._alive()
        fd = self._open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            self._write_fd(fd, data)
        finally:
            os.close(fd)

    def write_in_place(self, name: str, data: bytes) -> None:
        """Truncate and rewrite `name`. NOT atomic: a cut leaves a prefix (callers keep two copies)."""
        self._alive()
        existed = self.path(name).exists()
        if existed:
            self._metadata_op()  # the truncation
        fd = self._open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            self._write_fd(fd, data)
        finally:
            os.close(fd)

    def write_atomic(self, name: str, data: bytes, *, private: bool = False) -> None:
        """Replace `name` with `data` entirely or not at all (temp file, fsync, rename, fsync dir)."""
        self._alive()
        tmp = name + TMP_SUFFIX
        del private  # every file here is private now; the argument stays for callers' clarity
        fd = self._open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            if os.name == "posix":
                os.fchmod(fd, 0o600)  # an old temp file may have had another mode
            self._write_fd(fd, data)
        finally:
            os.close(fd)
        self.rename(tmp, name)

    def rename(self, src: str, dst: str) -> None:
        self._metadata_op()
        target = self.path(dst)
        self._mkdir(target.parent)
        os.replace(self.path(src), target)
        self._sync_dir(target.parent)

    def remove(self, name: str) -> None:
        self._alive()
        target = self.path(name)
        if not target.exists():
            return
        self._metadata_op()
        target.unlink()
        self._sync_dir(target.parent)

    def copy(self, src: str, dst: str) -> None:
        data = self.read(src)
        if data is None:
            raise FileNotFoundError(src)
        self.write_atomic(dst, data)

    def remove_temporaries(self, directory: str) -> None:
        """Remove temp files a power cut left behind (they were never renamed into place)."""
        for name in self.list(directory):
            if name.endswith(TMP_SUFFIX):
                self.remove(name)

    @staticmethod
    def _sync_dir(directory: Path) -> None:
        if os.name != "posix":
            return  # Windows has no directory fsync; its rename is durable on NTFS journaling
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
