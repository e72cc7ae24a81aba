"""The HELLO handshake: the device says who it is and proves it holds its device key.

    host   -> HELLO_REQUEST  payload: challenge (32 random bytes, new for every attempt)
    device -> HELLO          payload: u16 n | identity JSON (n bytes) | Ed25519 signature (64)
                             signed message: HELLO_CONTEXT | challenge | identity JSON
    host   -> HELLO_ACK      payload: host info JSON (host clock), after the proof verified

The host looks the device_id up in its device registry (public keys, provisioned in step 2). An
unknown device_id, a wrong signature or an identity it cannot parse gets no HELLO_ACK, and so the
device gets nothing relayed to it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from protocol import signing
from protocol.errors import ProtocolError
from protocol.ids import check_id
from protocol.strictjson import Fields, dumps_compact, loads_object

HELLO_CONTEXT = b"his-smartpos link HELLO v1\x00"
CHALLENGE_SIZE = 32
_LEN = struct.Struct(">H")


class HandshakeError(Exception):
    """The device's HELLO was refused; the message says why, for the security log."""


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    device_id: str
    model: str
    serial_no: str
    firmware: str
    capabilities: tuple[str, ...] = ()

    def to_json_obj(self) -> dict[str, object]:
        return {
            "device_id": self.device_id,
            "model": self.model,
            "serial_no": self.serial_no,
            "firmware": self.firmware,
            "capabilities": list(self.capabilities),
        }


def encode_hello(identity: DeviceIdentity, challenge: bytes, device_key_seed: bytes) -> bytes:
    identity_json = dumps_compact(identity.to_json_obj())
    signature = signing.sign_in_context(device_key_seed, HELLO_CONTEXT, challenge + identity_json)
    return _LEN.pack(len(identity_json)) + identity_json + signature


def decode_identity(identity_json: bytes) -> DeviceIdentity:
    try:
        f = Fields(loads_object(identity_json, what="HELLO identity"), where="hello")
        capabilities = f.list("capabilities", max_items=32)
        if not all(isinstance(c, str) and len(c) <= 32 for c in capabilities):
            raise HandshakeError("hello.capabilities must be short strings")
        return DeviceIdentity(
            device_id=check_id("hello.device_id", f.raw("device_id")),
            model=f.req_str("model", max_len=64),
            serial_no=f.req_str("serial_no", max_len=64),
            firmware=f.req_str("firmware", max_len=64),
            capabilities=tuple(capabilities),  # type: ignore[arg-type]
        )
    except ProtocolError as exc:
        raise HandshakeError(f"malformed HELLO identity: {exc.message}") from None


def verify_hello(payload: bytes, challenge: bytes, public_key_for: Callable[[str], bytes | None]) -> DeviceIdentity:
    """Check a HELLO against the challenge we sent; return the proven identity."""
    if len(payload) < _LEN.size + signing.SIGNATURE_SIZE:
        raise HandshakeError("HELLO too short")
    (n,) = _LEN.unpack_from(payload)
    if len(payload) != _LEN.size + n + signing.SIGNATURE_SIZE:
        raise HandshakeError("HELLO length fields do not add up")
    identity_json = payload[_LEN.size : _LEN.size + n]
    signature = payload[_LEN.size + n :]
    identity = decode_identity(identity_json)
    public = public_key_for(identity.device_id)
    if public is None:
        raise HandshakeError(f"device {identity.device_id} is not in the device registry")
    try:
        signing.verify(public, HELLO_CONTEXT + challenge + identity_json, signature)
    except signing.SignatureError:
        raise HandshakeError(f"device {identity.device_id} failed the key proof (wrong device key?)") from None
    return identity
