"""Files replaced whole or not at all (local_storage/atomic_file.py: the bridge, the POS, the field
tool, reconciliation, the simulator and the gateway all write through it).

What a user would notice: a reader, or the process after a crash, finds the old file or the new
one, never half of one, and no temporary file is left beside it; a key file is never readable by
others, not even for a moment; a process killed in the middle of a write leaves the old file."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import local_storage.atomic_file as local_storage


@pytest.fixture(params=[local_storage], ids=["local_storage"])
def atomic(request) -> ModuleType:
    return request.param


def test_the_file_is_replaced_whole_and_nothing_is_left_beside_it(atomic, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "bill.csv"
    atomic.write_atomically(path, b"old\n")
    atomic.write_atomically(path, b"new,\xe4\xb8\xad\r\n")
    assert path.read_bytes() == b"new,\xe4\xb8\xad\r\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["bill.csv"]


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(atomic, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    atomic.write_atomically(path, b"yesterday\n")
    with pytest.raises(ValueError):
        with atomic.atomic_text_writer(path) as f:
            f.write("half of to")
            raise ValueError("the database went away")
    assert path.read_bytes() == b"yesterday\n" and sorted(p.name for p in tmp_path.iterdir()) == ["export.csv"]


def test_text_is_utf8_with_the_newlines_as_written(atomic, tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    with atomic.atomic_text_writer(path) as f:
        f.write("张三,1.00\r\n李四,2.00\n")
    assert path.read_bytes() == "张三,1.00\r\n李四,2.00\n".encode("utf-8")


def test_an_excel_report_can_have_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    with local_storage.atomic_text_writer(path, bom=True) as f:
        f.write("a\n")
    assert path.read_bytes() == b"\xef\xbb\xbfa\n"


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_private_file_is_never_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "keys.json"
        with local_storage.atomic_writer(path, private=True) as f:
            # While it is being written: the temporary file is 0600 already.
            [partial] = [p for p in tmp_path.iterdir() if p.name != "keys.json"]
            assert stat.S_IMODE(partial.stat().st_mode) == 0o600
            f.write(b"{}")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        local_storage.write_atomically(path, "{}")  # replacing keeps it private only if asked: the key store asks
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_publish_makes_a_finished_file_the_target(tmp_path: Path) -> None:
    partial, dest = tmp_path / "journal.db.backup-partial", tmp_path / "journal.db.backup"
    dest.write_bytes(b"old backup")
    partial.write_bytes(b"new backup")
    local_storage.publish(partial, dest)
    assert dest.read_bytes() == b"new backup" and not partial.exists()


_WRITER = """
import sys
from pathlib import Path
from {module} import atomic_writer
with atomic_writer(Path(sys.argv[1])) as f:
    f.write(b"x" * 65536)
    f.flush()
    print("writing", flush=True)
    sys.stdin.read()  # killed here, half-way
"""


@pytest.mark.skipif(os.name != "posix", reason="kill -9")
@pytest.mark.parametrize("module", ["local_storage.atomic_file"])
def test_a_process_killed_mid_write_leaves_the_old_file(module: str, tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b'{"old": true}\n')
    proc = subprocess.Popen([sys.executable, "-c", _WRITER.format(module=module), str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert path.read_bytes() == b'{"old": true}\n'


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_new_key_file_never_replaces_one_and_its_new_folders_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "keys" / "device" / "device.key"
        local_storage.create_new(path, "secret-1\n", private=True)
        with pytest.raises(FileExistsError):
            local_storage.create_new(path, "secret-2\n", private=True)
        assert path.read_text() == "secret-1\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [stat.S_IMODE(d.stat().st_mode) for d in (tmp_path / "keys", path.parent)] == [0o700, 0o700]
        public = tmp_path / "shared" / "device.pub"
        local_storage.create_new(public, b"public\n", private=False)
        assert stat.S_IMODE(public.stat().st_mode) == 0o644 and stat.S_IMODE(public.parent.stat().st_mode) == 0o755
    finally:
        os.umask(old)
