"""Image signing keys (PC side) and the trust anchors a device holds (public keys only).

Two roles, two separate keys (docs/field-engineer.md, "Keys"):
- `release`: signs every normal image. Its security counter must not go below the device's minimum.
- `override`: the engineer override key, kept offline by the release manager. An image it signs may
  carry a lower security counter (a deliberate downgrade for recovery), and must be bound to one
  device_id, so a leaked override image cannot downgrade a fleet.

Files (UTF-8 JSON):
    private  {"format": "his-signing-key-v1", "key_id", "role", "seed_hex", "public_hex"}   mode 0600
    public   {"format": "his-signing-pub-v1", "key_id", "role", "public_hex"}
    trust    {"format": "his-trust-v1", "keys": [<public entries>]}   (on the device)

A private key file is created exclusively (never overwrites) with mode 0600, and refused when other
users can read it. Nothing here logs or formats a seed except into the private file itself.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from protocol import signing
from protocol.errors import ProtocolError
from protocol.flash import FlashCode, FlashError
from protocol.ids import is_valid_id
from protocol.strictjson import loads_object

PRIVATE_FORMAT = "his-signing-key-v1"
PUBLIC_FORMAT = "his-signing-pub-v1"
TRUST_FORMAT = "his-trust-v1"


class KeyRole(str, enum.Enum):
    RELEASE = "release"
    OVERRIDE = "override"


def fingerprint(public: bytes) -> str:
    """A short, safe name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class TrustedKey:
    key_id: str
    role: KeyRole
    public: bytes

    def to_json_obj(self) -> dict[str, object]:
        return {"format": PUBLIC_FORMAT, "key_id": self.key_id, "role": self.role.value, "public_hex": self.public.hex()}


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


@dataclass(frozen=True, slots=True)
class TrustStore:
    keys: tuple[TrustedKey, ...] = ()

    def __post_init__(self) -> None:
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise FlashError(FlashCode.BAD_KEY, "a trust store lists the same key_id twice")

    def get(self, key_id: str) -> TrustedKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def key_ids(self) -> list[str]:
        return [k.key_id for k in self.keys]

    def to_json_obj(self) -> dict[str, object]:
        return {"format": TRUST_FORMAT, "keys": [k.to_json_obj() for k in self.keys]}


def new_signing_key(key_id: str, role: KeyRole, seed: bytes) -> SigningKey:
    if not is_valid_id(key_id):
        raise FlashError(FlashCode.BAD_INPUT, f"key id {key_id!r} must match [A-Za-z0-9_-]{{1,64}}")
    if len(seed) != signing.SEED_SIZE:
        raise FlashError(FlashCode.BAD_KEY, f"a signing key seed is {signing.SEED_SIZE} bytes")
    return SigningKey(key_id, role, seed)


# ----------------------------------------------------------------------------- text formats


def format_private(key: SigningKey) -> str:
    return json.dumps({"format": PRIVATE_FORMAT, "key_id": key.key_id, "role": key.role.value,
                       "seed_hex": key.seed.hex(), "public_hex": key.public.hex()}, indent=2) + "\n"


def format_public(key: TrustedKey) -> str:
    return json.dumps(key.to_json_obj(), indent=2) + "\n"


def format_trust(store: TrustStore) -> str:
    return json.dumps(store.to_json_obj(), indent=2) + "\n"


def _load(text: str, source: str, fmt: str) -> dict[str, object]:
    try:
        obj = loads_object(text, what=source)
    except ProtocolError as exc:
        raise FlashError(FlashCode.BAD_KEY, f"{source}: {exc.message}") from None
    if obj.get("format") != fmt:
        raise FlashError(FlashCode.BAD_KEY, f"{source}: format must be {fmt!r}")
    return obj


def _public_entry(obj: dict[str, object], source: str) -> TrustedKey:
    key_id, role, public_hex = obj.get("key_id"), obj.get("role"), obj.get("public_hex")
    if not is_valid_id(key_id):
        raise FlashError(FlashCode.BAD_KEY, f"{source}: key_id must match [A-Za-z0-9_-]{{1,64}}")
    try:
        key_role = KeyRole(role)
    except ValueError:
        raise FlashError(FlashCode.BAD_KEY, f"{source}: role must be release or override") from None
    try:
        public = bytes.fromhex(public_hex) if isinstance(public_hex, str) else b""
    except ValueError:
        public = b""
    if len(public) != signing.PUBLIC_KEY_SIZE:
        raise FlashError(FlashCode.BAD_KEY, f"{source}: public_hex must be {signing.PUBLIC_KEY_SIZE} bytes of hex")
    return TrustedKey(key_id, key_role, public)  # type: ignore[arg-type]


def parse_private(text: str, source: str = "signing key") -> SigningKey:
    obj = _load(text, source, PRIVATE_FORMAT)
    pub = _public_entry({**obj, "format": PUBLIC_FORMAT}, source)
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


def parse_public(text: str, source: str = "public key") -> TrustedKey:
    return _public_entry(_load(text, source, PUBLIC_FORMAT), source)


def parse_trust(text: str, source: str = "trust store") -> TrustStore:
    obj = _load(text, source, TRUST_FORMAT)
    entries = obj.get("keys")
    if not isinstance(entries, list) or len(entries) > 32:
        raise FlashError(FlashCode.BAD_KEY, f"{source}: keys must be a list of at most 32 public keys")
    keys = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise FlashError(FlashCode.BAD_KEY, f"{source}: keys[{i}] must be an object")
        keys.append(_public_entry(entry, f"{source}: keys[{i}]"))
    return TrustStore(tuple(keys))


# ----------------------------------------------------------------------------- files


def write_new_file(path: Path, text: str, *, private: bool) -> None:
    """Create `path` exclusively (never overwrite); mode 0600 when private."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o600 if private else 0o644)
    except FileExistsError:
        raise FlashError(FlashCode.EXISTS, f"{path} already exists") from None
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def check_private_mode(path: Path) -> None:
    """Refuse a private file that other users can read (POSIX; Windows ACLs are the OS's job)."""
    if os.name != "posix":
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise FlashError(FlashCode.BAD_KEY, f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}")


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlashError(FlashCode.BAD_INPUT, f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlashError(FlashCode.BAD_INPUT, f"cannot read {what} {path}: {exc}") from None


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
