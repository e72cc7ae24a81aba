"""The device's identity and key, made on the device in its own storage (terminal.identity)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from firmware_sim.bootloader import Bootloader
from firmware_sim.storage import DeviceStorage
from protocol import signing
from protocol.flash import FlashCode, FlashError
from protocol.trust import TrustStore
from terminal.identity import create_identity, load_identity
from tests.protocol.test_image import MODEL, TRUST


def _init(directory: Path, serial: str = "SN0001", **kwargs):
    return create_identity(directory, model=MODEL, serial_no=serial, trust=TRUST, **kwargs)


def test_the_device_makes_its_key_and_hands_out_only_the_public_record(tmp_path):
    record = _init(tmp_path / "dev")
    assert record.device_id == "D-SN0001" and record.serial_no == "SN0001" and record.model == MODEL
    if os.name == "posix":
        assert stat.S_IMODE((tmp_path / "dev" / "device_key").stat().st_mode) == 0o600
    loaded = load_identity(tmp_path / "dev")
    assert signing.public_key(loaded.device_key_seed) == record.public_key
    assert loaded.usb_serial == "SN0001" and (loaded.usb_vid, loaded.usb_pid) == (0x1209, 0x7D01)
    assert loaded.identity("1.0.0").device_id == "D-SN0001" and "seed" not in repr(loaded)
    assert loaded.device_key_seed.hex() not in repr(record)
    # The bootloader of the new device trusts exactly the given keys.
    boot = Bootloader(DeviceStorage(tmp_path / "dev"), model=MODEL, device_id=record.device_id)
    assert boot.trust == TRUST


def test_every_device_makes_a_key_of_its_own(tmp_path):
    first, second = _init(tmp_path / "a"), _init(tmp_path / "b", "SN0002", device_id="CASHIER-2", usb_pid="7d02")
    assert first.public_key != second.public_key
    assert second.device_id == "CASHIER-2" and load_identity(tmp_path / "b").usb_pid == 0x7D02


def test_an_identity_is_never_replaced(tmp_path):
    _init(tmp_path / "dev")
    with pytest.raises(FlashError) as info:
        _init(tmp_path / "dev")
    assert info.value.code is FlashCode.EXISTS


@pytest.mark.parametrize("bad", [{"device_id": "has space"}, {"usb_vid": "12345"}, {"usb_pid": "zz00"}])
def test_bad_identity_fields_are_refused(tmp_path, bad):
    with pytest.raises(FlashError) as info:
        _init(tmp_path / "dev", "SN0009", **bad)
    assert info.value.code is FlashCode.BAD_INPUT
    assert not (tmp_path / "dev" / "device_key").exists()


def test_a_device_must_trust_at_least_one_signing_key(tmp_path):
    with pytest.raises(FlashError) as info:
        create_identity(tmp_path / "dev", model=MODEL, serial_no="SN0010", trust=TrustStore())
    assert info.value.code is FlashCode.BAD_INPUT and "--trust" in info.value.message


def test_a_key_file_others_can_read_is_refused_at_power_on(tmp_path):
    _init(tmp_path / "dev")
    if os.name != "posix":
        pytest.skip("POSIX file modes")
    os.chmod(tmp_path / "dev" / "device_key", 0o644)
    with pytest.raises(FlashError) as info:
        load_identity(tmp_path / "dev")
    assert info.value.code is FlashCode.BAD_KEY and "chmod 600" in info.value.message
