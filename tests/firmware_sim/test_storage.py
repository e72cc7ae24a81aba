"""The device's flash storage: durable writes, atomic replacement, and power cuts at any byte."""

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.storage import DeviceStorage, PowerLostMidWrite

OLD = b"old contents " * 8
NEW = b"the new contents, longer than the old " * 4


def test_reads_writes_and_names(tmp_path):
    s = DeviceStorage(tmp_path)
    assert s.read("boot/x") is None and s.size("boot/x") == 0 and not s.exists("boot/x")
    s.write_atomic("boot/x", b"abc")
    s.append("boot/x", b"def")
    assert s.read("boot/x") == b"abcdef" and s.size("boot/x") == 6
    s.copy("boot/x", "boot/y")
    s.rename("boot/y", "boot/z")
    assert s.list("boot") == ["boot/x", "boot/z"]
    s.remove("boot/z")
    s.remove("boot/missing")  # removing nothing is fine
    assert s.list("boot") == ["boot/x"]
    for bad in ("../escape", "/etc/passwd", "boot/../../x", ""):
        with pytest.raises(ValueError):
            s.path(bad)


def test_private_files_are_owner_only(tmp_path):
    s = DeviceStorage(tmp_path)
    s.write_atomic("device_key", b"secret", private=True)
    if os.name == "posix":
        assert stat.S_IMODE((tmp_path / "device_key").stat().st_mode) == 0o600


def _atomic_replace_cost(tmp_path) -> int:
    s = DeviceStorage(tmp_path / "probe")
    s.write_atomic("f", OLD)
    before = s.bytes_written
    s.write_atomic("f", NEW)
    return s.bytes_written - before


def test_atomic_write_is_old_or_new_at_every_cut(tmp_path):
    cost = _atomic_replace_cost(tmp_path)
    assert cost == len(NEW) + 1  # the data, and the rename as one "byte"
    for n in range(cost + 1):
        root = tmp_path / f"cut{n}"
        DeviceStorage(root).write_atomic("f", OLD)
        s = DeviceStorage(root, cut_after_bytes=n)
        try:
            s.write_atomic("f", NEW)
            assert n == cost
        except PowerLostMidWrite:
            assert n < cost
        after = DeviceStorage(root)
        assert after.read("f") == (NEW if n == cost else OLD)


@given(st.integers(0, len(NEW) + 1))
def test_in_place_write_leaves_a_prefix(tmp_path_factory, n):
    root = tmp_path_factory.mktemp("inplace")
    DeviceStorage(root).write_in_place("f", OLD)
    s = DeviceStorage(root, cut_after_bytes=n)
    try:
        s.write_in_place("f", NEW)
    except PowerLostMidWrite:
        pass
    got = DeviceStorage(root).read("f")
    # The truncation costs one byte: a cut at 0 leaves the old file, later cuts a prefix of the new.
    assert got == OLD if n == 0 else got == NEW[: n - 1]


def test_append_keeps_a_prefix_and_the_device_stays_off(tmp_path):
    s = DeviceStorage(tmp_path, cut_after_bytes=10)
    s.append("log", b"12345")
    with pytest.raises(PowerLostMidWrite):
        s.append("log", b"67890abcdef")
    assert not s.powered
    for call in (lambda: s.read("log"), lambda: s.append("log", b"x"), lambda: s.write_atomic("a", b"")):
        with pytest.raises(PowerLostMidWrite):
            call()
    assert DeviceStorage(tmp_path).read("log") == b"1234567890"


def test_arming_later_counts_from_then(tmp_path):
    s = DeviceStorage(tmp_path)
    s.append("a", b"x" * 100)
    s.arm_power_cut(3)
    with pytest.raises(PowerLostMidWrite):
        s.append("a", b"yyyy")
    assert DeviceStorage(tmp_path).read("a") == b"x" * 100 + b"yyy"


def test_temporaries_left_by_a_cut_are_cleaned(tmp_path):
    s = DeviceStorage(tmp_path, cut_after_bytes=3)
    with pytest.raises(PowerLostMidWrite):
        s.write_atomic("boot/meta", b"abcdef")
    again = DeviceStorage(tmp_path)
    assert again.list("boot") == ["boot/meta.tmp"] and again.read("boot/meta") is None
    again.remove_temporaries("boot")
    assert again.list("boot") == []
