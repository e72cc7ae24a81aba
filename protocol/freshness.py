"""Freshness rules as pure functions: the clock window and the msg_id replay/idempotency rule.

The clock and the store of seen msg_ids are passed in, so the rules are testable without either.
The bridge and the terminal back `SeenStore` with their SQLite journals; `MemorySeenStore` is the
reference implementation (and what the tests and the vectors use).
"""

from __future__ import annotations

import enum
import hmac
import math
import time
from dataclasses import dataclass
from typing import Protocol

from protocol.errors import ErrorCode, ProtocolError

DEFAULT_SKEW_S = 300  # his-interface-v1: +-300 s, configurable
DEFAULT_ANSWER_TTL_S = 24 * 3600  # stored answers are kept at least this long
# His-interface 1.1 C: an instruction's expires_at may be at most this long after its ts.
MAX_INSTRUCTION_TTL_S = 86_400


class Verdict(enum.Enum):
    NEW = "new"  # never seen: execute it
    RETRY = "retry"  # the identical envelope again: answer with what is stored, execute nothing


@dataclass(frozen=True, slots=True)
class SeenRecord:
    digest: bytes  # Envelope.digest() of the envelope first accepted under this msg_id
    first_seen: float  # receiver clock, unix seconds


class SeenStore(Protocol):
    def seen(self, kid: str, msg_id: str) -> SeenRecord | None: ...


class MemorySeenStore:
    """A dict-backed SeenStore (reference implementation; not persistent)."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], SeenRecord] = {}

    def seen(self, kid: str, msg_id: str) -> SeenRecord | None:
        return self._records.get((kid, msg_id))

    def remember(self, kid: str, msg_id: str, digest: bytes, now: float) -> None:
        self._records.setdefault((kid, msg_id), SeenRecord(digest, now))


def _clock_text(now: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.floor(now)))
    return f"{math.floor(now)} ({stamp})"


def check_clock(ts: int, now: float, skew_s: int = DEFAULT_SKEW_S) -> None:
    """Refuse `ts` outside now +- skew_s, with a message that states the receiver's clock.

    `ts` is whole seconds, so the window is too: the receiver's clock is read as whole seconds
    (floor) first, so `ts = now - 300` is accepted whatever the fraction, and the message states
    the real offset (a refused +301 says +301)."""
    offset = ts - math.floor(now)
    if abs(offset) > skew_s:
        raise ProtocolError(
            ErrorCode.CLOCK_SKEW,
            f"ts {ts} is {offset:+d} s from this receiver's clock {_clock_text(now)}; "
            f"allowed is +-{skew_s} s: synchronise the clocks",
        )


def check_result_clock(ts: int, now: float, skew_s: int, instruction_ts: int | None) -> None:
    """A result may be read long after it was sealed; it must not come from the future nor predate
    the instruction it answers."""
    offset = ts - math.floor(now)
    if offset > skew_s:
        raise ProtocolError(
            ErrorCode.CLOCK_SKEW,
            f"result ts {ts} is {offset:+d} s ahead of this receiver's clock {_clock_text(now)}; "
            f"allowed is +{skew_s} s: synchronise the clocks",
        )
    if instruction_ts is not None and ts < instruction_ts - skew_s:
        raise ProtocolError(
            ErrorCode.CLOCK_SKEW,
            f"result ts {ts} is {instruction_ts - ts} s before its instruction's ts {instruction_ts}",
        )


def check_expiry(expires_at: int, ts: int, now: float, skew_s: int = DEFAULT_SKEW_S) -> None:
    """An instruction's own expires_at (1.1 C), as its receiver meets it: not more than a day after
    its ts (bad_envelope), and not already past with the skew (expired_undelivered: nothing reached
    a POS, so HIS may send the order again under a new msg_id)."""
    if expires_at > ts + MAX_INSTRUCTION_TTL_S:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"instruction.expires_at {expires_at} is more than "
                            f"{MAX_INSTRUCTION_TTL_S} s after its ts {ts}: nothing may wait that long")
    whole = math.floor(now)
    if expires_at + skew_s < whole:
        raise ProtocolError(ErrorCode.EXPIRED_UNDELIVERED,
                            f"instruction.expires_at {expires_at} has passed (receiver clock {whole}, allowed skew "
                            f"{skew_s} s): nothing was sent to a POS; send the order again with a later expires_at "
                            "under a new msg_id")


def classify(store: SeenStore, kid: str, msg_id: str, digest: bytes, now: float, answer_ttl_s: float) -> Verdict:
    """Apply the msg_id rule: NEW, RETRY (identical envelope, stored answer still kept), or raise
    msg_id_conflict (a different envelope) / replay (the stored answer has expired)."""
    record = store.seen(kid, msg_id)
    if record is None:
        return Verdict.NEW
    if now > record.first_seen + answer_ttl_s:
        raise ProtocolError(
            ErrorCode.REPLAY,
            f"msg_id {msg_id!r} was used {int(now - record.first_seen)} s ago and its answer has expired; "
            "use a new msg_id",
        )
    if not hmac.compare_digest(record.digest, digest):
        raise ProtocolError(
            ErrorCode.MSG_ID_CONFLICT,
            f"msg_id {msg_id!r} was already used for a different envelope; a retry must resend the "
            "identical envelope, new work needs a new msg_id",
        )
    return Verdict.RETRY
