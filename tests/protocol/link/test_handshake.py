"""HELLO and HELLO_ACK payloads (protocol/link/handshake.py)."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import signing
from protocol.link.handshake import (
    HandshakeError, HostRole, HostTrust, agree, encode_hello, encode_hello_ack, verify_hello, verify_hello_ack,
)
from protocol.link.secure import Ephemeral
from tests.protocol.link.harness import DEVICE_SEED, HOST_SEED, IDENTITY

HOST_EPH = Ephemeral.generate(lambda n: bytes(range(n)))
DEVICE_EPH = Ephemeral.generate(lambda n: bytes(range(50, 50 + n)))
CHALLENGE = HOST_EPH.public
REGISTRY = {IDENTITY.device_id: signing.public_key(DEVICE_SEED)}
MAINTENANCE_SEED = bytes(range(200, 232))
TRUST = HostTrust(frozenset({signing.public_key(HOST_SEED)}), frozenset({signing.public_key(MAINTENANCE_SEED)}))


def hello() -> bytes:
    return encode_hello(IDENTITY, CHALLENGE, DEVICE_EPH.public, DEVICE_SEED)


def test_hello_round_trip():
    assert verify_hello(hello(), CHALLENGE, REGISTRY.get) == (IDENTITY, DEVICE_EPH.public)


def test_hello_is_bound_to_the_hosts_ephemeral_key():
    with pytest.raises(HandshakeError, match="key proof"):
        verify_hello(hello(), bytes(32), REGISTRY.get)


def test_a_hello_whose_ephemeral_key_was_replaced_fails_the_proof():
    forged = bytearray(hello())
    forged[-64 - 32 : -64] = Ephemeral.generate(lambda n: bytes([7] * n)).public
    with pytest.raises(HandshakeError, match="key proof"):
        verify_hello(bytes(forged), CHALLENGE, REGISTRY.get)


def test_a_hello_whose_identity_was_edited_fails_the_proof():
    forged = bytearray(hello())
    i = forged.find(b"1.2.0")
    forged[i : i + 5] = b"9.9.9"
    with pytest.raises(HandshakeError, match="key proof"):
        verify_hello(bytes(forged), CHALLENGE, REGISTRY.get)


def test_both_ends_agree_on_the_same_keys_one_per_direction():
    mine = agree(HOST_EPH, DEVICE_EPH.public, CHALLENGE, hello())
    theirs = agree(DEVICE_EPH, HOST_EPH.public, CHALLENGE, hello())
    assert mine.transcript == theirs.transcript and mine.keys == theirs.keys
    assert mine.keys.host_to_device != mine.keys.device_to_host


def test_hello_ack_proves_a_pinned_host_and_its_role():
    transcript = agree(HOST_EPH, DEVICE_EPH.public, CHALLENGE, hello()).transcript
    ack = encode_hello_ack(b'{"clock":1}', transcript, HOST_SEED)
    host, info = verify_hello_ack(ack, transcript, TRUST)
    assert (host.role, host.public_key, info) == (HostRole.BRIDGE, signing.public_key(HOST_SEED), b'{"clock":1}')
    maintenance, _ = verify_hello_ack(encode_hello_ack(b"{}", transcript, MAINTENANCE_SEED), transcript, TRUST)
    assert maintenance.role is HostRole.MAINTENANCE


def test_a_rogue_host_and_a_replayed_hello_ack_are_refused():
    transcript = agree(HOST_EPH, DEVICE_EPH.public, CHALLENGE, hello()).transcript
    with pytest.raises(HandshakeError, match="not pinned"):
        verify_hello_ack(encode_hello_ack(b"{}", transcript, bytes(32)), transcript, TRUST)
    with pytest.raises(HandshakeError, match="key proof"):  # signed for another session's transcript
        verify_hello_ack(encode_hello_ack(b"{}", bytes(32), HOST_SEED), transcript, TRUST)
    ack = bytearray(encode_hello_ack(b'{"clock":1}', transcript, HOST_SEED))
    ack[2 + 9] ^= 1  # the host info (its clock) is covered too
    with pytest.raises(HandshakeError, match="key proof"):
        verify_hello_ack(bytes(ack), transcript, TRUST)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"", "too short"),
        (struct.pack(">H", 500) + b"{}" + bytes(96), "do not add up"),
        (struct.pack(">H", 2) + b"{}" + bytes(96), "malformed HELLO identity"),
        (struct.pack(">H", 4) + b"[1,]" + bytes(96), "malformed HELLO identity"),
    ],
)
def test_malformed_hello(payload, why):
    with pytest.raises(HandshakeError, match=why):
        verify_hello(payload, CHALLENGE, REGISTRY.get)


@given(st.binary(max_size=300))
def test_arbitrary_hello_bytes_are_refused_cleanly(data):
    with pytest.raises(HandshakeError):
        verify_hello(data, CHALLENGE, REGISTRY.get)


@given(st.binary(max_size=300))
def test_arbitrary_hello_ack_bytes_are_refused_cleanly(data):
    with pytest.raises(HandshakeError):
        verify_hello_ack(data, bytes(32), TRUST)
