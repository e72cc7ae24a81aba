"""Routing a scanned code: WeChat Pay 18 digits from 10-15, Alipay 16-24 digits from 25-30; the rest
refused in words a cashier understands."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.messages import PayChannel
from terminal.routing import CodeRefused, mask_code, route_code

digits = st.text(alphabet="0123456789", min_size=0, max_size=30)


@given(prefix=st.integers(10, 15), rest=st.text(alphabet="0123456789", min_size=16, max_size=16))
def test_wechat_codes(prefix, rest):
    assert route_code(f"{prefix}{rest}") == (PayChannel.WECHAT, f"{prefix}{rest}")


@given(prefix=st.integers(25, 30), rest=st.text(alphabet="0123456789", min_size=14, max_size=22))
def test_alipay_codes(prefix, rest):
    assert route_code(f"{prefix}{rest}") == (PayChannel.ALIPAY, f"{prefix}{rest}")


@given(digits)
def test_every_digit_string_is_routed_exactly_by_the_rules(code):
    wechat = len(code) == 18 and 10 <= int(code[:2] or 0) <= 15
    alipay = 16 <= len(code) <= 24 and 25 <= int(code[:2] or 0) <= 30
    if wechat:
        assert route_code(code)[0] is PayChannel.WECHAT
    elif alipay:
        assert route_code(code)[0] is PayChannel.ALIPAY
    else:
        with pytest.raises(CodeRefused):
            route_code(code)


@given(st.text(max_size=40))
def test_anything_else_is_refused_with_both_languages(text):
    try:
        channel, code = route_code(text)
    except CodeRefused as refused:
        assert refused.text.zh and refused.text.en
        assert refused.reason in {"not_a_payment_code", "empty_scan", "link_qr_code"}
    else:
        assert code.isascii() and code.isdigit()
        assert code == text.strip(" \t\r\n")


@pytest.mark.parametrize(("scan", "reason"), [
    ("", "empty_scan"),
    ("\r\n", "empty_scan"),
    ("https://qr.alipay.com/fkx123", "link_qr_code"),
    ("weixin://wxpay/bizpayurl?pr=abc", "link_qr_code"),
    ("134567890123456789"[:17], "not_a_payment_code"),  # one digit short
    ("164567890123456789", "not_a_payment_code"),  # 16 is neither
    ("１３４５６７８９０１２３４５６７８９", "not_a_payment_code"),  # full-width digits
    ("1345 67890123456789", "not_a_payment_code"),
    ("6222021234567890123", "not_a_payment_code"),  # a bank card number
])
def test_refusals_say_what_was_scanned(scan, reason):
    with pytest.raises(CodeRefused) as info:
        route_code(scan)
    assert info.value.reason == reason


def test_the_scanner_enter_key_is_dropped():
    assert route_code("134567890123456789\r\n") == (PayChannel.WECHAT, "134567890123456789")


def test_masking_shows_at_most_first_and_last_four():
    assert mask_code("134567890123456789") == "1345**********6789"
    assert mask_code("12345") == "*****"
    assert "hello" not in mask_code("hello-world-secret")
