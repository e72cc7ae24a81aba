"""The link's cryptography: the ephemeral key exchange, the session keys, and the AEAD of every frame.

One handshake (protocol.link.handshake) gives both ends the same X25519 shared secret and the same
transcript hash. From them HKDF-SHA256 derives two 32-byte keys, one per direction, so a frame can
never be reflected back to its sender. Every frame after the handshake is sealed with
ChaCha20-Poly1305 under the sender's direction key:

    nonce (12 bytes)  = frame type (1) | aux (1) | 00 00 | counter, u64 big-endian
    associated data   = the frame header's version, type and 16-bit sequence number
    payload on wire   = ciphertext | 16-byte tag

`counter` is the full 64-bit sequence number of the reliable frame (the header carries its low 16
bits; the receiver reconstructs the rest, protocol.link.session). DATA and bootloader frames are
encrypted under their own counter; an ACK (and an authenticated NAK, aux = its reason) carries only
a tag, sealed under the counter of the frame it answers. A nonce is therefore never used for two
different messages: each (type, aux, counter) names exactly one plaintext, and the same frame sent
again (a retransmission, a repeated ACK) is the same bytes.

ChaCha20-Poly1305 rather than AES-GCM: a POS's ARM core may lack AES instructions, where ChaCha20
is both faster and constant-time in software. Sans-I/O: randomness comes in as a callable.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.errors import CodedError

SUITE = "X25519-HKDF-SHA256-ChaCha20Poly1305"
KEX_PUBLIC_SIZE = 32
KEY_SIZE = 32
TAG_SIZE = 16
COUNTER_LIMIT = 1 << 64
INFO_HOST_TO_DEVICE = b"his-smartpos link v2 bridge->POS"
INFO_DEVICE_TO_HOST = b"his-smartpos link v2 POS->bridge"
_NONCE = struct.Struct(">BBHQ")
_AAD = struct.Struct(">BBH")


class FrameAuthError(CodedError):
    """A frame did not authenticate: injected, altered, replayed from another session, or corrupt."""

    code = "frame_auth_failed"


@dataclass(slots=True)
class Ephemeral:
    """One side's ephemeral X25519 key pair of one handshake attempt (never reused)."""

    private: X25519PrivateKey = field(repr=False)
    public: bytes

    @classmethod
    def generate(cls, random: Callable[[int], bytes]) -> "Ephemeral":
        raw = random(KEY_SIZE)
        if len(raw) != KEY_SIZE:
            raise ValueError(f"the random source gave {len(raw)} bytes, not {KEY_SIZE}")
        private = X25519PrivateKey.from_private_bytes(raw)
        return cls(private, private.public_key().public_bytes_raw())

    def shared(self, peer_public: bytes) -> bytes:
        """The X25519 shared secret; ValueError for a malformed or low-order peer key."""
        if len(peer_public) != KEX_PUBLIC_SIZE:
            raise ValueError("an X25519 public key is 32 bytes")
        secret = self.private.exchange(X25519PublicKey.from_public_bytes(peer_public))
        if secret == bytes(KEY_SIZE):
            raise ValueError("the peer's X25519 key is of low order")
        return secret


def transcript_hash(*parts: bytes) -> bytes:
    """SHA-256 over length-prefixed parts, so no two different transcripts hash alike."""
    h = hashlib.sha256(b"his-smartpos link v2 transcript\x00")
    for part in parts:
        h.update(struct.pack(">I", len(part)))
        h.update(part)
    return h.digest()


def _hkdf(shared: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(shared)


@dataclass(frozen=True, slots=True)
class SessionKeys:
    host_to_device: bytes = field(repr=False)
    device_to_host: bytes = field(repr=False)

    @classmethod
    def derive(cls, shared: bytes, transcript: bytes) -> "SessionKeys":
        return cls(_hkdf(shared, transcript, INFO_HOST_TO_DEVICE), _hkdf(shared, transcript, INFO_DEVICE_TO_HOST))


def frame_nonce(frame_type: int, aux: int, counter: int) -> bytes:
    return _NONCE.pack(frame_type, aux, 0, counter)


def frame_aad(version: int, frame_type: int, seq: int) -> bytes:
    return _AAD.pack(version, frame_type, seq)


class FrameCipher:
    """One direction's AEAD. `seal` and `open` take the frame's type, aux byte, full counter and header."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"a link key is {KEY_SIZE} bytes")
        self._aead = ChaCha20Poly1305(key)

    def __repr__(self) -> str:  # never show the key
        return "FrameCipher(<key>)"

    def seal(self, frame_type: int, aux: int, counter: int, aad: bytes, plaintext: bytes) -> bytes:
        if not 0 <= counter < COUNTER_LIMIT:
            raise ValueError("the frame counter is exhausted: handshake again")
        return self._aead.encrypt(frame_nonce(frame_type, aux, counter), plaintext, aad)

    def open(self, frame_type: int, aux: int, counter: int, aad: bytes, sealed: bytes) -> bytes:
        if len(sealed) < TAG_SIZE or not 0 <= counter < COUNTER_LIMIT:
            raise FrameAuthError("too short to carry a tag")
        try:
            return self._aead.decrypt(frame_nonce(frame_type, aux, counter), sealed, aad)
        except InvalidTag:
            raise FrameAuthError("the frame does not authenticate") from None


def reconstruct_counter(seq16: int, expected: int) -> int:
    """The 64-bit counter whose low 16 bits are `seq16` and that lies nearest `expected`
    (within -32768..+32767), never below 0. Sender and receiver are never more than a window apart."""
    candidate = (expected & ~0xFFFF) | seq16
    if candidate - expected > 0x7FFF:
        candidate -= 0x10000
    elif expected - candidate > 0x8000:
        candidate += 0x10000
    return candidate if candidate >= 0 else candidate + 0x10000
