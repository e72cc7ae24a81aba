"""HELLO payloads and DATA application messages."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import signing
from protocol.amount import parse_amount
from protocol.crypto import SharedKey
from protocol.envelope import seal_instruction, seal_result
from protocol.errors import ErrorCode, ProtocolError
from protocol.link.app import InstructionMsg, ProgressMsg, NotTakenMsg, ResultMsg, decode_app, encode_app
from protocol.link.handshake import HandshakeError, encode_hello, verify_hello
from protocol.messages import Instruction, PayChannel, PayStatus, Progress, Result
from tests.protocol.link.harness import DEVICE_SEED, IDENTITY

CHALLENGE = bytes(range(32))
REGISTRY = {IDENTITY.device_id: signing.public_key(DEVICE_SEED)}
KEY = SharedKey("k1", "AES-256-GCM", bytes(32))


def test_hello_round_trip():
    assert verify_hello(encode_hello(IDENTITY, CHALLENGE, DEVICE_SEED), CHALLENGE, REGISTRY.get) == IDENTITY


def test_hello_is_bound_to_the_challenge():
    hello = encode_hello(IDENTITY, CHALLENGE, DEVICE_SEED)
    with pytest.raises(HandshakeError, match="key proof"):
        verify_hello(hello, bytes(32), REGISTRY.get)


def test_a_hello_whose_identity_was_edited_fails_the_proof():
    hello = bytearray(encode_hello(IDENTITY, CHALLENGE, DEVICE_SEED))
    i = hello.find(b"1.2.0")
    hello[i : i + 5] = b"9.9.9"
    with pytest.raises(HandshakeError, match="key proof"):
        verify_hello(bytes(hello), CHALLENGE, REGISTRY.get)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"", "too short"),
        (struct.pack(">H", 500) + b"{}" + bytes(64), "do not add up"),
        (struct.pack(">H", 2) + b"{}" + bytes(64), "malformed HELLO identity"),
        (struct.pack(">H", 4) + b"[1,]" + bytes(64), "malformed HELLO identity"),
    ],
)
def test_malformed_hello(payload, why):
    with pytest.raises(HandshakeError, match=why):
        verify_hello(payload, CHALLENGE, REGISTRY.get)


@given(st.binary(max_size=300))
def test_arbitrary_hello_bytes_are_refused_cleanly(data):
    with pytest.raises(HandshakeError):
        verify_hello(data, CHALLENGE, REGISTRY.get)


def test_app_messages_round_trip():
    ins = seal_instruction(Instruction("T0001", "MZ1", parse_amount("+1.00")), key=KEY, msg_id="m1", ts=1, nonce=bytes(12))
    res = seal_result(
        Result("D1", "MZ1", "", PayStatus.CLOSED, None, parse_amount("+1.00"), 2, "cancelled", None),
        key=KEY, msg_id="r1", reply_to="m1", ts=2, nonce=bytes(12),
    )
    for message in (
        InstructionMsg(ins),
        ResultMsg(res),
        ProgressMsg("m1", Progress.AWAITING_SCAN),
        NotTakenMsg("m1", ErrorCode.UNKNOWN_KID, "kid k1 is not known here"),
    ):
        assert decode_app(encode_app(message)) == message


@pytest.mark.parametrize(
    "payload",
    [
        b'{"kind":"wire-transfer"}',
        b'{"kind":"progress","msg_id":"m1","state":"robbed"}',
        b'{"kind":"not_taken","msg_id":"m1","code":"nope","message":"x"}',
        b'{"kind":"refused","msg_id":"m1","code":"auth_failed","message":"x"}',  # 1.1: nothing unsealed ends an instruction
        b'{"kind":"result","envelope":{"v":1}}',
        b'{"kind":"instruction","envelope":"x"}',
        b'{"kind":"progress","msg_id":"m 1","state":"paying"}',
    ],
)
def test_bad_app_messages_are_refused(payload):
    with pytest.raises(ProtocolError) as info:
        decode_app(payload)
    assert info.value.code in (ErrorCode.BAD_ENVELOPE, ErrorCode.MALFORMED_JSON)


@given(st.binary(max_size=200))
def test_arbitrary_data_payloads_never_escape(data):
    try:
        decode_app(data)
    except ProtocolError:
        pass
