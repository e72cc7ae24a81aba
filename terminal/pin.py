"""Supervisor PINs: a salted slow hash in the configuration, and the wrong-PIN lockout rule.

Hash format (one line, in the device configuration):

    scrypt$<n>$<r>$<p>$<salt_b64>$<hash_b64>

hashlib.scrypt with n=2**14, r=8, p=1 (16 MiB, ~50 ms on a POS-class CPU), a 16-byte random salt
and a 32-byte output. A 6-digit PIN has only a million values, so the slowness is what protects a
leaked configuration image; the lockout is what protects the device itself. Parameters below
n=2**14 / r=8 are refused so a weak image cannot be flashed, and parameters above the ceilings
are refused so a hostile image cannot make every PIN check eat the device's memory.

The lockout is pure: `Lockout` is the persisted state, `after_failure` / `is_locked` are the rules;
the service keeps the state in its journal so switching the POS off and on does not reset the count.
Every attempt is charged as a failure *before* its hash runs (a right PIN then clears the count), so
guesses sent in parallel cannot all slip in before the first one is judged: `AttemptCounter` counts
an attempt in memory the instant it arrives (under a lock held for microseconds, never across I/O)
and journals the count before the caller may hash. Each lockout lasts twice
the one before (`lockout_s`, 5 min by default, doubling to at most 24 h) until a right PIN or an
administrator's reset on the device clears it.

At most one scrypt runs at a time in the whole process (`_HASH_SLOT`): each needs 16 MiB or more,
and a burst of attempts must queue, not multiply the POS's memory use.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from protocol.errors import CodedError

log = logging.getLogger("terminal.pin")

SCHEME = "scrypt"
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_N, MAX_N = 2**14, 2**20
MIN_R, MAX_R = 8, 32
MAX_P = 16
# PINs are digits only (the POS keypad), 6 to 12 of them: a million values at least, which the
# escalating lockout below makes take centuries to try online.
MIN_DIGITS, MAX_DIGITS = 6, 12
PIN_RE = re.compile(r"[0-9]{%d,%d}" % (MIN_DIGITS, MAX_DIGITS), re.ASCII)

# Wrong PINs allowed before the lockout, and how long the first lockout lasts. Config may override
# both. Every further lockout lasts twice the previous one, up to LOCKOUT_CAP_S.
DEFAULT_MAX_TRIES = 5
DEFAULT_LOCKOUT_S = 300
LOCKOUT_CAP_S = 24 * 3600

# One scrypt at a time in this process (see the module docstring).
_HASH_SLOT = threading.Lock()


class PinHashError(CodedError, ValueError):
    """A PIN hash string is malformed or uses parameters we refuse; the message says which."""

    code = "bad_pin_hash"


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
    with _HASH_SLOT:
        return hashlib.scrypt(pin.encode("ascii"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=256 * n * r * p + 2**20)


def check_pin_format(pin: object) -> str:
    if not isinstance(pin, str) or PIN_RE.fullmatch(pin) is None:
        raise ValueError(f"a PIN is {MIN_DIGITS} to {MAX_DIGITS} digits (0-9)")
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
        pin = "0" * MIN_DIGITS
        candidate = _derive(pin, stored.salt, stored.n, stored.r, stored.p, len(stored.digest))
        hmac.compare_digest(candidate, stored.digest)
        return False
    candidate = _derive(pin, stored.salt, stored.n, stored.r, stored.p, len(stored.digest))
    return hmac.compare_digest(candidate, stored.digest)


@dataclass(frozen=True, slots=True)
class Lockout:
    """Persisted wrong-PIN state: failures since the last lockout (or right PIN), until when the PIN
    is locked (unix s), and how many lockouts came before (each one doubles the next)."""

    failures: int = 0
    locked_until: float = 0.0
    lockouts: int = 0

    def encode(self) -> str:
        return f"{self.failures},{self.locked_until!r},{self.lockouts}"

    @classmethod
    def decode(cls, text: str) -> "Lockout":
        """The journal's form; the two-field form of earlier versions reads as no lockout served."""
        parts = text.split(",")
        if len(parts) == 2:
            return cls(int(parts[0]), float(parts[1]))
        failures, until, lockouts = parts
        return cls(int(failures), float(until), int(lockouts))


def is_locked(state: Lockout, now: float) -> bool:
    return now < state.locked_until


def lockout_duration(lockouts_before: int, lockout_s: float) -> float:
    """How long the next lockout lasts: lockout_s, then doubling, never more than LOCKOUT_CAP_S."""
    return float(min(lockout_s * 2 ** min(lockouts_before, 32), LOCKOUT_CAP_S))


def after_failure(state: Lockout, now: float, *, max_tries: int, lockout_s: float) -> Lockout:
    failures = state.failures + 1
    if failures >= max_tries:  # the count starts again once the lockout is served; the next one is longer
        return Lockout(0, now + lockout_duration(state.lockouts, lockout_s), state.lockouts + 1)
    return Lockout(failures, state.locked_until, state.lockouts)


def tries_left(state: Lockout, max_tries: int) -> int:
    return max(0, max_tries - state.failures)


class AttemptCounter:
    """The wrong-PIN state of one PIN (the supervisor's, the admin's) for a running service.

    `charge()` counts an attempt at once in memory, then journals the newest state (`save`), and
    only then lets the caller hash; so a crash after the hash never forgets the attempt, and the
    6th of 30 simultaneous guesses is refused as locked however slow the journal's fsync is.
    Journal writes are ordered (each saves the newest state), so the journal never goes back.
    """

    def __init__(self, load: Callable[[], Lockout], save: Callable[[Lockout], None], clock: Callable[[], float], *,
                 max_tries: int, lockout_s: float) -> None:
        self._load, self._save, self._clock = load, save, clock
        self.max_tries, self.lockout_s = max_tries, lockout_s
        self._lock = threading.Lock()  # the in-memory state; never held across I/O
        self._save_lock = threading.Lock()  # journal writes, in order
        self._state: Lockout | None = None

    def state(self) -> Lockout:
        with self._lock:
            if self._state is None:
                self._state = self._load()
            return self._state

    def charge(self) -> Lockout | None:
        """Count an attempt as a failure before it is checked. Returns the state that refuses it
        (locked), or None: go on and check the PIN (a right one then calls `clear`)."""
        state = self.state()
        with self._lock:
            state = self._state if self._state is not None else state
            if is_locked(state, self._clock()):
                return state
            self._state = after_failure(state, self._clock(), max_tries=self.max_tries, lockout_s=self.lockout_s)
        self._persist()
        return None

    def clear(self) -> None:
        """A right PIN, or an administrator's reset: no failures, no lockout, no escalation."""
        self.state()
        with self._lock:
            self._state = Lockout()
        self._persist()

    def _persist(self) -> None:
        with self._save_lock:
            with self._lock:
                newest = self._state
            assert newest is not None
            self._save(newest)


class PinCheck(enum.Enum):
    RIGHT = "right"
    WRONG = "wrong"
    WRONG_NOW_LOCKED = "wrong_now_locked"  # this wrong PIN started a lockout
    LOCKED = "locked"  # refused before its hash ran: the PIN is locked


@dataclass(frozen=True, slots=True)
class PinVerdict:
    check: PinCheck
    state: Lockout  # the PIN's lockout state after this attempt
    tries_left: int


class PinDesk:
    """The PINs of a running service by name ("supervisor", "admin"), each with its own wrong-PIN
    count (AttemptCounter) under the same lockout settings. `check` counts the attempt, runs the
    slow hash and clears the count on a right PIN: call it outside any service lock, so attempts
    queue at the hash, not behind the service. A PIN without a hash (no admin PIN configured) is
    never right."""

    def __init__(self, load: Callable[[str], Lockout], save: Callable[[str, Lockout], None], clock: Callable[[], float], *,
                 hashes: Mapping[str, PinHash | None], max_tries: int, lockout_s: float) -> None:
        self._hashes = dict(hashes)
        self._clock = clock
        self.max_tries = max_tries
        self._counters = {key: AttemptCounter(self._loader(load, key), self._saver(save, key), clock,
                                              max_tries=max_tries, lockout_s=lockout_s) for key in self._hashes}

    @staticmethod
    def _loader(load: Callable[[str], Lockout], key: str) -> Callable[[], Lockout]:
        return lambda: load(key)

    @staticmethod
    def _saver(save: Callable[[str, Lockout], None], key: str) -> Callable[[Lockout], None]:
        return lambda state: save(key, state)

    def state(self, key: str) -> Lockout:
        return self._counters[key].state()

    def check(self, key: str, pin: object) -> PinVerdict:
        counter = self._counters[key]
        locked = counter.charge()
        if locked is not None:
            return PinVerdict(PinCheck.LOCKED, locked, 0)
        stored = self._hashes[key]
        if stored is not None and verify_pin(pin, stored):  # slow on purpose, one at a time
            counter.clear()
            return PinVerdict(PinCheck.RIGHT, Lockout(), self.max_tries)
        state = counter.state()
        if is_locked(state, self._clock()):
            log.warning("wrong %s PIN: locked until %s", key, time.strftime("%H:%M:%S", time.localtime(state.locked_until)))
            return PinVerdict(PinCheck.WRONG_NOW_LOCKED, state, 0)
        log.warning("wrong %s PIN (%d of %d)", key, state.failures, self.max_tries)
        return PinVerdict(PinCheck.WRONG, state, tries_left(state, self.max_tries))

    def reset(self, key: str) -> None:
        """An administrator's reset: no failures, no lockout, no escalation."""
        self._counters[key].clear()
