"""Cipher suites behind one small interface, and the key ring that names keys by `kid`.

Both suites are AEADs with a 12-byte nonce and a 16-byte tag appended to the ciphertext:
- AES-256-GCM, 32-byte keys: the suite every implementation MUST support.
- SM4-GCM (GB/T 32907 block cipher in GCM), 16-byte keys: for hospitals that require national
  algorithms.

Both run on `cryptography` (OpenSSL). pycryptodome has no SM4, and its AES-GCM costs ~190 us a
seal+open here (51 us of it just building the GHASH tables per message) against ~2 us for
OpenSSL's; the tests check the two libraries agree byte for byte on AES-256-GCM.

Keys never appear in `repr()`; identify them by `fingerprint()`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Iterator, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocol.errors import CodedError, ErrorCode, ProtocolError

NONCE_SIZE = 12
TAG_SIZE = 16


class AuthenticationError(CodedError):
    """The tag did not verify: wrong key, or header, nonce or ciphertext changed."""

    code = "auth_failed"


class CipherSuite(Protocol):
    name: str
    key_size: int

    def seal(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Return ciphertext followed by the 16-byte tag."""

    def open(self, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        """Return the plaintext, or raise AuthenticationError."""


class Aes256Gcm:
    name = "AES-256-GCM"
    key_size = 32

    def seal(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return AESGCM(key).encrypt(nonce, plaintext, aad)

    def open(self, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < TAG_SIZE:
            raise AuthenticationError("ciphertext shorter than the tag")
        try:
            return AESGCM(key).decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise AuthenticationError("tag mismatch") from None


class Sm4Gcm:
    name = "SM4-GCM"
    key_size = 16

    def seal(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        return ciphertext + encryptor.tag

    def open(self, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < TAG_SIZE:
            raise AuthenticationError("ciphertext shorter than the tag")
        decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, sealed[-TAG_SIZE:])).decryptor()
        decryptor.authenticate_additional_data(aad)
        try:
            return decryptor.update(sealed[:-TAG_SIZE]) + decryptor.finalize()
        except InvalidTag:
            raise AuthenticationError("tag mismatch") from None


SUITES: dict[str, CipherSuite] = {suite.name: suite for suite in (Aes256Gcm(), Sm4Gcm())}


def get_suite(name: object) -> CipherSuite:
    if not isinstance(name, str) or name not in SUITES:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_SUITE, f"suite {name!r} is not supported; use one of {', '.join(SUITES)}"
        )
    return SUITES[name]


def fingerprint(secret: bytes) -> str:
    """A short, non-secret name for a key, for people to compare: 'a1b2-c3d4-e5f6-0718'."""
    digest = hashlib.sha256(b"his-interface-v1 key fingerprint\x00" + secret).hexdigest()[:16]
    return "-".join(digest[i : i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True, slots=True)
class SharedKey:
    kid: str
    suite: str
    secret: bytes = field(repr=False)
    retired: bool = False

    def __post_init__(self) -> None:
        suite = get_suite(self.suite)
        if len(self.secret) != suite.key_size:
            raise ValueError(f"kid {self.kid}: a {self.suite} key is {suite.key_size} bytes, got {len(self.secret)}")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.secret)


class KeyRing:
    """Shared keys by kid. Lookup failures are ProtocolErrors with the spec's codes."""

    def __init__(self, keys: list[SharedKey] | tuple[SharedKey, ...] = ()) -> None:
        self._keys: dict[str, SharedKey] = {}
        for key in keys:
            if key.kid in self._keys:
                raise ValueError(f"kid {key.kid} appears twice in the key ring")
            self._keys[key.kid] = key

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __iter__(self) -> Iterator[SharedKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def key_for(self, kid: str, suite: str, *, allow_retired: bool = False) -> SharedKey:
        """The active key named `kid`, which must be a key of `suite`.

        `allow_retired` is for sealing the result of an instruction accepted before its kid was
        retired: the answer goes out under the instruction's key. Receivers never pass it.
        """
        key = self._keys.get(kid)
        if key is None:
            raise ProtocolError(ErrorCode.UNKNOWN_KID, f"kid {kid!r} is not known here")
        if key.retired and not allow_retired:
            raise ProtocolError(ErrorCode.UNKNOWN_KID, f"kid {kid!r} has been retired; use a current key")
        if key.suite != suite:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_SUITE, f"kid {kid!r} is a {key.suite} key; the envelope says {suite}"
            )
        return key

    def active(self) -> list[SharedKey]:
        return [key for key in self._keys.values() if not key.retired]


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
