"""Android Open Accessory numbers and the bridge's accessory identity (protocol.aoa)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.aoa import (
    BRIDGE_ACCESSORY, AoaVersionError, StringIndex, is_accessory_mode, is_vendor_request, parse_protocol_version,
)


@pytest.mark.parametrize("answer, version", [(b"\x01\x00", 1), (b"\x02\x00", 2), (b"\x03\x00", 3)])
def test_the_version_answer_is_little_endian(answer: bytes, version: int) -> None:
    assert parse_protocol_version(answer) == version


@pytest.mark.parametrize("answer, fragment", [(b"\x00\x00", "version 0"), (b"\x02", "1 bytes"), (b"", "0 bytes"),
                                              (b"\x02\x00\x00", "3 bytes")])
def test_no_accessory_support_is_said_plainly(answer: bytes, fragment: str) -> None:
    with pytest.raises(AoaVersionError, match=fragment):
        parse_protocol_version(answer)


@given(st.binary(max_size=4))
def test_any_answer_is_a_version_or_a_clear_refusal(answer: bytes) -> None:
    try:
        version = parse_protocol_version(answer)
    except AoaVersionError:
        assert len(answer) != 2 or answer == b"\x00\x00"
        return
    assert len(answer) == 2 and version == int.from_bytes(answer, "little") >= 1


def test_the_identifying_strings_go_in_order_nul_terminated() -> None:
    strings = BRIDGE_ACCESSORY.strings()
    assert [index for index, _ in strings] == list(StringIndex)
    assert all(payload.endswith(b"\0") and b"\0" not in payload[:-1] for _, payload in strings)
    assert strings[0][1] == b"his-smartpos\0" and strings[1][1] == b"his-bridge\0"


def test_the_app_filter_matches_manufacturer_and_model_exactly() -> None:
    assert BRIDGE_ACCESSORY.matches("his-smartpos", "his-bridge")
    assert not BRIDGE_ACCESSORY.matches("his-smartpos", "his-bridge ")
    assert not BRIDGE_ACCESSORY.matches(None, "his-bridge")


def test_accessory_mode_ids_and_vendor_requests() -> None:
    assert is_accessory_mode(0x18D1, 0x2D00) and is_accessory_mode(0x18D1, 0x2D01)
    assert not is_accessory_mode(0x18D1, 0x4EE7)  # a Pixel as MTP: not yet switched
    assert is_vendor_request(0xC0) and is_vendor_request(0x40)
    assert not is_vendor_request(0x80) and not is_vendor_request(0x00) and not is_vendor_request(0x21)
