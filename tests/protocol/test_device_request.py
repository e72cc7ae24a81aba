"""Device-signed gateway requests: the signed bytes, tampering, the clock, domain separation."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.device_request import RequestAuthError, parse_headers, sign_request, signing_bytes, verify_request
from protocol.signing import public_key

SEED = bytes(range(32))
PUB = public_key(SEED)
NOW = 1_780_000_000


def signed(body: bytes = b'{"a":1}', **kw) -> dict[str, str]:
    args = dict(method="POST", path="/v1/pay", device_id="POS-0001", ts=NOW, nonce=bytes(16), firmware="1.4.2", body=body) | kw
    return sign_request(SEED, **args)


def check(headers: dict[str, str], *, body: bytes = b'{"a":1}', path: str = "/v1/pay", now: float = NOW) -> None:
    verify_request(parse_headers(headers), PUB, method="POST", path=path, body=body, now=now)


def test_a_signed_request_verifies() -> None:
    check(signed())


@pytest.mark.parametrize("change", ["body", "path", "device", "ts", "nonce", "firmware"])
def test_any_change_breaks_the_signature(change: str) -> None:
    headers = signed()
    body, path = b'{"a":1}', "/v1/pay"
    if change == "body":
        body = b'{"a":2}'
    elif change == "path":
        path = "/v1/refund"
    elif change == "device":
        headers["X-Device-Id"] = "POS-0002"
    elif change == "ts":
        headers["X-Timestamp"] = str(NOW + 1)
    elif change == "nonce":
        headers["X-Nonce"] = "AAAAAAAAAAAAAAAAAAAAAQ=="
    else:
        headers["X-Firmware"] = "1.4.3"
    with pytest.raises(RequestAuthError) as info:
        check(headers, body=body, path=path)
    assert info.value.code == "bad_signature"


def test_the_clock_window() -> None:
    check(signed(), now=NOW + 300)
    for now in (NOW + 301, NOW - 301):
        with pytest.raises(RequestAuthError) as info:
            check(signed(), now=now)
        assert info.value.code == "clock_skew"


@pytest.mark.parametrize("header,value", [("X-Device-Id", "bad id"), ("X-Timestamp", "-1"), ("X-Timestamp", "１"),
                                          ("X-Nonce", "short"), ("X-Nonce", "AAAA"), ("X-Signature", "***")])
def test_malformed_headers_are_named(header: str, value: str) -> None:
    headers = signed() | {header: value}
    with pytest.raises(RequestAuthError) as info:
        parse_headers(headers)
    assert info.value.code == "bad_request_auth" and header in info.value.message


@given(st.text(max_size=20), st.text(max_size=40), st.text(min_size=1, max_size=64), st.integers(0, 2**40),
       st.binary(min_size=16, max_size=16), st.text(max_size=32), st.binary(max_size=200))
def test_a_request_signature_can_never_be_taken_for_a_result_signature(method, path, device, ts, nonce, firmware, body) -> None:
    """HIS interface 1.1 A: results are signed over AAD||CT with AAD "1|result|..."; requests never start so."""
    message = signing_bytes(method, path, device, ts, nonce, firmware, body)
    assert not message.startswith(b"1|result|")
    assert not message.startswith(b"1|")
