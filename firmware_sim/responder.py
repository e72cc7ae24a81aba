"""The echo device: a DeviceHandler that answers every instruction at once, with no channel at all.

Vendors use it for connectivity tests; our tests and benchmarks use it as the far end of the link.
It is honest about what it is: it verifies instructions exactly as the POS does
(`protocol.envelope.receive_instruction`, msg_id dedup), seals real results with the shared key and
signs them with its device key (his-interface 1.1 A), keeps a small ledger per order (one collection
per order, refunds up to what was collected), and its `pay_order_no`s start with "ECHO-" so nobody
mistakes them for a channel's transaction ids.

Like the POS, it ends an instruction only with a signed result: a refusal it can seal (it opened
the envelope) is a FAILED / REFUND_FAILED result with the error code; one it cannot (auth_failed,
unknown_kid: its keys differ; storage_unavailable, journal_integrity: it cannot journal) is a
NotTakenMsg, which leaves the instruction unfinished.

Modes: ANSWER (default), REFUSE (refuse every new instruction with `refuse_code`, as above),
SILENT (accepts and executes nothing visible: no answer ever, for timeout tests). `progress=True`
sends a ProgressMsg(awaiting_scan) before answering. `release()` answers what SILENT held back.
A withdrawal (his-interface 1.1 C, `on_cancel`) ends an instruction SILENT holds with a signed
CLOSED / REFUND_FAILED result, error_code `withdrawn`; a finished one gets its result again.

Results are kept until the bridge ACKs them (Delivered) and re-sent after every reconnect;
`executions` counts how often each msg_id was executed as new work (must never exceed 1).
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections import Counter
from typing import Callable

from protocol.amount import DEFAULT_LIMIT_FEN, Amount
from protocol.crypto import KeyRing
from protocol.envelope import Envelope, open_for_refusal, receive_cancel, receive_instruction, seal_result
from protocol.errors import ErrorCode, ProtocolError
from protocol.freshness import DEFAULT_SKEW_S, MemorySeenStore
from protocol.link.app import AppMessage, NotTakenMsg, ProgressMsg, ResultMsg
from protocol.link.session import LinkNotUp
from protocol.messages import Instruction, PayChannel, PayStatus, Progress, Result, ResultCode


class ResponderMode(enum.Enum):
    ANSWER = "answer"
    REFUSE = "refuse"
    SILENT = "silent"


class Responder:
    def __init__(self, keys: KeyRing, device_id: str, *, device_key_seed: bytes, mode: ResponderMode = ResponderMode.ANSWER,
                 refuse_code: ErrorCode = ErrorCode.UNKNOWN_TERMINAL, terminals: set[str] | None = None,
                 progress: bool = False, channel: PayChannel = PayChannel.WECHAT, skew_s: int = DEFAULT_SKEW_S,
                 limit_fen: int = DEFAULT_LIMIT_FEN, clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.device_id = device_id
        self.device_key_seed = device_key_seed
        self.mode = mode
        self.refuse_code = refuse_code
        self.terminals = terminals
        self.progress = progress
        self.channel = channel
        self.skew_s = skew_s
        self.limit_fen = limit_fen
        self.clock = clock
        self.executions: Counter[str] = Counter()
        self.received: Counter[str] = Counter()  # every arrival, retries included
        self.cancels: Counter[str] = Counter()  # withdrawals received, by the withdrawn msg_id
        self._lock = threading.RLock()
        self._seen = MemorySeenStore()
        self._answers: dict[str, AppMessage] = {}  # msg_id -> the final answer (kept for retries)
        self._outbox: dict[str, AppMessage] = {}  # msg_id -> answer not yet ACKed by the bridge
        self._held: dict[str, tuple[Envelope, Instruction]] = {}  # SILENT: executed, not yet answered
        self._collected: dict[str, Result] = {}  # order_no -> its successful collection
        self._refunded: Counter[str] = Counter()  # order_no -> fen refunded so far
        self._endpoint: object = None

    # ------------------------------------------------------------ DeviceHandler

    def on_link_up(self, endpoint, host_info: bytes) -> None:
        with self._lock:
            self._endpoint = endpoint
            for msg_id, message in list(self._outbox.items()):
                self._try_send(endpoint, msg_id, message)

    def on_link_down(self, unacked: tuple[object, ...], endpoint) -> None:
        pass  # every unacknowledged answer is still in the outbox; on_link_up re-sends it

    def on_delivered(self, tag: object, endpoint) -> None:
        with self._lock:
            if isinstance(tag, str) and tag in self._outbox:
                del self._outbox[tag]

    def on_instruction(self, envelope: Envelope, endpoint) -> None:
        with self._lock:
            self._endpoint = endpoint
            self.received[envelope.msg_id] += 1
            if envelope.msg_id in self._answers:
                self._answer(endpoint, envelope.msg_id, self._answers[envelope.msg_id])
                return
            try:
                received = receive_instruction(envelope.to_json_obj(), self.keys, now=self.clock(), skew_s=self.skew_s,
                                               limit_fen=self.limit_fen, seen=self._seen)
            except ProtocolError as exc:
                self._answer(endpoint, envelope.msg_id, self._refusal(envelope, exc.code, exc.message))
                return
            if received.message is None:  # a retry of work in progress (SILENT holds it)
                self._progress(endpoint, envelope.msg_id, Progress.AWAITING_SCAN)
                return
            instruction = received.message
            assert isinstance(instruction, Instruction)
            if self.terminals is not None and instruction.terminal_id not in self.terminals:
                self._answer(endpoint, envelope.msg_id, self._refusal(
                    envelope, ErrorCode.UNKNOWN_TERMINAL, f"terminal {instruction.terminal_id} is not served here"))
                return
            if self.mode is ResponderMode.REFUSE:  # a sealed refusal is kept in _answers; a NotTaken keeps nothing
                self._answer(endpoint, envelope.msg_id, self._refusal(envelope, self.refuse_code, "refused by the echo device"))
                return
            self._seen.remember(envelope.kid, envelope.msg_id, envelope.digest(), self.clock())
            self.executions[envelope.msg_id] += 1
            if self.progress or self.mode is ResponderMode.SILENT:
                self._progress(endpoint, envelope.msg_id, Progress.AWAITING_SCAN)
            if self.mode is ResponderMode.SILENT:
                self._held[envelope.msg_id] = (envelope, instruction)
                return
            self._answer(endpoint, envelope.msg_id, self._execute(envelope, instruction))

    def on_cancel(self, envelope: Envelope, endpoint) -> None:
        with self._lock:
            self._endpoint = endpoint
            try:
                receive_cancel(envelope.to_json_obj(), self.keys, now=self.clock(), skew_s=self.skew_s)
            except ProtocolError:
                return  # a withdrawal that does not verify withdraws nothing
            msg_id = envelope.reply_to
            assert msg_id is not None
            self.cancels[msg_id] += 1
            held = self._held.pop(msg_id, None)
            if held is not None:
                instruction_envelope, instruction = held
                status = PayStatus.REFUND_FAILED if instruction.amount.is_refund else PayStatus.CLOSED
                self._answer(endpoint, msg_id, self._seal(instruction_envelope, Result(
                    self.device_id, instruction.order_no, "", status, None, instruction.amount, int(self.clock()),
                    ResultCode.WITHDRAWN.value, "withdrawn by HIS before anything was charged")))
            elif msg_id in self._answers:
                self._answer(endpoint, msg_id, self._answers[msg_id])

    # ------------------------------------------------------------ control (tests)

    def release(self, mode: ResponderMode = ResponderMode.ANSWER) -> None:
        """Leave SILENT: answer everything held back (sent now if the link is up, else on link up)."""
        with self._lock:
            self.mode = mode
            held, self._held = self._held, {}
            endpoint, answers = self._endpoint, []
            for msg_id, (envelope, instruction) in held.items():
                message = self._execute(envelope, instruction)
                self._answers[msg_id] = self._outbox[msg_id] = message
                answers.append((msg_id, message))
        # Sent outside our lock: the endpoint's thread holds its own lock when it calls on_delivered,
        # which takes ours; sending under ours would take the two in the opposite order (deadlock).
        for msg_id, message in answers:
            self._try_send(endpoint, msg_id, message)

    @property
    def pending_answers(self) -> int:
        with self._lock:
            return len(self._outbox)

    # ------------------------------------------------------------ internals

    def _execute(self, envelope: Envelope, instruction: Instruction) -> ResultMsg:
        now = int(self.clock())
        order_no, amount = instruction.order_no, instruction.amount
        if not amount.is_refund:
            original = self._collected.get(order_no)
            if original is not None:
                same = original.amount == amount
                result = Result(self.device_id, order_no, original.pay_order_no,
                                PayStatus.SUCCESS if same else PayStatus.FAILED, original.pay_channel, amount, now,
                                ResultCode.DUPLICATE_ORDER.value,
                                "this order was already collected" + ("" if same else f" with {original.amount}; nothing was charged"),
                                refunded_fen=self._refunded[order_no])
            else:
                result = Result(self.device_id, order_no, f"ECHO-{os.urandom(10).hex()}", PayStatus.SUCCESS,
                                self.channel, amount, now)
                self._collected[order_no] = result
        else:
            result = self._refund(order_no, amount, now)
        return self._seal(envelope, result)

    def _seal(self, envelope: Envelope, result: Result) -> ResultMsg:
        key = self.keys.key_for(envelope.kid, envelope.suite)
        sealed = seal_result(result, key=key, msg_id=f"ECHO-R-{os.urandom(12).hex()}", reply_to=envelope.msg_id,
                             ts=int(self.clock()), nonce=os.urandom(12), device_key_seed=self.device_key_seed)
        return ResultMsg(sealed)

    def _refusal(self, envelope: Envelope, code: ErrorCode, message: str) -> AppMessage:
        """A signed FAILED / REFUND_FAILED result when the envelope opens here; else NotTakenMsg."""
        # These codes mean the envelope does not open here (REFUSE mode plays a device whose keys differ),
        # or the device cannot journal, so it cannot seal an answer (its storage is full, its journal locked).
        unsealable = (ErrorCode.AUTH_FAILED, ErrorCode.UNKNOWN_KID, ErrorCode.UNSUPPORTED_SUITE, ErrorCode.MSG_ID_CONFLICT,
                      ErrorCode.REPLAY, ErrorCode.STORAGE_UNAVAILABLE, ErrorCode.JOURNAL_INTEGRITY)
        opened = None if code in unsealable else open_for_refusal(envelope, self.keys)
        if opened is None:
            return NotTakenMsg(envelope.msg_id, code, message)
        order_no, amount = opened
        status = PayStatus.REFUND_FAILED if amount.is_refund else PayStatus.FAILED
        return self._seal(envelope, Result(self.device_id, order_no, "", status, None, amount, int(self.clock()),
                                           code.value, message[:256]))

    def _refund(self, order_no: str, amount: Amount, now: int) -> Result:
        collected = self._collected.get(order_no)
        if collected is None:
            return Result(self.device_id, order_no, "", PayStatus.REFUND_FAILED, None, amount, now,
                          ResultCode.ORDER_NOT_PAID.value, "no collection of this order on this device")
        remaining = collected.amount.fen - self._refunded[order_no]
        if amount.fen > remaining:
            return Result(self.device_id, order_no, "", PayStatus.REFUND_FAILED, collected.pay_channel, amount, now,
                          ResultCode.REFUND_EXCEEDS_REMAINING.value, f"only {remaining} fen remain refundable")
        self._refunded[order_no] += amount.fen
        return Result(self.device_id, order_no, f"ECHO-{os.urandom(10).hex()}", PayStatus.REFUNDED,
                      collected.pay_channel, amount, now)

    def _answer(self, endpoint, msg_id: str, message: AppMessage) -> None:
        if not isinstance(message, ResultMsg):  # NotTakenMsg: no answer, nothing kept; asked again, it looks again
            self._try_send(endpoint, msg_id, message)
            return
        self._answers[msg_id] = message
        self._outbox[msg_id] = message
        self._try_send(endpoint, msg_id, message)

    def _progress(self, endpoint, msg_id: str, state: Progress) -> None:
        if endpoint is not None:
            try:
                endpoint.send(ProgressMsg(msg_id, state))
            except LinkNotUp:
                pass  # progress is a courtesy; the final answer is what is kept

    def _try_send(self, endpoint, msg_id: str, message: AppMessage) -> None:
        if endpoint is None:
            return
        try:
            endpoint.send(message, tag=msg_id)
        except LinkNotUp:
            pass  # stays in the outbox until the next link up
