"""Ed25519 signatures (RFC 8032, pycryptodome) over raw 32-byte keys.

Used for the device key (the HELLO proof) and for signing firmware and configuration images.
Key generation takes its 32-byte seed from the caller, so this module stays free of randomness.
"""

from __future__ import annotations

from Crypto.Signature import eddsa

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


class SignatureError(Exception):
    """A signature did not verify, or a key or signature was malformed."""


def public_key(seed: bytes) -> bytes:
    if len(seed) != SEED_SIZE:
        raise ValueError(f"an Ed25519 private key seed is {SEED_SIZE} bytes")
    return eddsa.import_private_key(seed).public_key().export_key(format="raw")


def sign(seed: bytes, message: bytes) -> bytes:
    if len(seed) != SEED_SIZE:
        raise ValueError(f"an Ed25519 private key seed is {SEED_SIZE} bytes")
    return eddsa.new(eddsa.import_private_key(seed), "rfc8032").sign(message)


def verify(public: bytes, message: bytes, signature: bytes) -> None:
    """Raise SignatureError unless `signature` is `public`'s signature of `message`."""
    if len(public) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        raise SignatureError("malformed key or signature")
    try:
        verifier = eddsa.new(eddsa.import_public_key(public), "rfc8032")
        verifier.verify(message, signature)
    except ValueError:
        raise SignatureError("signature does not verify") from None
