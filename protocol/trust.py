"""Trust anchors: the image-signing public keys a device holds, and their text formats.

Both ends need these: the device's bootloader verifies images against its trust store, and the field
engineer's tool (posflash) writes trust stores at provisioning and checks images before it sends
them. Private signing keys never appear here; they belong to the tool (posflash.signing_keys).

Two roles, two separate keys (docs/field-engineer.md, "Keys"):
- `release`: signs every normal image. Its security counter must not go below the device's minimum.
- `override`: the engineer override key, kept offline by the release manager. An image it signs may
  carry a lower security counter (a deliberate downgrade for recovery), and must be bound to one
  device_id, so a leaked override image cannot downgrade a fleet.

Text formats (UTF-8 JSON):
    public   {"format": "his-signing-pub-v1", "key_id", "role", "public_hex"}
    trust    {"format": "his-trust-v1", "keys": [<public entries>]}   (on the device)
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Mapping, TypeVar

from protocol import signing
from protocol.errors import ProtocolError
from protocol.flash import FlashCode, FlashError
from protocol.ids import is_valid_id
from protocol.strictjson import loads_object

PUBLIC_FORMAT = "his-signing-pub-v1"
TRUST_FORMAT = "his-trust-v1"
MAX_TRUSTED_KEYS = 32


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


def format_public(key: TrustedKey) -> str:
    return json.dumps(key.to_json_obj(), indent=2) + "\n"


def format_trust(store: TrustStore) -> str:
    return json.dumps(store.to_json_obj(), indent=2) + "\n"


def load_key_document(text: str, source: str, fmt: str) -> dict[str, object]:
    """A key document's JSON object, refused unless its "format" is `fmt`."""
    try:
        obj = loads_object(text, what=source)
    except ProtocolError as exc:
        raise FlashError(FlashCode.BAD_KEY, f"{source}: {exc.message}") from None
    if obj.get("format") != fmt:
        raise FlashError(FlashCode.BAD_KEY, f"{source}: format must be {fmt!r}")
    return obj


_Role = TypeVar("_Role", bound=enum.Enum)
_Entry = TypeVar("_Entry")


def key_entry_fields(obj: Mapping[str, object], source: str, *, name_field: str,
                     roles: type[_Role]) -> tuple[str, _Role, bytes]:
    """(name, role, public key) of one public-key entry: the part every key document shares.

    Image-signing keys name themselves by `key_id` (roles release/override), link host keys by `name`
    (roles bridge/maintenance); both carry a `public_hex` Ed25519 key.
    """
    name, role, public_hex = obj.get(name_field), obj.get("role"), obj.get("public_hex")
    if not isinstance(name, str) or not is_valid_id(name):
        raise FlashError(FlashCode.BAD_KEY, f"{source}: {name_field} must match [A-Za-z0-9_-]{{1,64}}")
    try:
        key_role = roles(role)
    except ValueError:
        allowed = " or ".join(str(member.value) for member in roles)
        raise FlashError(FlashCode.BAD_KEY, f"{source}: role must be {allowed}") from None
    try:
        public = bytes.fromhex(public_hex) if isinstance(public_hex, str) else b""
    except ValueError:
        public = b""
    if len(public) != signing.PUBLIC_KEY_SIZE:
        raise FlashError(FlashCode.BAD_KEY, f"{source}: public_hex must be {signing.PUBLIC_KEY_SIZE} bytes of hex")
    return name, key_role, public


def key_entries(obj: Mapping[str, object], field: str, maximum: int, source: str,
                parse: Callable[[dict[str, object], str], _Entry]) -> list[_Entry]:
    """The list of public-key entries under `field` (a trust store's keys, a device's pinned hosts)."""
    entries = obj.get(field)
    if not isinstance(entries, list) or len(entries) > maximum:
        raise FlashError(FlashCode.BAD_KEY, f"{source}: {field} must be a list of at most {maximum} public keys")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise FlashError(FlashCode.BAD_KEY, f"{source}: {field}[{i}] must be an object")
        out.append(parse(entry, f"{source}: {field}[{i}]"))
    return out


def public_entry(obj: dict[str, object], source: str) -> TrustedKey:
    """The key_id, role and public half named by a key document (public, private or trust entry)."""
    return TrustedKey(*key_entry_fields(obj, source, name_field="key_id", roles=KeyRole))


def parse_public(text: str, source: str = "public key") -> TrustedKey:
    return public_entry(load_key_document(text, source, PUBLIC_FORMAT), source)


def parse_trust(text: str, source: str = "trust store") -> TrustStore:
    obj = load_key_document(text, source, TRUST_FORMAT)
    return TrustStore(tuple(key_entries(obj, "keys", MAX_TRUSTED_KEYS, source, public_entry)))
