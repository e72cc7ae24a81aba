"""Supervisor PINs: a salted slow hash in the configuration, and the wrong-PIN lockout rule.

Hash format (one line, in the device configuration):

    scrypt$<n>$<r>$<p>$<salt_b64>$<hash_b64>

hashlib.scrypt with n=2**14, r=8, p=1 (16 MiB, ~50 ms on a POS-class CPU), a 16-byte random salt
and a 32-byte output. A 6-digit PIN has only a million values, so the slowness is what protects a
leaked configuration image; the lockout is what protects the device itself. Parameters below
n=2**14 / r=8 are refused so a weak image cannot be flashed, and parameters above the ceilings
are refused so a hostile image cannot make every PIN check eat the device's memory.

The lockout is pure: `Lockout` is the persisted state, `after_failure` / `check` are the rules; the
service keeps the state in its journal so switching the POS off and on does not reset the count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

SCHEME = "scrypt"
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_N, MAX_N = 2**14, 2**20
MIN_R, MAX_R = 8, 32
MAX_P = 16
# PINs are digits only (the POS keypad), 4 to 12 of them.
PIN_RE = re.compile(r"[0-9]{4,12}", re.ASCII)

# Wrong PINs allowed before the lockout, and how long it lasts. Config may override both.
DEFAULT_MAX_TRIES = 5
DEFAULT_LOCKOUT_S = 300


class PinHashError(ValueError):
    """A PIN hash string is malformed or uses parameters we refuse; the message says which."""


@dataclass(frozen=True, slots=True)
class PinHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode("ascii")
        digest = base64.b64encode(self.digest).decode("ascii")
        return f"{SCHEME}${self.n}${self.r}${self.p}${salt}${digest}"


def _derive(pin: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # maxmem must cover 128*n*r*p bytes plus a margin; OpenSSL's default (32 MiB) is too small for
    # the larger accepted parameters.
    return hashlib.scrypt(pin.encode("ascii"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=256 * n * r * p + 2**20)


def check_pin_format(pin: object) -> str:
    if not isinstance(pin, str) or PIN_RE.fullmatch(pin) is None:
        raise ValueError("a PIN is 4 to 12 digits (0-9)")
    return pin


def hash_pin(pin: str, *, salt: bytes | None = None, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    """The config string for `pin` (what provisioning tools write)."""
    check_pin_format(pin)
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    _check_params(n, r, p, salt)
    return PinHash(n, r, p, salt, _derive(pin, salt, n, r, p, HASH_BYTES)).encode()


def _check_params(n: int, r: int, p: int, salt: bytes) -> None:
    if n < MIN_N or n > MAX_N or n & (n - 1):
        raise PinHashError(f"scrypt n must be a power of two between {MIN_N} and {MAX_N}, got {n}")
    if not MIN_R <= r <= MAX_R:
        raise PinHashError(f"scrypt r must be between {MIN_R} and {MAX_R}, got {r}")
    if not 1 <= p <= MAX_P:
        raise PinHashError(f"scrypt p must be between 1 and {MAX_P}, got {p}")
    if len(salt) < 8:
        raise PinHashError(f"the salt must be at least 8 bytes, got {len(salt)}")


def parse_pin_hash(text: object) -> PinHash:
    if not isinstance(text, str):
        raise PinHashError("a PIN hash must be a string 'scrypt$n$r$p$salt_b64$hash_b64'")
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise PinHashError("a PIN hash must look like 'scrypt$n$r$p$salt_b64$hash_b64'")
    if not all(part.isascii() and part.isdigit() and len(part) <= 8 for part in parts[1:4]):
        raise PinHashError("scrypt n, r and p must be decimal integers")
    n, r, p = (int(part) for part in parts[1:4])
    try:
        salt = base64.b64decode(parts[4].encode("ascii"), validate=True)
        digest = base64.b64decode(parts[5].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise PinHashError("the salt and hash must be standard base64") from None
    _check_params(n, r, p, salt)
    if len(digest) < 16:
        raise PinHashError(f"the hash must be at least 16 bytes, got {len(digest)}")
    return PinHash(n, r, p, salt, digest)


def verify_pin(pin: object, stored: PinHash) -> bool:
    """Constant-time check of `pin` against the stored hash. Malformed input is simply wrong."""
    if not isinstance(pin, str) or PIN_RE.fullmatch(pin) is None:
        # Still spend the time, so a caller cannot tell "malformed" from "wrong" by timing.
        pin = "0000"
        candidate = _derive(pin, stored.salt, stored.n, stored.r, stored.p, len(stored.digest))
        hmac.compare_digest(candidate, stored.digest)
        return False
    candidate = _derive(pin, stored.salt, stored.n, stored.r, stored.p, len(stored.digest))
    return hmac.compare_digest(candidate, stored.digest)


@dataclass(frozen=True, slots=True)
class Lockout:
    """Persisted wrong-PIN state: consecutive failures and, once locked, until when (unix s)."""

    failures: int = 0
    locked_until: float = 0.0


def is_locked(state: Lockout, now: float) -> bool:
    return now < state.locked_until


def after_failure(state: Lockout, now: float, *, max_tries: int, lockout_s: float) -> Lockout:
    failures = state.failures + 1
    if failures >= max_tries:
        return Lockout(0, now + lockout_s)  # the count starts again once the lockout is served
    return Lockout(failures, state.locked_until)


def tries_left(state: Lockout, max_tries: int) -> int:
    return max(0, max_tries - state.failures)
