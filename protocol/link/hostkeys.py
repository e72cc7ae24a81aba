"""Host identity keys for the link, and the device's pins of them: the text formats (pure, no I/O).

A host that opens a link session proves an Ed25519 identity key in its HELLO_ACK
(protocol.link.handshake). Two kinds of host, two roles:
- `bridge`: his-bridge on the cashier's PC (`his-bridge init` makes its key); the device gives it the
  application: instructions in, results out;
- `maintenance`: the field engineer's pos-flash (`pos-flash host-key new`); the device gives it the
  bootloader frames only, never a result.

    private  {"format": "his-link-host-key-v1", "name", "role", "seed_hex", "public_hex"}   mode 0600
    public   {"format": "his-link-host-pub-v1", "name", "role", "public_hex"}
    pins     {"format": "his-link-hosts-v1", "hosts": [<public entries>]}     on the device, at provisioning

The device pins public keys at provisioning (terminal.identity); a host whose key is not pinned (a
rogue PC on the cable) gets no session at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from protocol import signing
from protocol.flash import FlashCode, FlashError
from protocol.ids import is_valid_id
from protocol.link.handshake import HostRole, HostTrust
from protocol.trust import fingerprint, key_entries, key_entry_fields, load_key_document

PRIVATE_FORMAT = "his-link-host-key-v1"
PUBLIC_FORMAT = "his-link-host-pub-v1"
PINS_FORMAT = "his-link-hosts-v1"
MAX_PINNED_HOSTS = 32


@dataclass(frozen=True, slots=True)
class HostPublicKey:
    name: str
    role: HostRole
    public: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def to_json_obj(self) -> dict[str, object]:
        return {"format": PUBLIC_FORMAT, "name": self.name, "role": self.role.value, "public_hex": self.public.hex()}


@dataclass(frozen=True, slots=True)
class HostKey:
    """A host's private identity key (the bridge's or pos-flash's)."""

    name: str
    role: HostRole
    seed: bytes

    def __repr__(self) -> str:  # never show the seed
        return f"HostKey(name={self.name!r}, role={self.role.value!r}, fingerprint={fingerprint(self.public)!r})"

    @property
    def public(self) -> bytes:
        return signing.public_key(self.seed)

    def public_key(self) -> HostPublicKey:
        return HostPublicKey(self.name, self.role, self.public)


def new_host_key(name: str, role: HostRole, seed: bytes) -> HostKey:
    if not is_valid_id(name):
        raise FlashError(FlashCode.BAD_INPUT, f"host key name {name!r} must match [A-Za-z0-9_-]{{1,64}}")
    if len(seed) != signing.SEED_SIZE:
        raise FlashError(FlashCode.BAD_KEY, "a host key seed is 32 bytes")
    return HostKey(name, role, seed)


def format_private(key: HostKey) -> str:
    return json.dumps({"format": PRIVATE_FORMAT, "name": key.name, "role": key.role.value,
                       "seed_hex": key.seed.hex(), "public_hex": key.public.hex()}, indent=2) + "\n"


def format_public(key: HostPublicKey) -> str:
    return json.dumps(key.to_json_obj(), indent=2) + "\n"


def format_pins(keys: list[HostPublicKey]) -> str:
    return json.dumps({"format": PINS_FORMAT, "hosts": [k.to_json_obj() for k in keys]}, indent=2) + "\n"


def _entry(obj: dict[str, object], source: str) -> HostPublicKey:
    return HostPublicKey(*key_entry_fields(obj, source, name_field="name", roles=HostRole))


def parse_private(text: str, source: str = "host key") -> HostKey:
    obj = load_key_document(text, source, PRIVATE_FORMAT)
    public = _entry(obj, source)
    try:
        seed = bytes.fromhex(str(obj.get("seed_hex")))
    except ValueError:
        seed = b""
    if len(seed) != signing.SEED_SIZE or signing.public_key(seed) != public.public:
        raise FlashError(FlashCode.BAD_KEY, f"{source}: seed_hex does not match public_hex")
    return HostKey(public.name, public.role, seed)


def parse_public(text: str, source: str = "host public key") -> HostPublicKey:
    """A public key file, or a private one (its public half: handy when the same PC provisions)."""
    try:
        return _entry(load_key_document(text, source, PUBLIC_FORMAT), source)
    except FlashError:
        return parse_private(text, source).public_key()


def parse_pins(text: str, source: str = "pinned hosts") -> list[HostPublicKey]:
    return key_entries(load_key_document(text, source, PINS_FORMAT), "hosts", MAX_PINNED_HOSTS, source, _entry)


def host_trust(keys: list[HostPublicKey]) -> HostTrust:
    return HostTrust(frozenset(k.public for k in keys if k.role is HostRole.BRIDGE),
                     frozenset(k.public for k in keys if k.role is HostRole.MAINTENANCE))
