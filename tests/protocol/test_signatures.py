"""His-interface 1.1 A and B: results signed by the device (`sig`), instructions by HIS (`his_sig`).

The signature is Ed25519 over AAD || CT; `sig` is not part of the AAD. A holder of the shared key
can seal anything, but without the device's private key it cannot make a result HIS accepts.
"""

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import signing
from protocol.amount import parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import parse_envelope, receive_instruction, receive_result, seal_instruction, seal_result, sign_envelope
from protocol.errors import ErrorCode, ProtocolError
from protocol.link.handshake import HELLO_CONTEXT
from protocol.messages import Instruction, PayChannel, PayStatus, Result
from protocol.signatures import HisSignaturePolicy

NOW = 1_795_000_000
AES = SharedKey("k2026a", "AES-256-GCM", bytes(range(32)))
RING = KeyRing([AES])
DEVICE_SEED = bytes(range(100, 132))
OTHER_SEED = bytes(range(1, 33))
HIS_SEED = bytes(range(50, 82))
DEVICE_PUB = signing.public_key(DEVICE_SEED)
REGISTRY = {"D-SN-000123": DEVICE_PUB}.get
INSTRUCTION = Instruction("T0001", "MZ20261122000123", parse_amount("+12.50"))
RESULT = Result("D-SN-000123", "MZ20261122000123", "4200001234", PayStatus.SUCCESS, PayChannel.WECHAT,
                parse_amount("+12.50"), NOW + 42)


def signed_result(seed=DEVICE_SEED, result=RESULT):
    return seal_result(result, key=AES, msg_id="R-1", reply_to="HIS-1", ts=NOW + 42, nonce=bytes(12), device_key_seed=seed)


def test_a_result_carries_sig_over_aad_and_ct_exactly_as_the_spec_says():
    env = signed_result()
    obj = json.loads(env.to_bytes())
    sig = base64.b64decode(obj["sig"])
    signing.verify(DEVICE_PUB, env.aad() + base64.b64decode(obj["ct"]), sig)  # raises if not
    assert b"sig" not in env.aad()
    assert receive_result(env.to_bytes(), RING, now=NOW + 50, device_keys=REGISTRY).message == RESULT


def test_finding_1_a_shared_key_holder_cannot_forge_a_result():
    # Sealed with the right shared key, for a registered device, but not signed by that device.
    unsigned = seal_result(RESULT, key=AES, msg_id="R-1", reply_to="HIS-1", ts=NOW + 42, nonce=bytes(12))
    with pytest.raises(ProtocolError) as info:
        receive_result(unsigned.to_bytes(), RING, now=NOW + 50, device_keys=REGISTRY)
    assert info.value.code is ErrorCode.AUTH_FAILED and "no sig" in info.value.message
    forged = signed_result(seed=OTHER_SEED)
    with pytest.raises(ProtocolError) as info:
        receive_result(forged.to_bytes(), RING, now=NOW + 50, device_keys=REGISTRY)
    assert info.value.code is ErrorCode.AUTH_FAILED and "sig" in info.value.message


def test_a_result_from_a_device_outside_the_registry_is_refused():
    with pytest.raises(ProtocolError) as info:
        receive_result(signed_result().to_bytes(), RING, now=NOW + 50, device_keys={}.get)
    assert info.value.code is ErrorCode.AUTH_FAILED and "registry" in info.value.message


def test_a_sig_moved_to_another_result_does_not_verify():
    other = seal_result(RESULT, key=AES, msg_id="R-2", reply_to="HIS-1", ts=NOW + 42, nonce=bytes(12))
    obj = json.loads(other.to_bytes())
    obj["sig"] = json.loads(signed_result().to_bytes())["sig"]
    with pytest.raises(ProtocolError) as info:
        receive_result(obj, RING, now=NOW + 50, device_keys=REGISTRY)
    assert info.value.code is ErrorCode.AUTH_FAILED


@given(st.integers(min_value=0, max_value=63 * 8))
def test_flipping_any_bit_of_sig_is_refused(bit):
    obj = json.loads(signed_result().to_bytes())
    raw = bytearray(base64.b64decode(obj["sig"]))
    raw[bit // 8] ^= 1 << (bit % 8)
    obj["sig"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(ProtocolError) as info:
        receive_result(obj, RING, now=NOW + 50, device_keys=REGISTRY)
    assert info.value.code is ErrorCode.AUTH_FAILED


@pytest.mark.parametrize("value", ["", "AAAA", "@@@", 7, base64.b64encode(bytes(63)).decode()])
def test_a_malformed_sig_is_bad_envelope(value):
    obj = json.loads(signed_result().to_bytes())
    obj["sig"] = value
    with pytest.raises(ProtocolError) as info:
        parse_envelope(obj)
    assert info.value.code is ErrorCode.BAD_ENVELOPE and "sig" in info.value.message


def test_sig_does_not_change_the_idempotency_digest_and_round_trips():
    env = signed_result()
    again = parse_envelope(env.to_bytes())
    assert again == env and again.digest() == seal_result(
        RESULT, key=AES, msg_id="R-1", reply_to="HIS-1", ts=NOW + 42, nonce=bytes(12)).digest()


def test_the_device_key_signs_nothing_that_could_be_mistaken_for_a_result():
    # Domain separation (1.1 A): every other device-key signature starts with a context prefix.
    assert not HELLO_CONTEXT.startswith(b"1|")
    with pytest.raises(ValueError):
        signing.sign_in_context(DEVICE_SEED, b"1|result|x", b"payload")
    with pytest.raises(ValueError):
        signing.sign_in_context(DEVICE_SEED, b"", b"payload")


# ---------------------------------------------------------------- part B: his_sig

HIS_POLICY = HisSignaturePolicy(public_keys=(signing.public_key(HIS_SEED),), required=True)


def his_signed(seed=HIS_SEED, instruction=INSTRUCTION):
    return seal_instruction(instruction, key=AES, msg_id="HIS-1", ts=NOW, nonce=bytes(12), his_key_seed=seed)


def test_his_sig_is_the_same_construction_by_his_key():
    env = his_signed()
    obj = json.loads(env.to_bytes())
    assert "sig" not in obj
    signing.verify(signing.public_key(HIS_SEED), env.aad() + env.ct, base64.b64decode(obj["his_sig"]))
    assert receive_instruction(env.to_bytes(), RING, now=NOW, his_signature=HIS_POLICY).message == INSTRUCTION


def test_when_required_an_instruction_without_a_valid_his_sig_is_auth_failed():
    plain = seal_instruction(INSTRUCTION, key=AES, msg_id="HIS-1", ts=NOW, nonce=bytes(12))
    for envelope in (plain, his_signed(seed=OTHER_SEED)):
        with pytest.raises(ProtocolError) as info:
            receive_instruction(envelope.to_bytes(), RING, now=NOW, his_signature=HIS_POLICY)
        assert info.value.code is ErrorCode.AUTH_FAILED and "his_sig" in info.value.message


def test_not_required_allows_none_but_never_a_bad_one_and_can_be_per_terminal():
    optional = HisSignaturePolicy(public_keys=HIS_POLICY.public_keys, required=False, required_terminals=frozenset({"T0002"}))
    plain = seal_instruction(INSTRUCTION, key=AES, msg_id="HIS-1", ts=NOW, nonce=bytes(12))
    assert receive_instruction(plain.to_bytes(), RING, now=NOW, his_signature=optional).message == INSTRUCTION
    with pytest.raises(ProtocolError):
        receive_instruction(his_signed(seed=OTHER_SEED).to_bytes(), RING, now=NOW, his_signature=optional)
    t2 = seal_instruction(Instruction("T0002", "MZ1", parse_amount("-1.00")), key=AES, msg_id="HIS-2", ts=NOW, nonce=bytes(12))
    with pytest.raises(ProtocolError) as info:
        receive_instruction(t2.to_bytes(), RING, now=NOW, his_signature=optional)
    assert info.value.code is ErrorCode.AUTH_FAILED


def test_required_without_a_key_is_a_configuration_error():
    with pytest.raises(ValueError):
        HisSignaturePolicy(public_keys=(), required=True)


# ---------------------------------------------------------------- finding 9: the clock window in integer seconds

@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.999])
def test_finding_9_the_edge_of_the_window_is_accepted_whatever_the_fraction_of_now(fraction):
    for offset in (-300, 300):
        env = seal_instruction(INSTRUCTION, key=AES, msg_id="HIS-1", ts=NOW + offset, nonce=bytes(12))
        assert receive_instruction(env.to_bytes(), RING, now=NOW + fraction).message == INSTRUCTION


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("offset", [301, -301, 1000])
def test_finding_9_a_refusal_states_the_real_offset(offset, fraction):
    env = seal_instruction(INSTRUCTION, key=AES, msg_id="HIS-1", ts=NOW + offset, nonce=bytes(12))
    with pytest.raises(ProtocolError) as info:
        receive_instruction(env.to_bytes(), RING, now=NOW + fraction)
    assert info.value.code is ErrorCode.CLOCK_SKEW and f"{offset:+d} s" in info.value.message
