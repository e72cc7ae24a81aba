"""Identifier grammars."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import ErrorCode, ProtocolError
from protocol.ids import check_id, check_order_no, is_valid_id


@pytest.mark.parametrize("value", ["T0001", "D-SN-000123", "HIS-0001-000042", "k2026a", "a", "_", "x" * 64])
def test_valid_ids(value):
    assert check_id("id", value) == value


@pytest.mark.parametrize("value", ["", "x" * 65, "T 0001", "T0001\n", "Ｔ0001", "T.1", "T/1", "张三", "T0001\x00"])
def test_invalid_ids_name_the_field(value):
    with pytest.raises(ProtocolError) as info:
        check_id("envelope.terminal_id", value)
    assert info.value.code is ErrorCode.BAD_ENVELOPE
    assert "envelope.terminal_id" in info.value.message


@pytest.mark.parametrize("value", [1, None, True, ["T1"]])
def test_ids_must_be_strings(value):
    with pytest.raises(ProtocolError, match="must be a string"):
        check_id("kid", value)


def test_order_numbers_are_at_most_32():
    assert check_order_no("MZ20261122000123") == "MZ20261122000123"
    assert check_order_no("x" * 32)
    for bad in ("x" * 33, "", "MZ 1", "MZ#1", 123):
        with pytest.raises(ProtocolError) as info:
            check_order_no(bad)
        assert info.value.code is ErrorCode.BAD_ORDER_NO


@given(st.text(max_size=70))
def test_is_valid_id_agrees_with_the_grammar(text):
    expected = 1 <= len(text) <= 64 and all(c.isascii() and (c.isalnum() or c in "_-") for c in text)
    assert is_valid_id(text) == expected
