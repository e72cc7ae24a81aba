"""The journaled lifecycle: each method commits one transition (machine.step) with its writes.

Synchronous and single-threaded: `terminal.service` calls it under its lock, does the I/O (channel
calls, outbox, screens) around it. Every method commits BEFORE the service acts on what it returns:
`begin_attempt` commits "about to pay with out_trade_no X" and only then is X sent to the channel;
`confirm_supervisor` reserves the refund amount and only then is the refund requested.

Results are sealed here, once, with `protocol.envelope.seal_result` under the instruction's kid and
signed with the device's own key (his-interface 1.1 A), and stored with the FINISHED transition in
the same commit: a finished instruction always has its result, and re-sending it sends the
identical bytes. A refusal (unknown_terminal, bad_amount, clock_skew, a missing his_sig, ...) is
such a result too: the instruction is journaled and finished in one commit (`Refused`). Only what
cannot be sealed for HIS at all (the envelope does not open with this device's keys; its msg_id
clashes with another envelope) is `NotTaken`: nothing is journaled and nothing ends.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Callable

from protocol.amount import format_yuan
from protocol.crypto import SharedKey
from protocol.envelope import Envelope, open_for_refusal, parse_envelope, receive_instruction, seal_result, sign_envelope
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import MAX_ERROR_MESSAGE, Instruction, PayChannel, PayStatus, Result, ResultCode
from terminal import machine
from terminal.channels.base import PayOutcome, RefundOutcome
from terminal.bridge_clock import BridgeClock
from terminal.config import DeviceConfig
from terminal.his_outcomes import Outcomes, expiry_for
from terminal.journal import AttemptRow, InstructionRow, Journal, ResultRow, StaleState, Tx
from terminal.machine import Event, Kind, State
from terminal.pin import Lockout
from terminal.texts import reason_text

log = logging.getLogger("terminal.lifecycle")

# A cashier may re-scan after declines; past this many attempts the instruction must be cancelled
# (out_trade_no carries the attempt number in two digits).
MAX_ATTEMPTS = 20


def out_trade_no(device_id: str, row: InstructionRow, attempt_no: int) -> str:
    """The channel order number of one attempt (29 characters: WeChat allows 32, Alipay 64).

    Derived from the journaled instruction: device, kid, msg_id and the instruction's random salt.
    The salt matters: HIS may reuse a msg_id once 24 h have passed, and a device may be re-provisioned
    with an empty journal; without it the channel would answer about an older order (ORDERPAID /
    OUT_TRADE_NO_USED) and its query would "confirm" a payment that belongs to someone else."""
    digest = hashlib.sha256(f"pay|{device_id}|{row.kid}|{row.msg_id}|{row.salt}".encode()).hexdigest()[:26]
    return f"P{digest}{attempt_no:02d}"


def out_refund_no(device_id: str, row: InstructionRow) -> str:
    """The idempotent refund number of a refund instruction: the same journaled instruction always
    asks the channel for the same refund, so a repeated call can never refund twice (32 characters)."""
    return "R" + hashlib.sha256(f"refund|{device_id}|{row.kid}|{row.msg_id}|{row.salt}".encode()).hexdigest()[:31]


@dataclass(frozen=True, slots=True)
class Accepted:
    seq: int


@dataclass(frozen=True, slots=True)
class Repeat:
    """The identical envelope again: answer from storage, execute nothing."""

    row: InstructionRow
    result: ResultRow | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an instruction is refused (a spec error code and words for people)."""

    msg_id: str
    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class Refused:
    """Refused, journaled and finished with a sealed, signed FAILED / REFUND_FAILED result."""

    refusal: Refusal
    change: "Change"


@dataclass(frozen=True, slots=True)
class NotTaken:
    """Cannot be answered with a sealed result: the bridge keeps the instruction unfinished."""

    refusal: Refusal


@dataclass(frozen=True, slots=True)
class Change:
    """A committed transition (or a no-op self-loop when before == after)."""

    seq: int
    before: State
    after: State
    result: ResultRow | None = None


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= MAX_ERROR_MESSAGE else text[: MAX_ERROR_MESSAGE - 1] + "…"


# States whose money work the worker does with nobody at the screen: the screen moves on meanwhile.
BACKGROUND = frozenset({State.REFUNDING, State.REFUND_CONFIRMING})


class Lifecycle:
    def __init__(self, config: DeviceConfig, journal: Journal, *, clock: Callable[[], float], rng: Callable[[int], bytes],
                 device_key_seed: bytes, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.journal = journal
        self.clock = clock
        self.rng = rng
        self._device_key_seed = device_key_seed  # signs every result (1.1 A); never logged, never leaves
        # The bridge's clock, heard at link-up and with every instruction, carried forward on the
        # monotonic clock (terminal.bridge_clock): results are stamped with it, so a step of this
        # device's wall clock cannot strand a result it already took money for (issue 14, finding 1).
        # The device's own instruction window stays on its own clock.
        self.bridge_clock = BridgeClock(monotonic)

    @property
    def bridge_offset_s(self) -> float | None:
        """This device's clock minus the bridge's, now (None: no bridge heard since boot)."""
        return self.bridge_clock.offset(self.clock())

    def result_time(self, now: float, row: InstructionRow | None = None) -> int:
        """The bridge's time at device time `now` (as this device last heard it, carried on the
        monotonic clock; its own clock if it heard none since boot). With `row`: the ts (and
        finished_at) of a result for that instruction, never before the instruction's own ts."""
        if row is not None:
            return self.bridge_clock.stamp(now, row.envelope_ts, row.received_at)
        bridge = self.bridge_clock.now()
        return int(now if bridge is None else bridge)

    def clock_refusal(self, msg_id: str) -> Refusal | None:
        """Refuse new work when this clock is further off the bridge's than the device's own
        instruction window: its freshness check would mean nothing."""
        offset = self.bridge_offset_s
        if offset is None or abs(offset) <= self.config.instruction_skew_s:
            return None
        return Refusal(msg_id, ErrorCode.CLOCK_SKEW,
                       f"the POS clock is {offset:+.0f} s off the bridge clock (more than its {self.config.instruction_skew_s} s "
                       "window): set the POS clock (network time), then send the instruction again with a new msg_id")

    # -- arrival --------------------------------------------------------------------------------
    def accept(self, envelope: Envelope, link_expires_at: int | None = None) -> Accepted | Repeat | Refused | NotTaken:
        """Step 4: decrypt and check (the protocol's order of checks), then journal the instruction
        with its expiry (terminal.his_outcomes: the plaintext's, else the bridge's `link_expires_at`)."""
        now = self.clock()
        cfg = self.config
        try:
            received = receive_instruction(envelope, cfg.keys, now=now, skew_s=cfg.instruction_skew_s, limit_fen=cfg.limit_fen,
                                           seen=self.journal, answer_ttl_s=cfg.msg_id_memory_s, his_signature=cfg.his_signature)
        except ProtocolError as exc:
            refusal = Refusal(envelope.msg_id, exc.code, exc.message)
            if exc.code is ErrorCode.CLOCK_SKEW:
                refusal = self.clock_refusal(envelope.msg_id) or refusal
            return self._refuse(envelope, refusal, now)
        if received.message is None:
            row = self.journal.find(envelope.kid, envelope.msg_id)
            if row is None:  # seen but never journaled cannot happen (one transaction); be explicit anyway
                return NotTaken(Refusal(envelope.msg_id, ErrorCode.INTERNAL_ERROR, "msg_id known but its instruction is missing"))
            return Repeat(row, self.journal.result_for(row.seq))
        instruction = received.message
        assert isinstance(instruction, Instruction)
        refusal = self.clock_refusal(envelope.msg_id)
        if refusal is None and not cfg.has_terminal(instruction.terminal_id):
            refusal = Refusal(envelope.msg_id, ErrorCode.UNKNOWN_TERMINAL,
                              f"terminal {instruction.terminal_id!r} is not provisioned on device {cfg.device.device_id}")
        if refusal is not None:
            return self._refuse(envelope, refusal, now)
        kind = Kind.of(instruction.amount)
        with self.journal.transaction(f"{kind.value}:new->queued") as tx:
            tx.remember(envelope.kid, envelope.msg_id, envelope.digest(), now)
            seq = tx.add_instruction(kid=envelope.kid, msg_id=envelope.msg_id, envelope_ts=envelope.ts,
                                     terminal_id=instruction.terminal_id, order_no=instruction.order_no, kind=kind,
                                     amount_fen=instruction.amount.fen, display=instruction.display, now=now,
                                     salt=self.rng(8).hex(), envelope=envelope.to_bytes() if kind is Kind.REFUND else None)
            Outcomes.record(tx, seq, expiry_for(instruction.expires_at, link_expires_at, envelope.ts))
        return Accepted(seq)

    def _refuse(self, envelope: Envelope, refusal: Refusal, now: float) -> Refused | NotTaken | Repeat:
        """Journal and finish a refused instruction in one commit, with a sealed, signed result;
        NotTaken when no result can be sealed for it."""
        if refusal.code in (ErrorCode.MSG_ID_CONFLICT, ErrorCode.REPLAY):
            return NotTaken(refusal)  # another envelope owns this msg_id here: a result would answer it twice
        known = self.journal.find(envelope.kid, envelope.msg_id)
        if known is not None:  # refused before (a his_sig is checked before the msg_id rule)
            seen = self.journal.seen(envelope.kid, envelope.msg_id)
            if seen is not None and hmac.compare_digest(seen.digest, envelope.digest()):
                return Repeat(known, self.journal.result_for(known.seq))
            if seen is None:  # forgotten long ago, but its row stays: no second row under that msg_id
                return NotTaken(refusal)
            return NotTaken(Refusal(envelope.msg_id, ErrorCode.MSG_ID_CONFLICT,
                                    f"msg_id {envelope.msg_id!r} was already used for a different envelope on this device"))
        opened = open_for_refusal(envelope, self.config.keys)
        if opened is None:
            return NotTaken(refusal)
        order_no, amount = opened
        kind = Kind.of(amount)
        event = Event.REFUSE if kind is Kind.COLLECT else Event.REFUSE_REFUND
        after, status = machine.step(kind, State.QUEUED, event)
        with self.journal.transaction(f"{kind.value}:new->refused") as tx:
            tx.remember(envelope.kid, envelope.msg_id, envelope.digest(), now)
            seq = tx.add_instruction(kid=envelope.kid, msg_id=envelope.msg_id, envelope_ts=envelope.ts,
                                     terminal_id=envelope.terminal_id, order_no=order_no, kind=kind, amount_fen=amount.fen,
                                     display=None, now=now, salt=self.rng(8).hex())
            row = self.journal.instruction(seq)
            assert status is not None
            # A clock_skew refusal means this clock is not to be trusted (and the offset measured at
            # link up may be stale): the result is stamped with the instruction's own ts, which passed
            # the bridge's window, so the bridge and HIS accept it (not in the future, not before it).
            stamp = envelope.ts if refusal.code is ErrorCode.CLOCK_SKEW else None
            result = self._finish(tx, row, event, status, None, now, pay=None, refund=None, reason=refusal.code.value,
                                  fields={}, detail=refusal.message, stamp=stamp)
        return Refused(refusal, Change(seq, State.QUEUED, after, result))

    def forget_old_msg_ids(self) -> int:
        """Drop msg_id records no envelope could still match: older than memory + clock window."""
        cutoff = self.clock() - self.config.msg_id_memory_s - self.config.instruction_skew_s
        with self.journal.transaction("seen:purge") as tx:
            return tx.forget_seen_before(cutoff)

    # -- deciding without the cashier -------------------------------------------------------------
    def immediate(self, row: InstructionRow) -> tuple[Event, str | None] | None:
        """Decisions that need nobody: a '+' for an order already collected, a '-' that cannot be
        honoured. None when the instruction must be shown to the cashier."""
        collection = self.journal.collection(row.order_no)
        if row.kind is Kind.COLLECT:
            if collection is None:
                return None
            same = collection.paid_fen == row.amount_fen
            return (Event.DUPLICATE if same else Event.DUPLICATE_OTHER_AMOUNT), ResultCode.DUPLICATE_ORDER.value
        if collection is None:
            return Event.NOT_REFUNDABLE, ResultCode.ORDER_NOT_PAID.value
        if row.amount_fen > collection.paid_fen - self.journal.committed_refunds_fen(row.order_no):
            return Event.NOT_REFUNDABLE, ResultCode.REFUND_EXCEEDS_REMAINING.value
        return None

    def decide_on_arrival(self, seq: int) -> Change | None:
        """Answer at once if nothing else is open for the same order (otherwise the instruction waits
        its turn: that is what serialises instructions per order)."""
        row = self.journal.instruction(seq)
        if [other for other in self.journal.unfinished_for_order(row.order_no) if other.seq != seq]:
            return None
        decision = self.immediate(row)
        if decision is None:
            return None
        return self.apply(seq, State.QUEUED, decision[0], reason=decision[1])

    def head(self) -> InstructionRow | None:
        """The instruction on the screen: the earliest unfinished one that needs the cashier. One whose
        money work runs without anyone (a refund at the channel, waiting for its query) does not hold
        the next patient, nor does one handed to a person (issue 17: a bounced refund may wait days);
        an instruction for that same order waits for it (issue 14, finding 9)."""
        busy: set[str] = set()
        for row in self.journal.unfinished():
            if row.state in BACKGROUND or row.state in machine.NEEDS_PERSON:
                busy.add(row.order_no)
            elif row.order_no not in busy:
                return row
        return None

    def activate(self) -> list[Change]:
        """Bring the head forward: answer it at once if possible, else show it to the cashier."""
        changes: list[Change] = []
        while (head := self.head()) is not None and head.state is State.QUEUED:
            decision = self.immediate(head)
            if decision is not None:
                change = self.apply(head.seq, State.QUEUED, decision[0], reason=decision[1])
            else:
                event = Event.SHOW if head.kind is Kind.COLLECT else Event.ASK_SUPERVISOR
                change = self.apply(head.seq, State.QUEUED, event)
            if change is None:
                break
            changes.append(change)
            if change.after is not State.FINISHED:
                break
        return changes

    # -- the cashier ----------------------------------------------------------------------------
    def begin_attempt(self, seq: int, expect: State, channel: PayChannel, code_masked: str, deadline_s: float) -> AttemptRow:
        """Commit "about to pay": a new attempt with a new out_trade_no. Raises StaleState."""
        row = self.journal.instruction(seq)
        machine.step(row.kind, expect, Event.SCAN)
        attempts = self.journal.attempts(seq)
        attempt_no = len(attempts) + 1
        if attempt_no > MAX_ATTEMPTS:
            raise StaleState(f"instruction {seq} has had {MAX_ATTEMPTS} attempts; cancel it")
        now = self.clock()
        number = out_trade_no(self.config.device.device_id, row, attempt_no)
        with self.journal.transaction(f"collect:{expect.value}->paying") as tx:
            tx.add_attempt(seq=seq, out_trade_no=number, attempt_no=attempt_no, channel=channel, code_masked=code_masked,
                           now=now, deadline=now + deadline_s)
            tx.advance(seq, expect, State.PAYING, now, channel=channel)
        attempt = self.journal.current_attempt(seq)
        assert attempt is not None
        return attempt

    def confirm_supervisor(self, seq: int) -> Change | None:
        """The PIN was right: reserve the amount (never beyond what remains), then REFUNDING."""
        row = self.journal.instruction(seq)
        if row.state is not State.AWAITING_SUPERVISOR:
            return None
        collection = self.journal.collection(row.order_no)
        if collection is None:
            return self.apply(seq, State.AWAITING_SUPERVISOR, Event.NOT_REFUNDABLE, reason=ResultCode.ORDER_NOT_PAID.value)
        now = self.clock()
        number = out_refund_no(self.config.device.device_id, row)
        with self.journal.transaction("refund:awaiting_supervisor->refunding") as tx:
            if tx.reserve_refund(out_refund_no=number, seq=seq, order_no=row.order_no, refund_fen=row.amount_fen, now=now):
                tx.advance(seq, State.AWAITING_SUPERVISOR, State.REFUNDING, now, channel=collection.channel)
                return Change(seq, State.AWAITING_SUPERVISOR, State.REFUNDING)
        return self.apply(seq, State.AWAITING_SUPERVISOR, Event.NOT_REFUNDABLE, reason=ResultCode.REFUND_EXCEEDS_REMAINING.value)

    def lockout(self, key: str) -> Lockout:
        text = self.journal.meta(f"pin_lockout:{key}")
        return Lockout() if text is None else Lockout.decode(text)

    def save_peer_mark(self, key: str, mark: int) -> None:
        with self.journal.transaction("peer_mark") as tx:
            tx.set_meta(key, str(mark))

    def save_lockout(self, key: str, state: Lockout) -> None:
        with self.journal.transaction(f"pin:{key}") as tx:
            tx.set_meta(f"pin_lockout:{key}", state.encode())

    def mark_delivered(self, result_msg_id: str) -> bool:
        with self.journal.transaction("result:delivered") as tx:
            return tx.mark_delivered(result_msg_id, self.clock())

    # -- transitions ----------------------------------------------------------------------------
    def apply(self, seq: int, expect: State, event: Event, *, pay: PayOutcome | None = None,
              refund: RefundOutcome | None = None, reason: str | None = None) -> Change | None:
        """Commit `event` on instruction `seq` if it is still in `expect`; None when it moved on
        (another thread got there first: the caller re-reads and decides again)."""
        row = self.journal.instruction(seq)
        if row.state is not expect:
            return None
        after, status = machine.step(row.kind, expect, event)
        if after is expect:
            return Change(seq, expect, after)  # a self-loop (still paying, still unknown): nothing to commit
        now = self.clock()
        label = f"{row.kind.value}:{expect.value}->{after.value}"
        try:
            with self.journal.transaction(label) as tx:
                result = self._write(tx, row, event, after, status, now, pay=pay, refund=refund, reason=reason)
        except StaleState:
            return None
        return Change(seq, expect, after, result)

    def _write(self, tx: Tx, row: InstructionRow, event: Event, after: State, status: PayStatus | None, now: float, *,
               pay: PayOutcome | None, refund: RefundOutcome | None, reason: str | None) -> ResultRow | None:
        attempt = self.journal.current_attempt(row.seq) if row.kind is Kind.COLLECT else None
        fields: dict[str, object] = {}
        if attempt is not None and pay is not None:
            outcome = {Event.PAID: "success", Event.DECLINED: "declined", Event.ORDER_REFUSED: "declined"}.get(event)
            if outcome is not None:
                tx.settle_attempt(attempt.out_trade_no, outcome=outcome, channel_txn_id=pay.channel_txn_id, paid_fen=pay.paid_fen,
                                  result_code=None if pay.result_code is None else pay.result_code.value,
                                  channel_code=pay.channel_code, message=_clip(pay.message))
        if event is Event.DECLINED:
            assert pay is not None
            fields["last_error_code"] = (pay.result_code or ResultCode.DECLINED).value
            fields["last_error_message"] = _clip(pay.message)
        if event is Event.HAND_OVER:
            # Why a person must look (machine.NeedsPerson) and the channel's last words, for the
            # screen, the progress event HIS sees and the gateway's alarm.
            fields["last_error_code"] = reason
            fields["last_error_message"] = _clip(pay.message if pay is not None else refund.message if refund is not None else None)
        if event in (Event.GIVE_UP, Event.CANCEL) and after is State.REVERSING:
            # A reverse after a person's recheck keeps the reason of the first (pay_timeout stays).
            earlier = row.close_reason if event is Event.GIVE_UP else None
            fields["close_reason"] = earlier or reason or ResultCode.CHANNEL_ERROR.value
        if event is Event.REVERSED and attempt is not None:
            tx.settle_attempt(attempt.out_trade_no, outcome="reversed")
        if after is not State.FINISHED:
            tx.advance(row.seq, row.state, after, now, **fields)
            return None
        assert status is not None
        return self._finish(tx, row, event, status, attempt, now, pay=pay, refund=refund, reason=reason, fields=fields)

    def _finish(self, tx: Tx, row: InstructionRow, event: Event, status: PayStatus, attempt: AttemptRow | None, now: float, *,
                pay: PayOutcome | None, refund: RefundOutcome | None, reason: str | None, fields: dict[str, object],
                detail: str | None = None, stamp: int | None = None) -> ResultRow:
        # The result's amount is always the instruction's (step 6: HIS and the bridge refuse any
        # other); `amount_fen` is what the journal books (a channel that took another amount).
        amount_fen = row.amount_fen
        pay_order_no = ""
        channel = row.channel
        error_code: str | None = None
        message: str | None = None
        refunded_fen: int | None = None
        collection = self.journal.collection(row.order_no)
        if event is Event.PAID:
            assert pay is not None and attempt is not None
            pay_order_no = pay.channel_txn_id or ""
            if pay.paid_fen is not None and pay.paid_fen != row.amount_fen:
                log.warning("order %s: the channel took %s yuan, %s were asked", row.order_no, format_yuan(pay.paid_fen), format_yuan(row.amount_fen))
                message = f"the channel collected {format_yuan(pay.paid_fen)} yuan"
                amount_fen = pay.paid_fen
            channel = attempt.channel
            tx.add_collection(order_no=row.order_no, seq=row.seq, out_trade_no=attempt.out_trade_no, channel=attempt.channel,
                              channel_txn_id=pay_order_no, paid_fen=amount_fen, now=now)
        elif event in (Event.DUPLICATE, Event.DUPLICATE_OTHER_AMOUNT):
            # The original collection's pay_order_no, channel and refunds, so that HIS can book a
            # collection whose first write-back failed (1.1 C).
            assert collection is not None
            original = self.journal.instruction(collection.seq)
            pay_order_no, channel, amount_fen = collection.channel_txn_id, collection.channel, collection.paid_fen
            refunded_fen = self.journal.refunded_fen(row.order_no)
            error_code = ResultCode.DUPLICATE_ORDER.value
            if event is Event.DUPLICATE:
                message = f"order already collected (instruction {original.msg_id}); nothing was charged again"
            else:
                message = (f"order already collected with {format_yuan(collection.paid_fen)} yuan (instruction "
                           f"{original.msg_id}); nothing was charged")
        elif event is Event.ORDER_REFUSED:  # the gateway's word: duplicate_order (another window), bad_amount
            assert pay is not None and pay.result_code is not None
            error_code, message = pay.result_code.value, pay.message
        elif event in (Event.CLOSE, Event.CLOSE_REFUND):  # expired / withdrawn (terminal.his_outcomes)
            error_code = reason or ResultCode.EXPIRED.value
            if row.state is State.DECLINED:  # say what the last code met, too
                message = f"{(reason_text(error_code) or reason_text(ResultCode.EXPIRED.value)).en}; " \
                          f"the last code was declined: {row.last_error_code}"  # type: ignore[union-attr]  # EXPIRED always has a text, so the `or` is never None
        elif event in (Event.REFUSE, Event.REFUSE_REFUND):
            error_code, message = reason or ErrorCode.BAD_ENVELOPE.value, detail
            channel = None
        elif event is Event.CANCEL and row.state is State.DECLINED:
            error_code, message = row.last_error_code or ResultCode.DECLINED.value, row.last_error_message
        elif event is Event.CANCEL:
            error_code = ResultCode.CANCELLED.value
        elif event is Event.REVERSED:
            error_code = row.close_reason or ResultCode.CHANNEL_ERROR.value
        elif event in (Event.NOT_REFUNDABLE, Event.SUPERVISOR_DECLINED):
            error_code = reason or ResultCode.SUPERVISOR_DECLINED.value
            channel = None if collection is None else collection.channel
            if error_code == ResultCode.REFUND_EXCEEDS_REMAINING.value and collection is not None:
                left = collection.paid_fen - self.journal.committed_refunds_fen(row.order_no)
                message = f"{format_yuan(left)} yuan of {format_yuan(collection.paid_fen)} remains refundable"
        elif event in (Event.REFUNDED, Event.REFUND_REFUSED):
            assert refund is not None
            reserved = self.journal.refund_for(row.seq)
            assert reserved is not None
            refunded = event is Event.REFUNDED
            tx.settle_refund(reserved.out_refund_no, refunded=refunded, channel_refund_id=refund.channel_refund_id, now=now)
            if refunded:
                pay_order_no = refund.channel_refund_id or ""
            else:
                error_code = (refund.result_code or ResultCode.REFUND_REJECTED).value
                message = refund.message
        if error_code is not None and message is None:
            text = reason_text(error_code)
            message = None if text is None else text.en
        result = Result(
            device_id=self.config.device.device_id, order_no=row.order_no, pay_order_no=pay_order_no, pay_status=status,
            pay_channel=channel, amount=row.amount, finished_at=stamp or self.result_time(now, row),
            error_code=error_code, error_message=_clip(message), refunded_fen=refunded_fen,
        )
        result_msg_id = "R" + self.rng(12).hex()
        envelope = seal_result(result, key=self._key(row.kid), msg_id=result_msg_id, reply_to=row.msg_id, ts=stamp or self.result_time(now, row),
                               nonce=self.rng(12), device_key_seed=self._device_key_seed)
        tx.add_result(result_msg_id=result_msg_id, seq=row.seq, envelope=envelope.to_bytes(), pay_status=status,
                      pay_order_no=pay_order_no, amount_fen=amount_fen, now=now)
        tx.advance(row.seq, row.state, State.FINISHED, now, pay_status=status, error_code=error_code, finished_at=now, **fields)
        return ResultRow(result_msg_id, row.seq, envelope.to_bytes(), status, pay_order_no, amount_fen, now, None)

    def signed(self, envelope_bytes: bytes) -> Envelope:
        """A stored result envelope, signed: results journaled before this device signed results
        (an upgrade) get their `sig` now; Ed25519 is deterministic, so nothing else changes."""
        envelope = parse_envelope(envelope_bytes)
        return envelope if envelope.sig is not None else sign_envelope(envelope, self._device_key_seed)

    def _key(self, kid: str) -> SharedKey:
        """The key to seal under: the instruction's kid, even if it was retired since (HIS still
        holds it and waits for this answer)."""
        for key in self.config.keys:
            if key.kid == kid:
                return key
        active = self.config.keys.active()
        log.warning("kid %s is no longer configured; sealing the result under %s", kid, active[0].kid)
        return active[0]

