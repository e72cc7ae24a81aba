"""The HELLO handshake (v2): both ends prove who they are and agree on fresh session keys.

    host   -> HELLO_REQUEST  payload: host ephemeral X25519 public key (32 bytes, new every attempt)
    device -> HELLO          payload: u16 n | identity JSON (n) | device ephemeral X25519 key (32)
                                      | Ed25519 signature by the device key (64)
                             signed:  HELLO_CONTEXT | host eph | identity JSON | device eph
    host   -> HELLO_ACK      payload: u16 n | host info JSON (n) | host identity public key (32)
                                      | Ed25519 signature by the host identity key (64)
                             signed:  ACK_CONTEXT | transcript hash | host info JSON | host key

transcript hash = SHA-256 over HELLO_REQUEST's and HELLO's payloads (protocol.link.secure). Session
keys = HKDF(X25519(host eph, device eph), salt = transcript hash), one per direction.

The host looks the device_id up in its device registry (public keys, step 2) and checks the device's
signature over its own fresh ephemeral key: an unknown device, a wrong key or a replayed HELLO gets no
HELLO_ACK. The device checks the host's key against the keys pinned at provisioning (`HostTrust`): a
bridge key or a maintenance key (pos-flash); anything else (a rogue PC) gets no session, so it can
neither send an instruction nor receive, and acknowledge away, a result. Because each side signs both
ephemeral keys (the device directly, the host through the transcript hash), a man-in-the-middle who
substitutes either ephemeral key breaks a signature, and so never learns the session keys.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Callable

from protocol import signing
from protocol.errors import CodedError, ProtocolError
from protocol.ids import check_id
from protocol.link.secure import KEX_PUBLIC_SIZE, Ephemeral, SessionKeys, transcript_hash
from protocol.strictjson import Fields, dumps_compact, loads_object

HELLO_CONTEXT = b"his-smartpos link HELLO v2\x00"
ACK_CONTEXT = b"his-smartpos link HELLO_ACK v2\x00"
CHALLENGE_SIZE = KEX_PUBLIC_SIZE  # the HELLO_REQUEST payload: the host's ephemeral key is the challenge
_LEN = struct.Struct(">H")


class HandshakeError(CodedError):
    """A HELLO or HELLO_ACK was refused; the message says why, for the security log."""

    code = "handshake_refused"


class HostRole(str, enum.Enum):
    BRIDGE = "bridge"  # his-bridge: gets the application (instructions, results)
    MAINTENANCE = "maintenance"  # pos-flash: gets the bootloader frames only


@dataclass(frozen=True, slots=True)
class HostTrust:
    """The host keys a device pins (made at provisioning): who may open a session, and as what."""

    bridges: frozenset[bytes] = frozenset()
    maintenance: frozenset[bytes] = frozenset()

    def role_of(self, public: bytes) -> HostRole | None:
        if public in self.bridges:
            return HostRole.BRIDGE
        if public in self.maintenance:
            return HostRole.MAINTENANCE
        return None


@dataclass(frozen=True, slots=True)
class HostPeer:
    """The host a device's session is with: its pinned key and what that key was pinned as."""

    public_key: bytes
    role: HostRole


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


def _split(payload: bytes, tail: int, what: str) -> tuple[bytes, bytes]:
    if len(payload) < _LEN.size + tail:
        raise HandshakeError(f"{what} too short")
    (n,) = _LEN.unpack_from(payload)
    if len(payload) != _LEN.size + n + tail:
        raise HandshakeError(f"{what} length fields do not add up")
    return payload[_LEN.size : _LEN.size + n], payload[_LEN.size + n :]


# ----------------------------------------------------------------------------- device side


def encode_hello(identity: DeviceIdentity, host_eph: bytes, device_eph: bytes, device_key_seed: bytes) -> bytes:
    identity_json = dumps_compact(identity.to_json_obj())
    signature = signing.sign_in_context(device_key_seed, HELLO_CONTEXT, host_eph + identity_json + device_eph)
    return _LEN.pack(len(identity_json)) + identity_json + device_eph + signature


def verify_hello_ack(payload: bytes, transcript: bytes, trust: HostTrust) -> tuple[HostPeer, bytes]:
    """Check a HELLO_ACK against our transcript and pinned host keys: (the host, its info JSON)."""
    info, tail = _split(payload, signing.PUBLIC_KEY_SIZE + signing.SIGNATURE_SIZE, "HELLO_ACK")
    public, signature = tail[: signing.PUBLIC_KEY_SIZE], tail[signing.PUBLIC_KEY_SIZE :]
    role = trust.role_of(public)
    if role is None:
        raise HandshakeError(f"host key {signing_fingerprint(public)} is not pinned on this device (a rogue host?)")
    try:
        signing.verify(public, ACK_CONTEXT + transcript + info + public, signature)
    except signing.SignatureError:
        raise HandshakeError(f"host {signing_fingerprint(public)} failed the key proof (a man in the middle?)") from None
    return HostPeer(public, role), info


# ----------------------------------------------------------------------------- host side


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
            capabilities=tuple(c for c in capabilities if isinstance(c, str)),  # all are, checked above
        )
    except ProtocolError as exc:
        raise HandshakeError(f"malformed HELLO identity: {exc.message}") from None


def verify_hello(payload: bytes, host_eph: bytes, public_key_for: Callable[[str], bytes | None]) -> tuple[DeviceIdentity, bytes]:
    """Check a HELLO against the ephemeral key we sent: (the proven identity, the device's ephemeral key)."""
    identity_json, tail = _split(payload, KEX_PUBLIC_SIZE + signing.SIGNATURE_SIZE, "HELLO")
    device_eph, signature = tail[:KEX_PUBLIC_SIZE], tail[KEX_PUBLIC_SIZE:]
    identity = decode_identity(identity_json)
    public = public_key_for(identity.device_id)
    if public is None:
        raise HandshakeError(f"device {identity.device_id} is not in the device registry")
    try:
        signing.verify(public, HELLO_CONTEXT + host_eph + identity_json + device_eph, signature)
    except signing.SignatureError:
        raise HandshakeError(f"device {identity.device_id} failed the key proof (wrong device key?)") from None
    return identity, device_eph


def encode_hello_ack(info: bytes, transcript: bytes, host_key_seed: bytes) -> bytes:
    public = signing.public_key(host_key_seed)
    signature = signing.sign_in_context(host_key_seed, ACK_CONTEXT, transcript + info + public)
    return _LEN.pack(len(info)) + info + public + signature


# ----------------------------------------------------------------------------- both


@dataclass(slots=True)
class Agreement:
    """What one handshake attempt produces: the transcript hash and the session keys."""

    transcript: bytes
    keys: SessionKeys = field(repr=False)


def agree(mine: Ephemeral, peer_eph: bytes, request: bytes, hello: bytes) -> Agreement:
    """Both ends: the transcript of HELLO_REQUEST and HELLO, and the keys from the exchange."""
    try:
        shared = mine.shared(peer_eph)
    except ValueError as exc:
        raise HandshakeError(f"bad ephemeral key: {exc}") from None
    transcript = transcript_hash(request, hello)
    return Agreement(transcript, SessionKeys.derive(shared, transcript))


def signing_fingerprint(public: bytes) -> str:
    from protocol.trust import fingerprint

    return fingerprint(public)
