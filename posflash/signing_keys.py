"""Image signing keys: the private halves, which live only on the release manager's or the field
engineer's PC. Public keys and trust stores are protocol.trust (the device reads those too).

    private  {"format": "his-signing-key-v1", "key_id", "role", "seed_hex", "public_hex"}   mode 0600

A private key file is created exclusively (never overwrites) with mode 0600, and refused when other
users can read it. Nothing here logs or formats a seed except into the private file itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from protocol import signing
from protocol.flash import FlashCode, FlashError
from protocol.ids import is_valid_id
from protocol.trust import (
    PUBLIC_FORMAT, KeyRole, TrustedKey, fingerprint, load_key_document, parse_public, public_entry,
)
from terminal.secure_files import check_private_mode, read_text

PRIVATE_FORMAT = "his-signing-key-v1"


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    role: KeyRole
    seed: bytes

    def __repr__(self) -> str:  # never show the seed
        return f"SigningKey(key_id={self.key_id!r}, role={self.role.value!r}, fingerprint={fingerprint(self.public)!r})"

    @property
    def public(self) -> bytes:
        return signing.public_key(self.seed)

    def trusted(self) -> TrustedKey:
        return TrustedKey(self.key_id, self.role, self.public)


def new_signing_key(key_id: str, role: KeyRole, seed: bytes) -> SigningKey:
    if not is_valid_id(key_id):
        raise FlashError(FlashCode.BAD_INPUT, f"key id {key_id!r} must match [A-Za-z0-9_-]{{1,64}}")
    if len(seed) != signing.SEED_SIZE:
        raise FlashError(FlashCode.BAD_KEY, f"a signing key seed is {signing.SEED_SIZE} bytes")
    return SigningKey(key_id, role, seed)


def format_private(key: SigningKey) -> str:
    return json.dumps({"format": PRIVATE_FORMAT, "key_id": key.key_id, "role": key.role.value,
                       "seed_hex": key.seed.hex(), "public_hex": key.public.hex()}, indent=2) + "\n"


def parse_private(text: str, source: str = "signing key") -> SigningKey:
    obj = load_key_document(text, source, PRIVATE_FORMAT)
    pub = public_entry({**obj, "format": PUBLIC_FORMAT}, source)
    seed_hex = obj.get("seed_hex")
    try:
        seed = bytes.fromhex(seed_hex) if isinstance(seed_hex, str) else b""
    except ValueError:
        seed = b""
    if len(seed) != signing.SEED_SIZE:
        raise FlashError(FlashCode.BAD_KEY, f"{source}: seed_hex must be {signing.SEED_SIZE} bytes of hex")
    key = SigningKey(pub.key_id, pub.role, seed)
    if key.public != pub.public:
        raise FlashError(FlashCode.BAD_KEY, f"{source}: public_hex does not belong to this private key (file edited?)")
    return key


def load_signing_key(path: Path) -> SigningKey:
    text = read_text(path, "signing key")
    check_private_mode(path)
    return parse_private(text, str(path))


def load_public_key(path: Path) -> TrustedKey:
    text = read_text(path, "public key")
    try:
        return parse_public(text, str(path))
    except FlashError:
        # A private key file also names its public half; accept it where a .pub is wanted.
        if PRIVATE_FORMAT in text:
            check_private_mode(path)
            return parse_private(text, str(path)).trusted()
        raise
