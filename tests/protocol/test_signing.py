"""protocol.signing (OpenSSL through `cryptography`) against pycryptodome's RFC 8032 Ed25519, and the
RFC's own test vectors: the same public keys, the same signature bytes, the same verdicts on
forgeries, so switching libraries changed nothing a peer can observe."""

from __future__ import annotations

import pytest
from Crypto.Signature import eddsa
from hypothesis import given
from hypothesis import strategies as st

from protocol import signing

# RFC 8032 §7.1, TEST 1 and TEST 2.
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
]


@pytest.mark.parametrize("seed, public, message, signature", RFC8032)
def test_rfc_8032_vectors(seed, public, message, signature) -> None:
    assert signing.public_key(bytes.fromhex(seed)).hex() == public
    assert signing.sign(bytes.fromhex(seed), bytes.fromhex(message)).hex() == signature
    signing.verify(bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature))


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=512))
def test_same_keys_and_signatures_as_pycryptodome(seed, message) -> None:
    theirs = eddsa.import_private_key(seed)
    assert signing.public_key(seed) == theirs.public_key().export_key(format="raw")
    assert signing.sign(seed, message) == eddsa.new(theirs, "rfc8032").sign(message)


def _theirs_accepts(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        eddsa.new(eddsa.import_public_key(public), "rfc8032").verify(message, signature)
        return True
    except ValueError:
        return False


def _ours_accepts(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        signing.verify(public, message, signature)
        return True
    except signing.SignatureError:
        return False


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=256), st.integers(0, 64 * 8 - 1), st.booleans())
def test_forgeries_are_refused_by_both(seed, message, bit, flip_message) -> None:
    public = signing.public_key(seed)
    signature = signing.sign(seed, message)
    assert _ours_accepts(public, message, signature) and _theirs_accepts(public, message, signature)
    if flip_message:
        message = message + b"x"
    else:
        forged = bytearray(signature)
        forged[bit // 8] ^= 1 << (bit % 8)
        signature = bytes(forged)
    assert not _ours_accepts(public, message, signature)
    assert not _theirs_accepts(public, message, signature)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64))
def test_arbitrary_keys_and_signatures_are_refused_with_bad_signature(public, signature) -> None:
    """Random 32 bytes are often not a curve point: a refusal (SignatureError), never another exception,
    and never an acceptance pycryptodome would not give."""
    assert not _ours_accepts(public, b"m", signature)


def test_a_small_order_key_with_a_trivial_signature_is_refused() -> None:
    """The all-zero key (y = 0, a point of order 4) and the all-zero signature: pycryptodome accepts
    this "signature" of any message; OpenSSL refuses it, as a device key can never be such a point."""
    assert _theirs_accepts(bytes(32), b"m", bytes(64))
    assert not _ours_accepts(bytes(32), b"m", bytes(64))


def test_malformed_lengths_are_bad_signature() -> None:
    with pytest.raises(signing.SignatureError):
        signing.verify(b"\0" * 31, b"m", b"\0" * 64)
    with pytest.raises(signing.SignatureError):
        signing.verify(b"\0" * 32, b"m", b"\0" * 63)
    with pytest.raises(ValueError):
        signing.sign(b"\0" * 31, b"m")
