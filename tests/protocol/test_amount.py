"""The amount parser: exactly the spec grammar, every attack refused with a reason."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.amount import (MAX_FEN, Amount, Direction, check_limit, format_amount, format_net_yuan, format_yuan, parse_amount, parse_fen,
                             parse_fen_text, parse_yuan)
from protocol.errors import ErrorCode, ProtocolError

SPEC = re.compile(r"^[+-](0|[1-9][0-9]{0,9})\.[0-9]{2}$")


@pytest.mark.parametrize(
    ("text", "direction", "fen"),
    [("+12.50", Direction.COLLECT, 1250), ("-5.00", Direction.REFUND, 500), ("+0.01", Direction.COLLECT, 1)],
)
def test_accepts_the_grammar(text, direction, fen):
    assert parse_amount(text) == Amount(direction, fen)
    assert format_amount(parse_amount(text)) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("-0.00", "zero"),
        ("+0.00", "zero"),
        ("12.50", "must start with"),
        ("+12.5", "two decimals"),
        ("+12.500", "two decimals"),
        ("+12", "two decimals"),
        ("+1e3", "exponent"),
        ("+1.5e2", "exponent"),
        ("+ 12.50", "spaces"),
        ("+12.50 ", "spaces"),
        ("+12.50\n", "spaces"),
        ("++12.50", "more than one sign"),
        ("+-12.50", "more than one sign"),
        ("-+12.50", "more than one sign"),
        ("+012.50", "leading zeros"),
        ("+00.50", "leading zeros"),
        ("＋１２.５０", "must start with"),
        ("+１２.５０", "ASCII"),
        ("+١٢.٥٠", "ASCII"),
        ("+12,50", "two decimals"),
        ("+.50", "only digits"),
        ("+12.", "two decimals"),
        ("+99999999999.00", "digits of yuan"),
        ("", "empty"),
        ("+", "no digits"),
    ],
)
def test_refuses_with_a_reason(text, why):
    with pytest.raises(ProtocolError) as info:
        parse_amount(text, limit_fen=MAX_FEN)
    assert info.value.code is ErrorCode.BAD_AMOUNT
    assert why in info.value.message


@pytest.mark.parametrize("value", [12.5, 1250, True, None, ["+1.00"], {"amount": "+1.00"}])
def test_refuses_non_strings(value):
    with pytest.raises(ProtocolError) as info:
        parse_amount(value)
    assert info.value.code is ErrorCode.BAD_AMOUNT
    assert "string" in info.value.message


def test_the_negative_amount_trick_is_a_refund_not_a_collection():
    # Seed 000: a forged negative amount credited money. Here the sign is the direction, and a
    # refund is only ever executed against an earlier collection of the same order.
    amount = parse_amount("-100.00")
    assert amount.direction is Direction.REFUND and amount.fen == 10000


def test_limit_is_applied():
    assert parse_amount("+500.00", limit_fen=50000).fen == 50000
    with pytest.raises(ProtocolError, match="limit of 500.00"):
        parse_amount("+500.01", limit_fen=50000)
    with pytest.raises(ProtocolError, match="limit"):
        parse_amount("-500.01", limit_fen=50000)


@given(st.text(alphabet="+-0123456789.e ", max_size=16) | st.text(max_size=16))
def test_accepts_exactly_the_spec_grammar(text):
    try:
        amount = parse_amount(text, limit_fen=MAX_FEN)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.BAD_AMOUNT
        assert not SPEC.fullmatch(text) or text[1:] in ("0.00",)
    else:
        assert SPEC.fullmatch(text) and amount.fen > 0
        assert format_amount(amount) == text


@given(st.integers(min_value=1, max_value=MAX_FEN), st.sampled_from(Direction))
def test_round_trip(fen, direction):
    amount = Amount(direction, fen)
    assert parse_amount(format_amount(amount), limit_fen=MAX_FEN) == amount


@given(st.integers(min_value=0, max_value=MAX_FEN))
def test_unsigned_round_trip(fen):
    assert parse_yuan(format_yuan(fen)) == fen


def test_amount_refuses_floats_and_bools_inside():
    with pytest.raises(ValueError):
        Amount(Direction.COLLECT, 12.5)
    with pytest.raises(ValueError):
        Amount(Direction.COLLECT, True)
    with pytest.raises(ValueError):
        Amount(Direction.COLLECT, 0)


# ---------------------------------------------------------------- integer fen on JSON and WeChat wires


@given(st.integers(min_value=1, max_value=MAX_FEN))
def test_fen_on_a_json_wire_round_trips(fen):
    assert parse_fen(fen) == fen


@pytest.mark.parametrize("value", [0, -1, MAX_FEN + 1, True, 12.5, "1250", None])
def test_fen_on_a_json_wire_refuses_what_is_not_a_positive_int(value):
    with pytest.raises(ProtocolError) as info:
        parse_fen(value, what="paid_fen")
    assert info.value.code is ErrorCode.BAD_AMOUNT and "paid_fen" in info.value.message


def test_fen_zero_only_where_allowed():
    assert parse_fen(0, allow_zero=True) == 0


@given(st.integers(min_value=0, max_value=MAX_FEN))
def test_wechat_fen_text_round_trips(fen):
    assert parse_fen_text(str(fen)) == fen


@given(st.text(max_size=14))
def test_wechat_fen_text_accepts_exactly_plain_decimal_integers(text):
    plain = re.fullmatch(r"(0|[1-9][0-9]*)", text, re.ASCII) is not None and int(text) <= MAX_FEN
    try:
        parse_fen_text(text)
    except ProtocolError as exc:
        assert not plain and exc.code is ErrorCode.BAD_AMOUNT
    else:
        assert plain


@pytest.mark.parametrize("text", ["", "012", "+12", "-12", "12.50", "1e3", "１２", " 12", str(MAX_FEN + 1)])
def test_wechat_fen_text_refuses(text):
    with pytest.raises(ProtocolError):
        parse_fen_text(text)


# ---------------------------------------------------------------- one formatter per kind of amount


@given(st.integers(min_value=-MAX_FEN, max_value=MAX_FEN))
def test_net_yuan_is_the_unsigned_form_with_a_minus_for_negatives(fen):
    text = format_net_yuan(fen)
    assert text == ("-" + format_yuan(-fen) if fen < 0 else format_yuan(fen))
    assert (parse_yuan(text[1:]) * -1 if text.startswith("-") else parse_yuan(text)) == fen


def test_net_yuan_examples():
    assert (format_net_yuan(-500), format_net_yuan(0), format_net_yuan(1250)) == ("-5.00", "0.00", "12.50")


@given(st.integers(min_value=1, max_value=MAX_FEN))
def test_amount_constructors_and_signed_fen(fen):
    assert Amount.collect(fen) == Amount(Direction.COLLECT, fen) and Amount.collect(fen).signed_fen == fen
    assert Amount.refund(fen) == Amount(Direction.REFUND, fen) and Amount.refund(fen).signed_fen == -fen
    assert str(Amount.refund(fen)) == format_amount(Amount.refund(fen)) == "-" + format_yuan(fen)


def test_check_limit_names_the_limit_with_bad_amount():
    check_limit(Amount.collect(100_00), 100_00)
    with pytest.raises(ProtocolError) as info:
        check_limit(Amount.collect(100_01), 100_00)
    assert info.value.code is ErrorCode.BAD_AMOUNT and "limit of 100.00" in info.value.message and "+100.01" in info.value.message
