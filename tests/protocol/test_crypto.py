"""Cipher suites and the key ring."""

import os

import pytest
from Crypto.Cipher import AES
from hypothesis import given
from hypothesis import strategies as st

from protocol.crypto import SUITES, AuthenticationError, KeyRing, SharedKey, fingerprint, get_suite
from protocol.errors import ErrorCode, ProtocolError


@pytest.mark.parametrize("name", sorted(SUITES))
def test_seal_open_round_trip_and_tag_appended(name):
    suite = SUITES[name]
    key, nonce = os.urandom(suite.key_size), os.urandom(12)
    sealed = suite.seal(key, nonce, b"plaintext", b"aad")
    assert len(sealed) == len(b"plaintext") + 16
    assert suite.open(key, nonce, sealed, b"aad") == b"plaintext"
    with pytest.raises(AuthenticationError):
        suite.open(key, nonce, sealed, b"aae")
    with pytest.raises(AuthenticationError):
        suite.open(key, nonce, sealed[:10], b"aad")


@given(st.binary(max_size=300), st.binary(max_size=100))
def test_aes_gcm_agrees_with_pycryptodome(plaintext, aad):
    # The suite runs on OpenSSL for speed; an independent implementation must agree byte for byte.
    key, nonce = os.urandom(32), os.urandom(12)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=16)
    cipher.update(aad)
    ct, tag = cipher.encrypt_and_digest(plaintext)
    assert SUITES["AES-256-GCM"].seal(key, nonce, plaintext, aad) == ct + tag


def test_sm4_gcm_known_answer():
    # Test vector of RFC 8998 appendix A.1 (SM4-GCM), as published.
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    nonce = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plaintext = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    expected_ct = bytes.fromhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    expected_tag = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")
    assert SUITES["SM4-GCM"].seal(key, nonce, plaintext, aad) == expected_ct + expected_tag


def test_unknown_suite():
    with pytest.raises(ProtocolError) as info:
        get_suite("AES-128-CBC")
    assert info.value.code is ErrorCode.UNSUPPORTED_SUITE
    assert "AES-256-GCM" in info.value.message


def test_key_ring_lookup_codes():
    ring = KeyRing([SharedKey("k1", "AES-256-GCM", bytes(32)), SharedKey("old", "SM4-GCM", bytes(16), retired=True)])
    assert ring.key_for("k1", "AES-256-GCM").kid == "k1"
    for kid, suite, code, why in [
        ("k9", "AES-256-GCM", ErrorCode.UNKNOWN_KID, "not known"),
        ("old", "SM4-GCM", ErrorCode.UNKNOWN_KID, "retired"),
        ("k1", "SM4-GCM", ErrorCode.UNSUPPORTED_SUITE, "is a AES-256-GCM key"),
    ]:
        with pytest.raises(ProtocolError) as info:
            ring.key_for(kid, suite)
        assert info.value.code is code and why in info.value.message
    assert [k.kid for k in ring.active()] == ["k1"]


def test_keys_never_show_in_repr_and_have_a_fingerprint():
    secret = bytes(range(32))
    key = SharedKey("k1", "AES-256-GCM", secret)
    assert secret.hex() not in repr(key) and "secret" not in repr(key)
    assert key.fingerprint == fingerprint(secret) and len(key.fingerprint) == 19
    assert fingerprint(secret) != fingerprint(bytes(32))


def test_wrong_key_sizes_are_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        SharedKey("k1", "AES-256-GCM", bytes(16))
    with pytest.raises(ValueError, match="twice"):
        KeyRing([SharedKey("k1", "SM4-GCM", bytes(16)), SharedKey("k1", "SM4-GCM", bytes(16))])


def test_a_retired_key_can_still_seal_the_answer_to_an_earlier_instruction():
    ring = KeyRing([SharedKey("old", "SM4-GCM", bytes(16), retired=True)])
    assert ring.key_for("old", "SM4-GCM", allow_retired=True).kid == "old"
