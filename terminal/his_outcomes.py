"""Outcomes HIS can act on, on the POS (his-interface 1.1 C): expiry, withdrawal, decline events.

    expiry_for(instruction_expires_at, link_expires_at, envelope_ts) -> int   the bound to journal
    Outcomes(journal).record(tx, seq, expires_at) / withdraw(tx, seq)        in the caller's commit
    Outcomes(journal).due(row, bridge_now) -> Ending | None                  what to do about it now
    Outcomes(journal).named_by(cancel_envelope, config, now) -> row | None    what a withdrawal names
    Outcomes(journal).mark_withdrawn(row) -> bool                             journal it (once)
    progress_event(row, at) -> ProgressEvent | None                          the 202's last_event

What it owns: when an instruction stops waiting for a person. Its expiry is the plaintext's
`expires_at`, else the one the bridge relayed with it (its configured default), else the
envelope's ts plus DEFAULT_TTL_S (an older bridge); never later than ts + MAX_TTL_S. Both are kept
in the journal's meta table (`expires:<seq>`, `withdrawn:<seq>`), written in the commit that
accepts the instruction (or the withdrawal), so they survive restarts.

Rules (clock: the bridge-synchronised one, Lifecycle.result_time):
- past expiry or withdrawn, an instruction that waits for a person (QUEUED, AWAITING_SCAN, DECLINED,
  AWAITING_SUPERVISOR) ends with a signed CLOSED (a refund: REFUND_FAILED), error_code `expired` or
  `withdrawn`; no payment and no refund starts after expiry (`blocked`);
- a payment under way (PAYING, CONFIRMING, REVERSING) is never interrupted: it settles, and its
  result says what happened (SUCCESS stays SUCCESS: a withdrawal never undoes a collection); if it
  ends declined, the instruction is then ended as above;
- a withdrawal while the patient confirms on the phone (USER_PAYING) reverses that payment, as the
  cashier's cancel does; a refund under way (REFUNDING) settles.
The terminal service calls `due` after every change and from its deadline thread; the transitions
themselves are terminal.machine's CLOSE / CLOSE_REFUND / CANCEL.
"""

from __future__ import annotations

import enum
import logging
import threading
from dataclasses import dataclass
from typing import Callable

from protocol.envelope import Envelope, receive_cancel
from protocol.errors import ProtocolError
from protocol.freshness import MAX_INSTRUCTION_TTL_S
from protocol.link.app import MAX_EVENT_MESSAGE, ProgressEvent
from protocol.messages import Cancel, ResultCode
from terminal.config import DeviceConfig
from terminal.journal import InstructionRow, Journal, PowerLostAtCommit, Tx
from terminal.machine import Event, Kind, State
from terminal.texts import reason_text

log = logging.getLogger("terminal.his_outcomes")

# Without a bound from HIS or the bridge (an older bridge), an instruction waits this long after its ts.
DEFAULT_TTL_S = 600
# The latest bound HIS may set, after the instruction's ts (the bridge refuses later ones).
MAX_TTL_S = MAX_INSTRUCTION_TTL_S
# The deadline thread looks again at least this often (a bound may arrive between two looks).
RECHECK_S = 30.0
# States in which nothing is under way with the channel: an ending may happen at once.
WAITING = frozenset({State.QUEUED, State.AWAITING_SCAN, State.DECLINED, State.AWAITING_SUPERVISOR})


class Why(str, enum.Enum):
    EXPIRED = ResultCode.EXPIRED.value
    WITHDRAWN = ResultCode.WITHDRAWN.value


@dataclass(frozen=True, slots=True)
class Ending:
    """Apply `event` to the instruction in `state` with `reason` (the result's error_code)."""

    event: Event
    state: State
    reason: str


def expiry_for(instruction_expires_at: int | None, link_expires_at: int | None, envelope_ts: int) -> int:
    chosen = instruction_expires_at or link_expires_at or envelope_ts + DEFAULT_TTL_S
    return min(chosen, envelope_ts + MAX_TTL_S)


def progress_event(row: InstructionRow, at: int) -> ProgressEvent | None:
    """What HIS's operator should learn while the cashier may scan again: why the last code was
    declined (the code of the FAILED result that cancelling now would give)."""
    if row.state is not State.DECLINED or row.last_error_code is None:
        return None
    text = reason_text(row.last_error_code)
    message = row.last_error_message or (text.en if text else row.last_error_code)
    return ProgressEvent(row.last_error_code, message[:MAX_EVENT_MESSAGE], at)


class Outcomes:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    @staticmethod
    def record(tx: Tx, seq: int, expires_at: int) -> None:
        tx.set_meta(f"expires:{seq}", str(expires_at))

    @staticmethod
    def withdraw(tx: Tx, seq: int) -> None:
        tx.set_meta(f"withdrawn:{seq}", "1")

    def expires_at(self, row: InstructionRow) -> int:
        text = self.journal.meta(f"expires:{row.seq}")
        return int(text) if text is not None else expiry_for(None, None, row.envelope_ts)

    def withdrawn(self, row: InstructionRow) -> bool:
        return self.journal.meta(f"withdrawn:{row.seq}") is not None

    def expired(self, row: InstructionRow, bridge_now: float) -> bool:
        return bridge_now > self.expires_at(row)

    def blocked(self, row: InstructionRow, bridge_now: float) -> bool:
        """No payment or refund may start now (expired or withdrawn)."""
        return self.withdrawn(row) or self.expired(row, bridge_now)

    def due(self, row: InstructionRow, bridge_now: float) -> Ending | None:
        if row.state is State.FINISHED:
            return None
        withdrawn = self.withdrawn(row)
        why = Why.WITHDRAWN if withdrawn else Why.EXPIRED if self.expired(row, bridge_now) else None
        if why is None:
            return None
        if row.state in WAITING:
            return Ending(Event.CLOSE if row.kind is Kind.COLLECT else Event.CLOSE_REFUND, row.state, why.value)
        if withdrawn and row.state is State.USER_PAYING:
            return Ending(Event.CANCEL, row.state, why.value)  # reverse it; REVERSED -> CLOSED, withdrawn
        return None  # under way: it settles first

    def named_by(self, envelope: Envelope, config: DeviceConfig, now: float) -> InstructionRow | None:
        """The instruction a sealed `cancel` from HIS withdraws, or None (logged): it does not open or
        verify, or names no instruction of that terminal and order on this POS."""
        try:
            received = receive_cancel(envelope, config.keys, now=now, skew_s=config.instruction_skew_s,
                                      his_signature=config.his_signature)
        except ProtocolError as exc:
            log.warning("withdrawal of %s refused: %s: %s", envelope.reply_to, exc.code.value, exc.message)
            return None
        cancel = received.message
        row = self.journal.find(envelope.kid, str(envelope.reply_to)) or self.journal.find_msg_id(str(envelope.reply_to))
        if row is None or not isinstance(cancel, Cancel) or (row.terminal_id, row.order_no) != (cancel.terminal_id, cancel.order_no):
            log.warning("withdrawal of %s ignored: no such instruction for that terminal and order here", envelope.reply_to)
            return None
        return row

    def mark_withdrawn(self, row: InstructionRow) -> bool:
        """Journal that HIS withdrew `row`; False if it is finished or was withdrawn already."""
        if row.state is State.FINISHED or self.withdrawn(row):
            return False
        with self.journal.transaction(f"{row.kind.value}:withdrawn") as tx:
            self.withdraw(tx, row.seq)
        log.info("order %s: instruction %s withdrawn by HIS (%s)", row.order_no, row.msg_id, row.state.value)
        return True

    def next_deadline(self, rows: list[InstructionRow]) -> float | None:
        """The earliest expiry among instructions still waiting for a person (bridge clock)."""
        waiting = [self.expires_at(row) for row in rows if row.state in WAITING]
        return min(waiting) if waiting else None


class DeadlineWatcher:
    """A thread that sleeps until the next expiry (`seconds_to_next()`, None: nothing waits) or
    RECHECK_S, then calls `check()`; `wake()` after a new instruction, `stop()` at the end."""

    def __init__(self, seconds_to_next: Callable[[], float | None], check: Callable[[], object]) -> None:
        self._seconds_to_next = seconds_to_next
        self._check = check
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="terminal-deadlines", daemon=True)

    def start(self) -> "DeadlineWatcher":
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping:
            try:
                left = self._seconds_to_next()
            except Exception:  # a journal problem: look again later
                log.exception("deadline check failed")
                left = None
            self._wake.wait(RECHECK_S if left is None else min(RECHECK_S, max(0.0, left + 1)))
            self._wake.clear()
            if self._stopping:
                return
            try:
                self._check()
            except PowerLostAtCommit:  # the service lost power: this thread ends with it
                return
            except Exception:
                log.exception("deadline check failed")
