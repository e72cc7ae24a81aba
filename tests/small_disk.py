"""A real, small filesystem to fill up: the journals' full-disk tests on the bridge and the POS.

`small_disk` mounts a tmpfs of DISK_MIB MiB for one test and removes it (needs root, as in CI; the
test is skipped where it cannot mount); `fill` writes to it until the kernel says ENOSPC. Import
both into a test module: `from tests.small_disk import fill, small_disk  # noqa: F401 (a fixture)`.
"""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

DISK_MIB = 4


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of DISK_MIB MiB (tmpfs), mounted for this test only."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the filesystem to the last byte; returns the filler file (delete it to free the space)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (65536, 512, 1):  # big steps, then the last few bytes
            while True:
                try:
                    f.write(b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    return filler
