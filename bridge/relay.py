"""What the bridge decides: which instructions reach a device, which results reach HIS.

HIS side (`submit`, `query`) and device side (the `PortSink` callbacks the device ports call) meet
here; the HTTP layer only turns requests into these calls and `Answer`s into responses.

Instruction checks, in this order: the envelope pipeline of protocol.envelope.receive_instruction
(shape -> suite/kid -> tag -> idempotency over the journal -> clock -> plaintext), then the terminal
is registered (else unknown_terminal), bound to a device, and that device is attached with a proven
identity (else device_unavailable at once). Only then is the instruction journaled (committed) and
handed to the device's link.

Result checks: the DATA came from an authenticated link; the result's device_id is that link's
proven identity and is in the device registry; reply_to names an instruction this bridge gave to
that very device; the envelope verifies (receive_result with the instruction's ts) and so does its
`sig`, with that device's registered public key (his-interface 1.1 A); its order_no and amount are
the instruction's (step 6). Anything else is dropped with a security event: HIS never sees it.
Results are the device's: the bridge stores and serves them byte for byte and never makes one up.

Outcomes HIS can act on (1.1 C): every instruction has an `expires_at` (the plaintext's, else the
bridge's default `instruction_ttl_s` after acceptance), relayed to the POS with it; the POS ends it
with a signed CLOSED/expired. One that no device ever took is ended here instead, once expires_at
plus the skew has passed: `410 expired_undelivered` (not a result). The 202 body says `state`,
`since`, `expires_at` and `last_event` (the latest event the POS reported, e.g. a declined code).
`cancel` (a sealed withdrawal) is journaled and relayed to the POS, and again at every link-up
until the instruction is final; the POS answers with the instruction's signed result.

Only a signed result ends an instruction. A device that cannot answer one (no configuration, no
key for its kid) says so with an unsealed NotTakenMsg: the instruction stays unfinished, its 202
answer and /v1/health say why (`last_event`, `instructions.not_taken`), and it is sent again
when the device next attaches.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import Envelope, parse_envelope, receive_cancel, receive_instruction, receive_result
from protocol.errors import CodedError, ErrorCode, ProtocolError
from protocol.freshness import Verdict, check_expiry, classify
from protocol.ids import is_valid_id
from protocol.link.app import AppMessage, CancelMsg, InstructionMsg, MarksMsg, NotTakenMsg, ProgressMsg, ResultMsg, decode_app
from protocol.link.handshake import DeviceIdentity
from protocol.amount import format_amount
from protocol.messages import Cancel, Instruction, Progress, Result, mask_patient_name
from protocol.signatures import NO_HIS_SIGNATURE, HisSignaturePolicy
from protocol.strictjson import dumps_compact, loads_object

from bridge.journal import (
    NOT_TAKEN, HeldResult, JournalError, JournalIntegrityError, JState, Journal, NewInstruction, Row, StoredResult,
)
from bridge.logjson import log_event
from bridge.registries import Registries

log = logging.getLogger("bridge.relay")

MAX_WAIT_S = 120
# How often results the bridge holds (their ts is off this PC's clock, ...) are checked again: a clock
# put right lets them through within this long (issue 14, finding 1).
HELD_RECHECK_S = 5.0
# An instruction the device could not take is sent again when the device answers something else, at
# most this often (a device that keeps refusing it is not flooded).
NOT_TAKEN_RESEND_S = 2.0
# His-interface 1.1 C: how long an instruction without its own expires_at waits for the POS.
DEFAULT_INSTRUCTION_TTL_S = 600


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class RelaySettings:
    clock_skew_s: int
    answer_ttl_s: int
    amount_limit_fen: int
    his_signature: HisSignaturePolicy = NO_HIS_SIGNATURE
    instruction_ttl_s: int = DEFAULT_INSTRUCTION_TTL_S
    stall_alarm_s: float = 600.0  # an unfinished instruction that has not moved for this long: alarm


class Port(Protocol):
    url: str

    def send_instruction(self, msg_id: str, envelope: Envelope, expires_at: int | None = None, again: bool = False) -> bool: ...
    def send_cancel(self, msg_id: str, envelope: Envelope) -> bool: ...
    def request_restart(self, reason: str) -> None: ...
    def status(self) -> dict[str, object]: ...


def error_answer(exc: ProtocolError) -> Answer:
    return Answer(exc.http_status, dumps_compact(exc.to_json_obj()))


class storage_errors_answered:
    """Journal trouble reaches HIS as a stable 503, never as 500 internal_error."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if isinstance(exc, JournalIntegrityError):
            raise ProtocolError(ErrorCode.JOURNAL_INTEGRITY, _integrity_message(exc)) from None
        if isinstance(exc, JournalError):
            raise ProtocolError(ErrorCode.STORAGE_UNAVAILABLE,
                                f"the bridge cannot use its journal right now ({exc.cause.value}); nothing was accepted "
                                "for this request: retry the same envelope shortly (the bridge recovers by itself)") from None


def _integrity_message(exc: JournalError) -> str:
    return ("the bridge's journal failed its integrity check and the bridge is locked: no instruction is taken and no "
            "result is served until IT staff recover it (his-bridge journal check / restore; see /v1/health)")


class Waiters:
    """Long-poll waits without polling: one Event per waiting request, set when its msg_id is final."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, set[threading.Event]] = {}

    def register(self, msg_id: str) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._events.setdefault(msg_id, set()).add(event)
        return event

    def unregister(self, msg_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._events.get(msg_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[msg_id]

    def waiting(self, msg_id: str) -> int:
        """How many requests wait on msg_id now (health, and tests that must not race a long poll)."""
        with self._lock:
            return len(self._events.get(msg_id, ()))

    def fire(self, msg_id: str) -> None:
        with self._lock:
            events = list(self._events.get(msg_id, ()))
        for event in events:
            event.set()

    def fire_all(self) -> None:
        with self._lock:
            events = [e for group in self._events.values() for e in group]
        for event in events:
            event.set()


class ResultNotAccepted(CodedError):
    """A result from an authenticated device that fails a check; it is held, never dropped."""

    code = "result_not_accepted"  # each instance names the failed check (unknown_instruction, amount_mismatch, ...)

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Relay:
    def __init__(self, *, journal: Journal, keys: Callable[[], KeyRing], registries: Registries,
                 settings: RelaySettings, clock: Callable[[], float] = time.time) -> None:
        self.journal = journal
        self.keys = keys
        self.registries = registries
        self.settings = settings
        self.clock = clock
        self.ports: list[Port] = []
        self._attached: dict[str, Port] = {}  # device_id -> the port with its proven link
        self._attached_lock = threading.Lock()
        self.waiters = self._waiters = Waiters()
        # msg_id -> why its device could not take it (NotTakenMsg); cleared when a result arrives.
        self._not_taken: dict[str, dict[str, object]] = {}
        self._not_taken_lock = threading.Lock()
        self.shutting_down = False
        # A POS that refuses work because of its own journal (full disk, failed integrity check):
        # device_id -> the code, shown in /v1/health until that device answers an instruction again.
        self.device_problems: dict[str, str] = {}
        self._recheck_stop = threading.Event()
        self._recheck_wake = threading.Event()
        self.recheck_s = HELD_RECHECK_S
        # msg_id -> the alarm of an unfinished instruction that has not moved for stall_alarm_s (health).
        self.stalled: dict[str, dict[str, object]] = {}

    # ================================================================ HIS side

    def submit(self, body: bytes, wait_s: float) -> Answer:
        with storage_errors_answered():
            return self._submit(body, wait_s)

    def _submit(self, body: bytes, wait_s: float) -> Answer:
        if self.shutting_down:
            raise ProtocolError(ErrorCode.SHUTTING_DOWN, "the bridge is shutting down; retry the same envelope shortly")
        if self.journal.locked:
            raise JournalIntegrityError("locked")  # answered below with the journal's reason
        s = self.settings
        received = receive_instruction(body, self.keys(), now=self.clock(), skew_s=s.clock_skew_s,
                                       limit_fen=s.amount_limit_fen, seen=self.journal, answer_ttl_s=s.answer_ttl_s,
                                       his_signature=s.his_signature)
        envelope = received.envelope
        if received.verdict is Verdict.NEW:
            instruction = received.message
            assert isinstance(instruction, Instruction)
            expires_at = self._expires_at(envelope, instruction)
            port, device_id = self._route(envelope.terminal_id)
            accepted = self.journal.accept(NewInstruction(
                envelope.msg_id, envelope.kid, envelope.digest(), envelope.to_bytes(), envelope.ts,
                envelope.terminal_id, device_id, instruction.order_no, format_amount(instruction.amount), expires_at))
            if accepted:
                return self._relay(envelope, instruction, port, device_id, wait_s, expires_at)
            # A concurrent POST of this msg_id was journaled first: this one is its retry, or a conflict.
            classify(self.journal, envelope.kid, envelope.msg_id, envelope.digest(), self.clock(), s.answer_ttl_s)
        log_event(log, "instruction_retry", msg_id=envelope.msg_id)
        return self._answer_when_final(envelope.msg_id, wait_s)

    def _expires_at(self, envelope: Envelope, instruction: Instruction) -> int:
        """The instruction's expiry (1.1 C): its own, else the default from now. One already past
        (with the skew) is refused at once, before anything is journaled."""
        now = self.clock()
        if instruction.expires_at is None:
            return int(now) + self.settings.instruction_ttl_s
        check_expiry(instruction.expires_at, envelope.ts, now, self.settings.clock_skew_s)
        return instruction.expires_at

    def _relay(self, envelope: Envelope, instruction: Instruction, port: Port, device_id: str, wait_s: float,
               expires_at: int) -> Answer:
        # Registered before the device can answer; _wait reads the journal first, so nothing is missed.
        event = self._waiters.register(envelope.msg_id)
        try:
            patient = instruction.display.patient if instruction.display else None
            log_event(log, "instruction_accepted", msg_id=envelope.msg_id, terminal_id=envelope.terminal_id,
                      device_id=device_id, order_no=instruction.order_no, amount=str(instruction.amount),
                      patient=mask_patient_name(patient) if patient else None)
            port.send_instruction(envelope.msg_id, envelope, expires_at)
            return self._wait(envelope.msg_id, event, wait_s)
        finally:
            self._waiters.unregister(envelope.msg_id, event)

    def _route(self, terminal_id: str) -> tuple[Port, str]:
        terminal = self.registries.terminal(terminal_id)
        if terminal is None:
            raise ProtocolError(ErrorCode.UNKNOWN_TERMINAL,
                                f"terminal_id {terminal_id} is not registered at this bridge (step 2 terminal list)")
        if terminal.device_id is None:
            raise ProtocolError(ErrorCode.DEVICE_UNAVAILABLE,
                                f"terminal {terminal_id} is not bound to a device yet (his-bridge terminals bind)")
        with self._attached_lock:
            port = self._attached.get(terminal.device_id)
        fault = self.journal.storage
        if port is None and fault is not None:
            # The device is away because the journal could not take what it sent (its frame was not
            # acknowledged, the session ended): say what IT must fix, storage_unavailable.
            raise JournalError(fault.message, fault.cause)
        if port is None:
            raise ProtocolError(ErrorCode.DEVICE_UNAVAILABLE,
                                f"device {terminal.device_id} serving terminal {terminal_id} is not attached "
                                "(or has not proven its identity); check the USB cable and that the POS is on")
        return port, terminal.device_id

    def query(self, msg_id: str, wait_s: float) -> Answer:
        if not is_valid_id(msg_id):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"msg_id {msg_id[:70]!r} must match [A-Za-z0-9_-]{{1,64}}")
        with storage_errors_answered():
            return self._answer_when_final(msg_id, wait_s)

    def _answer_when_final(self, msg_id: str, wait_s: float) -> Answer:
        event = self._waiters.register(msg_id)
        try:
            return self._wait(msg_id, event, wait_s)
        finally:
            self._waiters.unregister(msg_id, event)

    def _wait(self, msg_id: str, event: threading.Event, wait_s: float) -> Answer:
        row = self.journal.get(msg_id)
        if row is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no instruction with msg_id {msg_id} at this bridge")
        row = self._expire_if_due(row)
        if not row.state.final and wait_s > 0 and not self.shutting_down:
            timeout = min(wait_s, MAX_WAIT_S)
            if row.undelivered and row.expires_at is not None:  # wake when it would be expired_undelivered
                timeout = min(timeout, max(0.0, row.expires_at + self.settings.clock_skew_s + 1 - self.clock()))
            event.wait(timeout)
            row = self._expire_if_due(self.journal.get(msg_id) or row)
        return self.answer_for(row)

    def _expire_if_due(self, row: Row) -> Row:
        """1.1 C: past expires_at plus the skew with no device ever having taken it: 410, for good."""
        if (row.state.final or not row.undelivered or row.expires_at is None
                or self.clock() <= row.expires_at + self.settings.clock_skew_s):
            return row
        message = (f"expires_at {row.expires_at} passed (and the allowed {self.settings.clock_skew_s} s) before any POS "
                   f"took the instruction (device {row.device_id}); nothing was charged; send the order again under a "
                   "new msg_id if it is still to be paid")
        if self.journal.store_expired_undelivered(row.msg_id, message):
            log_event(log, "instruction_expired_undelivered", level=logging.WARNING, msg_id=row.msg_id,
                      device_id=row.device_id, expires_at=row.expires_at)
            with self._not_taken_lock:
                self._not_taken.pop(row.msg_id, None)
            self._waiters.fire(row.msg_id)
        return self.journal.get(row.msg_id) or row

    def answer_for(self, row: Row) -> Answer:
        if row.state is JState.RESULT_STORED:
            assert row.result_envelope is not None
            return Answer(200, row.result_envelope)
        if row.state is JState.REFUSED:
            code = ErrorCode(row.refusal_code)
            if code is ErrorCode.EXPIRED_UNDELIVERED:
                return error_answer(ProtocolError(code, str(row.refusal_message)))
            return error_answer(ProtocolError(code, f"the bridge could not deliver the instruction: {row.refusal_message}"))
        return Answer(202, dumps_compact(self.state_body(row)))

    def state_body(self, row: Row) -> dict[str, object]:
        """The 202 body of an unfinished instruction (his-interface 1.1 C)."""
        if row.undelivered:
            state = Progress.QUEUED.value  # not taken by a device yet: sent again when it attaches
        else:
            try:
                state = Progress(row.progress).state_for_his() if row.progress else Progress.QUEUED.value
            except ValueError:
                state = Progress.QUEUED.value
        last_event: dict[str, object] | None = None
        if row.last_event:
            try:
                last_event = dict(loads_object(row.last_event, what="last_event"))
            except ProtocolError:
                last_event = None
        if row.progress == NOT_TAKEN:
            with self._not_taken_lock:
                told = self._not_taken.get(row.msg_id)
            if told is not None:
                last_event = {k: told[k] for k in ("code", "message", "at")}
            elif last_event is None:  # told before a restart of the bridge
                last_event = {"code": ErrorCode.DEVICE_UNAVAILABLE.value, "at": None, "message":
                              f"device {row.device_id} could not take this instruction; it is sent again when it attaches"}
        if last_event is None:
            held = self.journal.held_for(row.msg_id)
            if held is not None:  # the POS answered; the bridge keeps its result until it can accept it
                last_event = {"code": held.code, "at": int(held.held_at),
                              "message": f"the POS's result is held at the bridge, not yet accepted: {held.message}"}
        return {"msg_id": row.msg_id, "state": state, "since": int(row.since if row.since is not None else row.accepted_at),
                "expires_at": row.expires_at, "last_event": last_event}

    # ------------------------------------------------------------ withdrawal (1.1 C)

    def cancel(self, msg_id: str, body: bytes, wait_s: float) -> Answer:
        if not is_valid_id(msg_id):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"msg_id {msg_id[:70]!r} must match [A-Za-z0-9_-]{{1,64}}")
        with storage_errors_answered():
            return self._cancel(msg_id, body, wait_s)

    def _cancel(self, msg_id: str, body: bytes, wait_s: float) -> Answer:
        if self.shutting_down:
            raise ProtocolError(ErrorCode.SHUTTING_DOWN, "the bridge is shutting down; retry the same cancel shortly")
        if self.journal.locked:
            raise JournalIntegrityError("locked")
        s = self.settings
        received = receive_cancel(body, self.keys(), now=self.clock(), skew_s=s.clock_skew_s, his_signature=s.his_signature)
        envelope, cancel = received.envelope, received.message
        assert isinstance(cancel, Cancel)
        if envelope.reply_to != msg_id:
            raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"envelope.reply_to {envelope.reply_to!r} is not the msg_id of the "
                                f"URL ({msg_id!r}): a cancel names the instruction it withdraws in both")
        row = self.journal.get(msg_id)
        if row is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no instruction with msg_id {msg_id} at this bridge")
        if cancel.terminal_id != row.terminal_id:
            raise ProtocolError(ErrorCode.UNKNOWN_TERMINAL, f"the cancel is for terminal {cancel.terminal_id}; instruction "
                                f"{msg_id} was sent to terminal {row.terminal_id}")
        if cancel.order_no != row.order_no:
            raise ProtocolError(ErrorCode.BAD_ORDER_NO, f"the cancel is for order {cancel.order_no}; instruction {msg_id} "
                                f"is for order {row.order_no}")
        event = self._waiters.register(msg_id)
        try:
            if not row.state.final:
                if self.journal.mark_withdrawn(msg_id, envelope.to_bytes()):
                    log_event(log, "instruction_withdrawn", msg_id=msg_id, device_id=row.device_id, order_no=row.order_no)
                port = self.attached(row.device_id)
                if port is not None:
                    port.send_cancel(msg_id, envelope)
            return self._wait(msg_id, event, wait_s)
        finally:
            self._waiters.unregister(msg_id, event)

    def not_taken(self) -> list[dict[str, object]]:
        """Unfinished instructions their device could not take, and why (for /v1/health)."""
        with self._not_taken_lock:
            return [dict(msg_id=msg_id, **event) for msg_id, event in self._not_taken.items()]

    def begin_shutdown(self) -> None:
        self.shutting_down = True
        self._recheck_stop.set()
        self._recheck_wake.set()
        self._waiters.fire_all()

    # ================================================================ device side (PortSink)

    def attach(self, port: Port, identity: DeviceIdentity) -> list[tuple[object, AppMessage]]:
        """A device proved its identity on `port`: route its terminals there; return what it must
        still get, as (link tag, message): instructions it has not taken (tag: their msg_id), then
        the withdrawals of unfinished ones (tag: ("cancel", msg_id))."""
        record = self.registries.device(identity.device_id)
        if record is not None and (record.model, record.serial_no) != (identity.model, identity.serial_no):
            log_event(log, "device_identity_mismatch", level=logging.WARNING, security=True, port=port.url,
                      device_id=identity.device_id, registry_serial_no=record.serial_no, hello_serial_no=identity.serial_no,
                      msg="the device proved its key but its model/serial differ from the device registry")
        with self._attached_lock:
            previous = self._attached.get(identity.device_id)
            self._attached[identity.device_id] = port
        if previous is not None and previous is not port:
            log_event(log, "device_moved", level=logging.WARNING, security=True, device_id=identity.device_id,
                      old_port=previous.url, new_port=port.url,
                      msg="device identity proven on a second port; the older session is closed")
            previous.request_restart(f"device {identity.device_id} attached on {port.url}")
        log_event(log, "device_attached", port=port.url, device_id=identity.device_id, model=identity.model,
                  serial_no=identity.serial_no, firmware=identity.firmware)
        pending: list[tuple[object, AppMessage]] = []
        try:
            # Every unfinished instruction, also those the device acknowledged (sent, progress): the
            # device answers each with its result or progress, and takes up again one it lost (finding 5).
            rows = self.journal.unfinished_for(identity.device_id)
            withdrawn = self.journal.withdrawn_for(identity.device_id)
        except JournalError as exc:  # they stay unfinished: asked again at the next link-up
            log_event(log, "journal_read_failed", level=logging.ERROR, device_id=identity.device_id, reason=str(exc))
            rows, withdrawn = [], []
        for row in rows:
            try:
                if self._expire_if_due(row).state.final:
                    continue  # expired before any POS took it: 410 for HIS, never sent now
            except JournalError:
                pass
            pending.append((row.msg_id, InstructionMsg(parse_envelope(row.envelope), row.expires_at)))
        for row in withdrawn:
            assert row.cancel_envelope is not None
            pending.append((("cancel", row.msg_id), CancelMsg(parse_envelope(row.cancel_envelope))))
        if pending:
            log_event(log, "instructions_resent", device_id=identity.device_id, count=len(pending),
                      msg="every unfinished instruction is asked about again after a reconnect")
        self._recheck_wake.set()
        return pending

    def detach(self, port: Port, identity: DeviceIdentity | None, reason: str) -> None:
        if identity is None:
            return
        with self._attached_lock:
            if self._attached.get(identity.device_id) is port:
                del self._attached[identity.device_id]
        log_event(log, "device_detached", level=logging.WARNING, port=port.url, device_id=identity.device_id, reason=reason)

    def attached(self, device_id: str) -> Port | None:
        with self._attached_lock:
            return self._attached.get(device_id)

    def handshake_refused(self, port: Port, reason: str) -> None:
        log_event(log, "handshake_refused", level=logging.WARNING, security=True, port=port.url, reason=reason,
                  msg="a device failed to prove its identity; it gets nothing")

    def delivered(self, port: Port, msg_id: object) -> None:
        try:
            if isinstance(msg_id, str) and self.journal.mark_sent(msg_id):
                log_event(log, "instruction_delivered", level=logging.DEBUG, msg_id=msg_id, port=port.url)
        except JournalError as exc:  # `sent` may be lost without harm: the instruction is re-sent, the device deduplicates
            log_event(log, "journal_write_failed", level=logging.WARNING, msg_id=msg_id, cause=exc.cause.value, reason=str(exc))

    def undeliverable(self, port: Port, msg_id: object, reason: str) -> None:
        if isinstance(msg_id, str):
            try:
                self._refuse(msg_id, ErrorCode.BAD_ENVELOPE.value, f"the device's link could not take it: {reason}")
            except JournalError as exc:  # still `accepted`: re-sent at the next link-up
                log_event(log, "journal_write_failed", level=logging.ERROR, msg_id=msg_id, cause=exc.cause.value, reason=str(exc))

    def handle_app(self, port: Port, identity: DeviceIdentity, payload: bytes) -> bool:
        """One DATA message from an authenticated device, journaled (or dropped) before this returns.

        True: the frame may be acknowledged. False: its content is not durably journaled (disk full,
        journal locked by another program or by a failed integrity check), so the port must not
        acknowledge it: it withdraws that frame's ACK (`Link.refuse`; the POS retransmits it on the
        same session) or, when it cannot, ends the session without writing the ACK, and the POS, which
        keeps every result until it is acknowledged, sends it again after the next link-up
        (docs/link-protocol.md §7, rule 3). Nothing the device sent is ever held only in this process's memory."""
        try:
            self._apply_device_message(port, identity, payload)
        except JournalError as exc:
            log_event(log, "ack_withheld", level=logging.ERROR, device_id=identity.device_id,
                      cause=exc.cause.value, reason=str(exc),
                      msg="not acknowledged: the POS keeps it and sends it again")
            return False
        return True

    def _apply_device_message(self, port: Port, identity: DeviceIdentity, payload: bytes) -> None:
        try:
            message = decode_app(payload)
        except ProtocolError as exc:
            return self._security_drop(port, identity, "undecodable DATA message", exc.message)
        if isinstance(message, (InstructionMsg, CancelMsg)):
            return self._security_drop(port, identity, "a device sent an instruction or a cancel", message.envelope.msg_id)
        if isinstance(message, MarksMsg):
            self._take_marks(identity, message)
            if not self.journal.locked:
                # Marks come again on a live link (timers.marks_refresh_s): a POS whose disk was full
                # when an instruction came may have room now, so what it could not take goes again.
                self._resend_not_taken(port, identity.device_id, "")
            return None
        msg_id = message.envelope.reply_to if isinstance(message, ResultMsg) else message.msg_id
        assert msg_id is not None
        row = self.journal.get(msg_id)
        if isinstance(message, (ResultMsg, ProgressMsg)):
            self._resend_not_taken(port, identity.device_id, msg_id)
        if isinstance(message, ResultMsg):
            self.device_problems.pop(identity.device_id, None)
            return self._take_result(port, identity, row, message.envelope)
        if row is None or row.device_id != identity.device_id:
            why = "unknown reply_to" if row is None else f"reply_to names an instruction given to {row.device_id}"
            return self._security_drop(port, identity, why, msg_id)
        if isinstance(message, ProgressMsg):
            with self._not_taken_lock:  # the device has taken it now
                self._not_taken.pop(msg_id, None)
            event = None if message.event is None else dumps_compact(message.event.to_json_obj()).decode()
            if not row.state.final and self.journal.mark_progress(msg_id, message.state.value, event):
                log_event(log, "instruction_progress", msg_id=msg_id, state=message.state.value,
                          event_code=None if message.event is None else message.event.code)
                if event is not None:
                    self._waiters.fire(msg_id)  # a long poll answers now: HIS learns a decline as it happens
            return None
        assert isinstance(message, NotTakenMsg)
        return self._mark_not_taken(identity, row, message)

    # ================================================================ high-water marks (link-up)

    def taking_devices(self) -> bool:
        """False once the journal is locked: the device ports close, so every POS keeps its results."""
        return not self.journal.locked

    def _peer(self, device_id: str) -> str:
        key = self.registries.public_key_for(device_id)
        return f"{device_id}:{key.hex()[:16] if key else '-'}"  # a re-provisioned POS (new key) starts afresh

    def marks_for(self, identity: DeviceIdentity) -> MarksMsg:
        """What the bridge tells a POS first thing after link-up: its own durable mark, and the POS's."""
        return MarksMsg(self.journal.durable_mark, self.journal.peer_mark(self._peer(identity.device_id)))

    def _take_marks(self, identity: DeviceIdentity, message: MarksMsg) -> None:
        mine = self.journal.high_water_mark
        if message.yours is not None and message.yours > mine:
            problem = (f"POS {identity.device_id} holds high-water mark {message.yours} for this bridge's journal, which is at "
                       f"{mine}: the journal was rolled back (an older copy of it, or of this PC's disk, was put back). "
                       "Recover: stop the bridge, then `his-bridge journal restore BACKUP` with the newest backup, or "
                       f"`his-bridge journal restore --accept-current --mark {message.yours}` (docs/bridge.md)")
            self.journal.rolled_back(problem)
            log_event(log, "journal_rolled_back", level=logging.CRITICAL, device_id=identity.device_id, held_by_pos=message.yours,
                      journal_mark=mine, msg="the bridge locks its journal and closes the device ports; the POS keeps its results")
            self._waiters.fire_all()
            return None
        self.journal.set_peer_mark(self._peer(identity.device_id), message.mine)
        return None

    def _resend_not_taken(self, port: Port, device_id: str, answering: str) -> None:
        """The device answers again (its storage is back, it has a configuration now): send it again
        what it could not take, without waiting for the next link-up; at most every NOT_TAKEN_RESEND_S."""
        now = self.clock()
        with self._not_taken_lock:
            due = [m for m, e in self._not_taken.items() if e.get("device_id") == device_id and m != answering
                   and not (0 <= now - float(e.get("resent_at", 0.0)) < NOT_TAKEN_RESEND_S)]  # type: ignore[arg-type]  # not-taken entries are JSON-shaped dicts; resent_at is a float when present
            for msg_id in due:
                self._not_taken[msg_id]["resent_at"] = now
        for msg_id in due:
            row = self.journal.get(msg_id)
            if row is None or row.state.final:
                continue
            if port.send_instruction(msg_id, parse_envelope(row.envelope), row.expires_at, again=True):
                log_event(log, "instruction_resent", msg_id=msg_id, device_id=device_id,
                          msg="the device answers again: sent again what it could not take")

    def _mark_not_taken(self, identity: DeviceIdentity, row: Row, message: NotTakenMsg) -> None:
        """Unsealed, so it ends nothing: keep the instruction unfinished, say why, re-send it later."""
        if row.state.final:
            return None
        if message.code in (ErrorCode.STORAGE_UNAVAILABLE, ErrorCode.JOURNAL_INTEGRITY):
            # The POS cannot journal (full storage, failed integrity check): named in /v1/health until
            # that device answers an instruction again (issue 14, finding 6).
            self.device_problems[identity.device_id] = message.code.value
            log_event(log, "device_journal_problem", level=logging.ERROR, device_id=identity.device_id,
                      code=message.code.value, reason=message.message)
        told = {"code": message.code.value, "message": message.message, "at": int(self.clock())}
        with self._not_taken_lock:
            before = self._not_taken.get(row.msg_id, {})
            self._not_taken[row.msg_id] = {"device_id": identity.device_id, **told}
            if "resent_at" in before:
                self._not_taken[row.msg_id]["resent_at"] = before["resent_at"]
        self.journal.mark_progress(row.msg_id, NOT_TAKEN, dumps_compact(told).decode())
        log_event(log, "instruction_not_taken", level=logging.WARNING, msg_id=row.msg_id, device_id=identity.device_id,
                  code=message.code.value, reason=message.message,
                  msg="the device cannot answer this instruction; it stays unfinished and is sent again when the device attaches")
        return None

    def _refuse(self, msg_id: str, code: str, message: str) -> None:
        if self.journal.store_refusal(msg_id, code, message):
            log_event(log, "instruction_refused", level=logging.WARNING, msg_id=msg_id, code=code, reason=message)
            self._waiters.fire(msg_id)

    def _take_result(self, port: Port, identity: DeviceIdentity, row: Row | None, envelope: Envelope) -> None:
        """Store a result, or hold it: a result from an authenticated device is never dropped, because
        the link ACKs the frame and the POS then forgets it (issue 14, finding 1)."""
        try:
            stored = self._check_result(identity.device_id, row, envelope)
        except ResultNotAccepted as refusal:
            log_event(log, "result_held", level=logging.WARNING, security=refusal.code != "clock_skew",
                      port=port.url, device_id=identity.device_id, msg_id=envelope.reply_to, code=refusal.code,
                      reason=refusal.message, msg="the result is kept, not accepted yet: named in /v1/health and checked again")
            self.journal.hold_result(HeldResult(envelope.msg_id, envelope.reply_to or "", identity.device_id, envelope.to_bytes(),
                                                refusal.code, refusal.message[:500], self.clock()))
            return None
        if stored is not None:
            assert row is not None
            self._accept_result(identity.device_id, row, stored)
        return None

    def _accept_result(self, device_id: str, row: Row, stored: StoredResult) -> bool:
        if not self.journal.store_result(row.msg_id, stored):
            return False
        with self._not_taken_lock:
            self._not_taken.pop(row.msg_id, None)
        log_event(log, "result_stored", msg_id=row.msg_id, device_id=device_id, order_no=row.order_no,
                  pay_status=stored.pay_status, pay_channel=stored.pay_channel, amount=stored.amount,
                  error_code=stored.error_code)
        self._waiters.fire(row.msg_id)
        return True

    def _check_result(self, device_id: str, row: Row | None, envelope: Envelope) -> StoredResult | None:
        """The checks of a result (module docstring). None: the identical result is stored already."""
        if row is None:
            raise ResultNotAccepted("unknown_instruction", f"reply_to {envelope.reply_to} names no instruction in this "
                                    "bridge's journal (was the journal restored from an older backup?)")
        if row.device_id != device_id:
            raise ResultNotAccepted("wrong_device", f"reply_to names an instruction given to {row.device_id}")
        if envelope.device_id != device_id:
            raise ResultNotAccepted("wrong_device", f"result claims device_id {envelope.device_id}")
        if self.registries.device(envelope.device_id) is None:
            raise ResultNotAccepted("unknown_device", "result from a device not in the registry")
        try:
            received = receive_result(envelope.to_json_obj(), self._result_keys(row.kid), now=self.clock(),
                                      skew_s=self.settings.clock_skew_s, instruction_ts=row.ts,
                                      device_keys=self.registries.public_key_for)
        except ProtocolError as exc:
            if exc.code is ErrorCode.CLOCK_SKEW:
                raise ResultNotAccepted(exc.code.value, f"{exc.message}; set this PC's clock (or the POS's): the result "
                                        "is accepted as soon as its ts is within the window") from None
            raise ResultNotAccepted(exc.code.value, exc.message) from None
        result = received.message
        assert isinstance(result, Result)
        if result.order_no != row.order_no:
            raise ResultNotAccepted("order_mismatch", f"result for order {result.order_no}, instruction was {row.order_no}")
        # The journal holds the instruction's amount in its one canonical wire form (str(Amount), written
        # at _submit): comparing that text is comparing the value, with no second parse inside the bridge.
        if format_amount(result.amount) != row.amount:
            raise ResultNotAccepted("amount_mismatch", f"result for amount {result.amount}, instruction was {row.amount}")
        body = envelope.to_bytes()
        if row.state.final:
            if row.result_envelope is not None and hmac.compare_digest(row.result_envelope, body):
                return None  # the device re-sent what we already hold (our ACK was lost): nothing new
            raise ResultNotAccepted("second_answer", "a second, different answer for a finished instruction")
        return StoredResult(envelope.msg_id, body, result.pay_status.value,
                            result.pay_channel.value if result.pay_channel else None, result.pay_order_no,
                            str(result.amount), result.finished_at, result.error_code)

    # ================================================================ held results

    def recheck_held(self) -> int:
        """Check every held result again; store those that pass now. Returns how many were accepted."""
        accepted = 0
        for held in self.journal.held():
            row = self.journal.get(held.reply_to)
            try:
                stored = self._check_result(held.device_id, row, parse_envelope(held.envelope))
            except ResultNotAccepted as refusal:
                self.journal.update_held(held.result_msg_id, refusal.code, refusal.message[:500])
                continue
            except ProtocolError as exc:  # unparsable: cannot happen for what was parsed before; keep it
                self.journal.update_held(held.result_msg_id, exc.code.value, exc.message[:500])
                continue
            assert row is not None
            if stored is not None and self._accept_result(held.device_id, row, stored):
                accepted += 1
                log_event(log, "held_result_accepted", msg_id=row.msg_id, device_id=held.device_id,
                          held_s=int(self.clock() - held.held_at))
            self.journal.release_held(held.result_msg_id, held.reply_to, "accepted" if stored is not None else "already stored")
        return accepted

    def start_rechecks(self) -> None:
        threading.Thread(target=self._recheck_loop, name="held-results", daemon=True).start()

    def _recheck_loop(self) -> None:
        while not self._recheck_stop.is_set():
            self._recheck_wake.wait(self.recheck_s)
            self._recheck_wake.clear()
            if self._recheck_stop.is_set():
                return
            try:
                if self.journal.held_summary(0)["count"]:
                    self.recheck_held()
                self.check_stalled()
            except JournalError as exc:  # tried again at the next round
                log_event(log, "held_recheck_failed", level=logging.WARNING, reason=str(exc))

    def check_stalled(self) -> None:
        """Alarm (health and log, once each way) for unfinished instructions that have not moved for
        stall_alarm_s: a device that lost one and never came back, a cashier who walked away."""
        now = self.clock()
        found = {}
        for msg_id, device_id, state, progress, updated_at in self.journal.stalled(now - self.settings.stall_alarm_s):
            found[msg_id] = {"msg_id": msg_id, "device_id": device_id, "state": progress or state, "since": int(updated_at),
                             "for_s": int(now - updated_at)}
        for msg_id in found.keys() - self.stalled.keys():
            alarm = found[msg_id]
            log_event(log, "instruction_stalled", level=logging.ERROR, msg_id=msg_id, device_id=alarm["device_id"],
                      state=alarm["state"], for_s=alarm["for_s"],
                      msg="no progress on this instruction: check the POS (is it on, is the cashier there?)")
        for msg_id in self.stalled.keys() - found.keys():
            log_event(log, "instruction_moving_again", msg_id=msg_id)
        self.stalled = found

    def _result_keys(self, instruction_kid: str) -> KeyRing:
        """Active keys, plus the instruction's own kid even if retired since: its answer must still verify."""
        ring = self.keys()
        keys = [SharedKey(k.kid, k.suite, k.secret) if k.kid == instruction_kid else k for k in ring]
        return KeyRing(keys)

    def _security_drop(self, port: Port, identity: DeviceIdentity, why: str, msg_id: str, detail: str = "") -> None:
        log_event(log, "device_message_dropped", level=logging.WARNING, security=True, port=port.url,
                  device_id=identity.device_id, msg_id=msg_id, reason=why, detail=detail or None,
                  msg="a message from the device failed the bridge's checks; HIS never sees it")
