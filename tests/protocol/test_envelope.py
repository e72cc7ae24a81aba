"""Envelopes: sealing, opening, the order of checks, tampering, clock and replay."""

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.amount import parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import (
    MsgType,
    Envelope,
    parse_envelope,
    receive_instruction,
    receive_result,
    seal,
    seal_instruction,
    seal_result,
)
from protocol.errors import ErrorCode, ProtocolError
from protocol.freshness import MemorySeenStore, Verdict
from protocol.messages import Instruction, PayChannel, PayStatus, Result

NOW = 1_795_000_000
AES = SharedKey("k2026a", "AES-256-GCM", bytes(range(32)))
SM4 = SharedKey("k2026s", "SM4-GCM", bytes(range(16)))
RING = KeyRing([AES, SM4])
INSTRUCTION = Instruction("T0001", "MZ20261122000123", parse_amount("+12.50"))
RESULT = Result("D-SN-000123", "MZ20261122000123", "4200001234", PayStatus.SUCCESS, PayChannel.WECHAT, parse_amount("+12.50"), NOW + 42)


def sealed_instruction(key=AES, ts=NOW, msg_id="HIS-0001-000042", nonce=bytes(12)):
    return seal_instruction(INSTRUCTION, key=key, msg_id=msg_id, ts=ts, nonce=nonce)


def as_obj(envelope: Envelope) -> dict:
    return json.loads(envelope.to_bytes())


@pytest.mark.parametrize("key", [AES, SM4], ids=lambda k: k.suite)
def test_round_trip_both_suites(key):
    env = sealed_instruction(key)
    received = receive_instruction(env.to_bytes(), RING, now=NOW)
    assert received.message == INSTRUCTION and received.verdict is Verdict.NEW
    res = seal_result(RESULT, key=key, msg_id="R-1", reply_to="HIS-0001-000042", ts=NOW + 42, nonce=bytes(range(12)))
    assert receive_result(res.to_bytes(), RING, now=NOW + 50, instruction_ts=NOW).message == RESULT


def test_aad_is_exactly_the_spec_string():
    assert sealed_instruction().aad() == b"1|instruction|AES-256-GCM|k2026a|HIS-0001-000042|1795000000|T0001|"
    res = seal_result(RESULT, key=AES, msg_id="R-1", reply_to="HIS-1", ts=NOW, nonce=bytes(12))
    assert res.aad() == b"1|result|AES-256-GCM|k2026a|R-1|1795000000|D-SN-000123|HIS-1"


def test_result_header_carries_device_id_and_reply_to():
    obj = as_obj(seal_result(RESULT, key=AES, msg_id="R-1", reply_to="HIS-1", ts=NOW, nonce=bytes(12)))
    assert obj["device_id"] == "D-SN-000123" and obj["reply_to"] == "HIS-1" and "terminal_id" not in obj


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("msg_id", "HIS-0001-000043", ErrorCode.AUTH_FAILED),
        ("ts", NOW + 1, ErrorCode.AUTH_FAILED),
        ("terminal_id", "T0002", ErrorCode.AUTH_FAILED),
        ("kid", "k2026b", ErrorCode.AUTH_FAILED),  # another AES key of ours: the tag still fails
        ("suite", "SM4-GCM", ErrorCode.UNSUPPORTED_SUITE),  # k2026a is an AES key
        ("type", "result", ErrorCode.BAD_ENVELOPE),
        ("v", 2, ErrorCode.BAD_ENVELOPE),
    ],
)
def test_tampered_header_fields_are_refused(field, value, code):
    ring = KeyRing([AES, SM4, SharedKey("k2026b", "AES-256-GCM", bytes(range(1, 33)))])
    obj = as_obj(sealed_instruction())
    obj[field] = value
    with pytest.raises(ProtocolError) as info:
        receive_instruction(obj, ring, now=NOW)
    assert info.value.code is code


@given(st.sampled_from(["nonce", "ct"]), st.data())
def test_flipping_any_bit_of_nonce_or_ciphertext_is_refused(field, data):
    env = sealed_instruction()
    raw = bytearray(getattr(env, field))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    obj = as_obj(env)
    obj[field] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(ProtocolError) as info:
        receive_instruction(obj, RING, now=NOW)
    assert info.value.code is ErrorCode.AUTH_FAILED


@given(st.data())
def test_flipping_any_bit_of_the_aad_is_refused(data):
    env = sealed_instruction()
    aad = bytearray(env.aad())
    bit = data.draw(st.integers(0, len(aad) * 8 - 1))
    aad[bit // 8] ^= 1 << (bit % 8)
    from protocol.crypto import AuthenticationError, SUITES

    with pytest.raises(AuthenticationError):
        SUITES[env.suite].open(AES.secret, env.nonce, env.ct, bytes(aad))


def test_wrong_key_is_auth_failed():
    other = KeyRing([SharedKey("k2026a", "AES-256-GCM", bytes(32))])
    with pytest.raises(ProtocolError) as info:
        receive_instruction(sealed_instruction().to_bytes(), other, now=NOW)
    assert info.value.code is ErrorCode.AUTH_FAILED


@pytest.mark.parametrize(
    ("mutate", "code", "why"),
    [
        (lambda o: o.pop("nonce"), ErrorCode.BAD_ENVELOPE, "envelope.nonce is missing"),
        (lambda o: o.update(nonce="AAAA"), ErrorCode.BAD_ENVELOPE, "must be 12 bytes"),
        (lambda o: o.update(nonce="not base64!"), ErrorCode.BAD_ENVELOPE, "not standard base64"),
        (lambda o: o.update(ct="AAE="), ErrorCode.BAD_ENVELOPE, "at least 16 bytes"),
        (lambda o: o.update(ts="1795000000"), ErrorCode.BAD_ENVELOPE, "ts must be an integer"),
        (lambda o: o.update(ts=True), ErrorCode.BAD_ENVELOPE, "not a boolean"),
        (lambda o: o.update(ts=1795000000.0), ErrorCode.BAD_ENVELOPE, "ts must be an integer"),
        (lambda o: o.update(v="1"), ErrorCode.BAD_ENVELOPE, "v must be an integer"),
        (lambda o: o.update(type="order"), ErrorCode.BAD_ENVELOPE, "'instruction', 'result' or 'cancel'"),
        (lambda o: o.update(type="result"), ErrorCode.BAD_ENVELOPE, "must be 'instruction' here"),
        (lambda o: o.update(msg_id="HIS 1"), ErrorCode.BAD_ENVELOPE, "envelope.msg_id"),
        (lambda o: o.update(kid=""), ErrorCode.BAD_ENVELOPE, "envelope.kid"),
        (lambda o: o.pop("terminal_id"), ErrorCode.BAD_ENVELOPE, "terminal_id is missing"),
        (lambda o: o.update(suite="AES-128-GCM"), ErrorCode.UNSUPPORTED_SUITE, "AES-128-GCM"),
        (lambda o: o.update(kid="k1999"), ErrorCode.UNKNOWN_KID, "k1999"),
    ],
)
def test_malformed_envelopes(mutate, code, why):
    obj = as_obj(sealed_instruction())
    mutate(obj)
    with pytest.raises(ProtocolError) as info:
        receive_instruction(json.dumps(obj).encode(), RING, now=NOW)
    assert info.value.code is code
    assert why in info.value.message


def test_non_canonical_base64_is_refused():
    obj = as_obj(sealed_instruction())
    obj["nonce"] = "AAAAAAAAAAAAAAAB"  # decodes to 12 bytes only if the stray low bits are dropped
    with pytest.raises(ProtocolError) as info:
        receive_instruction(obj, RING, now=NOW)
    assert info.value.code in {ErrorCode.BAD_ENVELOPE, ErrorCode.AUTH_FAILED}


def test_unknown_header_fields_are_ignored():
    obj = as_obj(sealed_instruction())
    obj["x-vendor"] = {"trace": "abc"}
    assert receive_instruction(obj, RING, now=NOW).message == INSTRUCTION


def test_too_large_and_malformed_json():
    with pytest.raises(ProtocolError) as info:
        parse_envelope(b"{" + b" " * (64 * 1024) + b"}")
    assert info.value.code is ErrorCode.TOO_LARGE
    with pytest.raises(ProtocolError) as info:
        parse_envelope(b"{not json")
    assert info.value.code is ErrorCode.MALFORMED_JSON


@pytest.mark.parametrize("offset", [-301, 301, -10_000])
def test_clock_skew_states_the_receiver_clock(offset):
    with pytest.raises(ProtocolError) as info:
        receive_instruction(sealed_instruction(ts=NOW + offset).to_bytes(), RING, now=NOW)
    assert info.value.code is ErrorCode.CLOCK_SKEW
    assert str(NOW) in info.value.message and "2026-" in info.value.message


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_clock_window_edges_accepted(offset):
    assert receive_instruction(sealed_instruction(ts=NOW + offset).to_bytes(), RING, now=NOW).message == INSTRUCTION


def test_tag_is_checked_before_the_clock():
    # A forged envelope learns nothing about our clock: it gets auth_failed.
    obj = as_obj(sealed_instruction())
    obj["ts"] = NOW - 5000
    with pytest.raises(ProtocolError) as info:
        receive_instruction(obj, RING, now=NOW)
    assert info.value.code is ErrorCode.AUTH_FAILED


def test_replay_rule_retry_conflict_and_expiry():
    seen = MemorySeenStore()
    env = sealed_instruction()
    first = receive_instruction(env.to_bytes(), RING, now=NOW, seen=seen)
    assert first.verdict is Verdict.NEW
    seen.remember(env.kid, env.msg_id, env.digest(), NOW)
    # The identical envelope, even 10 minutes later (outside the clock window): a safe retry.
    again = receive_instruction(env.to_bytes(), RING, now=NOW + 600, seen=seen)
    assert again.verdict is Verdict.RETRY and again.message is None
    # A different envelope under the same msg_id (a new nonce is enough): conflict.
    other = sealed_instruction(nonce=bytes(range(12)))
    with pytest.raises(ProtocolError) as info:
        receive_instruction(other.to_bytes(), RING, now=NOW + 1, seen=seen)
    assert info.value.code is ErrorCode.MSG_ID_CONFLICT
    # After the stored answer expired: replay.
    with pytest.raises(ProtocolError) as info:
        receive_instruction(env.to_bytes(), RING, now=NOW + 24 * 3600 + 1, seen=seen)
    assert info.value.code is ErrorCode.REPLAY


def test_the_same_msg_id_under_another_kid_is_new():
    seen = MemorySeenStore()
    env = sealed_instruction()
    seen.remember(env.kid, env.msg_id, env.digest(), NOW)
    assert receive_instruction(sealed_instruction(key=SM4).to_bytes(), RING, now=NOW, seen=seen).verdict is Verdict.NEW


def test_result_clock_is_bound_to_its_instruction_not_to_now():
    res = seal_result(RESULT, key=AES, msg_id="R-1", reply_to="HIS-1", ts=NOW + 60, nonce=bytes(12))
    # Read a day later (cable was unplugged, HIS polled late): still genuine.
    assert receive_result(res.to_bytes(), RING, now=NOW + 86_400, instruction_ts=NOW).message == RESULT
    with pytest.raises(ProtocolError) as info:
        receive_result(res.to_bytes(), RING, now=NOW - 1000, instruction_ts=NOW)
    assert info.value.code is ErrorCode.CLOCK_SKEW and "ahead" in info.value.message
    with pytest.raises(ProtocolError) as info:
        receive_result(res.to_bytes(), RING, now=NOW + 100, instruction_ts=NOW + 1000)
    assert info.value.code is ErrorCode.CLOCK_SKEW and "before its instruction" in info.value.message


def test_seal_refuses_misuse():
    with pytest.raises(ValueError):
        seal(msg_type=MsgType.INSTRUCTION, key=AES, msg_id="m", ts=NOW, party_id="T1", reply_to="x", plaintext=b"{}", nonce=bytes(12))
    with pytest.raises(ValueError):
        seal(msg_type=MsgType.INSTRUCTION, key=AES, msg_id="m", ts=NOW, party_id="T1", reply_to=None, plaintext=b"{}", nonce=bytes(8))


def test_an_already_parsed_envelope_is_accepted_and_type_checked():
    env = sealed_instruction()
    assert receive_instruction(env, RING, now=NOW).message == INSTRUCTION
    with pytest.raises(ProtocolError) as info:
        receive_result(env, RING, now=NOW)
    assert info.value.code is ErrorCode.BAD_ENVELOPE
