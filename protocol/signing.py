"""Ed25519 signatures (RFC 8032) over raw 32-byte keys, computed by OpenSSL through `cryptography`.

OpenSSL verifies in ~0.1 ms where pycryptodome's pure-Python point arithmetic takes ~0.7 ms: the
gateway verifies every device request and the bridge every result, so that is CPU per payment
(docs/gateway.md, Performance). Ed25519 is deterministic, so the signatures are the same bytes;
tests/protocol/test_signing.py cross-checks both libraries on random keys, messages and forgeries.

Used for the device key (results, his-interface 1.1 A; the HELLO proof), HIS's key (`his_sig`,
1.1 B) and for signing firmware and configuration images. Key generation takes its 32-byte seed
from the caller, so this module stays free of randomness.

Domain separation (1.1 A): a device key signs results (`AAD || CT`, whose first bytes are always
`1|result|`) and nothing else that could be mistaken for one. Every other use signs through
`sign_in_context`, whose context prefix can never begin with `1|`.
"""

from __future__ import annotations

import base64
import binascii
import functools

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.errors import CodedError

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


class SignatureError(CodedError):
    """A signature did not verify, or a key or signature was malformed."""

    code = "bad_signature"


def _private(seed: bytes) -> Ed25519PrivateKey:
    if len(seed) != SEED_SIZE:
        raise ValueError(f"an Ed25519 private key seed is {SEED_SIZE} bytes")
    return Ed25519PrivateKey.from_private_bytes(bytes(seed))


@functools.lru_cache(maxsize=4096)
def _public(public: bytes) -> Ed25519PublicKey:
    """A loaded public key, kept: a gateway verifies the same devices' keys all day."""
    return Ed25519PublicKey.from_public_bytes(public)


def public_key(seed: bytes) -> bytes:
    return _private(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign(seed: bytes, message: bytes) -> bytes:
    return _private(seed).sign(bytes(message))


def sign_in_context(seed: bytes, context: bytes, message: bytes) -> bytes:
    """Sign `context || message` for any use other than a result; `context` names the use."""
    check_context(context)
    return sign(seed, context + message)


def check_context(context: bytes) -> None:
    """A context prefix is non-empty and never starts like an envelope's AAD (`1|...`)."""
    if not context or context.startswith(b"1|") or context[:1].isdigit():
        raise ValueError("a signing context must be non-empty and must not start like an envelope AAD")


def encode_public_key(public: bytes) -> str:
    """The registry form of a public key (his-interface 1.1 A): standard base64, padded."""
    if len(public) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
    return base64.b64encode(public).decode("ascii")


def decode_public_key(text: str) -> bytes:
    """Read a public key in the registry form (base64, padded, canonical); ValueError says why."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("public_key must be standard base64 (padded)") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("public_key is not canonical base64")
    if len(raw) != PUBLIC_KEY_SIZE:
        raise ValueError(f"public_key must be {PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
    return raw


def verify(public: bytes, message: bytes, signature: bytes) -> None:
    """Raise SignatureError unless `signature` is `public`'s signature of `message`."""
    if len(public) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        raise SignatureError("malformed key or signature")
    try:
        _public(bytes(public)).verify(bytes(signature), bytes(message))
    except (InvalidSignature, ValueError):
        raise SignatureError("signature does not verify") from None
