"""Shared test helpers: a device configuration, HIS's side of the envelope, and the bridge's side
of the link (drain the outbox, open results, acknowledge them)."""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from protocol.amount import parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import Envelope, receive_result, seal_instruction
from protocol import signing
from protocol.errors import ErrorCode
from protocol.link.app import NotTakenMsg, ProgressMsg, ResultMsg
from protocol.messages import BillItem, Display, Instruction, PayStatus, Result
from protocol.registry import TerminalRecord
from terminal.config import DeviceConfig, DeviceInfo, Polling, Supervisor
from terminal.journal import Journal
from terminal.pin import hash_pin, parse_pin_hash
from terminal.service import TerminalService

KEY = SharedKey("k2026a", "AES-256-GCM", bytes(range(32)))
OLD_KEY = SharedKey("k2025z", "AES-256-GCM", bytes(range(1, 33)), retired=True)
PIN = "246810"
# Hashing a PIN costs ~50 ms on purpose; the tests share one hash.
PIN_HASH = hash_pin(PIN, salt=b"0123456789abcdef")
DEVICE_ID = "D-SN-000123"
DEVICE_SEED = bytes(range(100, 132))  # the device key: made on the device, here fixed for the tests
DEVICE_KEYS = {DEVICE_ID: signing.public_key(DEVICE_SEED)}.get  # the device registry (step 2)


@dataclass(frozen=True)
class Refusal:
    """A refusal as the bridge sees it: a signed FAILED / REFUND_FAILED result (`sealed`), or a
    NotTakenMsg when the device cannot seal one (which ends nothing)."""

    msg_id: str
    code: ErrorCode
    sealed: bool
    message: str | None = None


def make_config(*, limit_fen: int = 5_000_00, polling: dict | None = None,
                max_wrong_tries: int = 3, lockout_s: int = 60) -> DeviceConfig:
    return DeviceConfig(
        device=DeviceInfo(DEVICE_ID, "HIS-POS-1", "SN000123"),
        merchant_name="示例市人民医院",
        merchant_name_en="Example City Hospital",
        keys=KeyRing([KEY, OLD_KEY]),
        terminals=(TerminalRecord("T0001", "门诊收费1号窗口"), TerminalRecord("T0002", "住院处")),
        supervisor=Supervisor(parse_pin_hash(PIN_HASH), max_wrong_tries, lockout_s),
        limit_fen=limit_fen,
        polling=polling or {},
    )


class His:
    """Seals instructions as HIS does."""

    def __init__(self, clock=time.time, key: SharedKey = KEY) -> None:
        self.clock = clock
        self.key = key
        self._n = itertools.count(1)
        self._rng = random.Random(7)

    def envelope(self, order_no: str, amount: str, *, terminal_id: str = "T0001", msg_id: str | None = None,
                 ts: int | None = None, patient: str | None = "张三明", key: SharedKey | None = None,
                 expires_at: int | None = None) -> Envelope:
        items = (BillItem("阿莫西林胶囊", "2", parse_amount("+" + amount[1:]).fen),) if patient is not None else ()
        display = Display(patient, items) if patient is not None else None
        instruction = Instruction(terminal_id, order_no, parse_amount(amount), display, expires_at)
        return seal_instruction(instruction, key=key or self.key, msg_id=msg_id or f"HIS-{next(self._n):06d}",
                                ts=int(self.clock()) if ts is None else ts, nonce=self._rng.randbytes(12))


@dataclass
class Bridge:
    """The bridge's end of the link: takes what the service sends, opens results, acknowledges."""

    service: TerminalService
    ack: bool = True
    results: dict[str, list[Result]] = field(default_factory=dict)  # by reply_to
    envelopes: dict[str, set[bytes]] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)
    progress: list[ProgressMsg] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pump(self) -> None:
        for message in self.service.outbox.drain():
            self.take(message)

    def take(self, message) -> None:
        with self.lock:
            if isinstance(message, ResultMsg):
                env = message.envelope
                received = receive_result(env.to_json_obj(), KeyRing([KEY, SharedKey(OLD_KEY.kid, OLD_KEY.suite, OLD_KEY.secret)]),
                                          now=self.service.clock(), device_keys=DEVICE_KEYS)  # signed by the device
                assert env.device_id == DEVICE_ID
                result = received.message
                assert isinstance(result, Result)
                if result.pay_status in (PayStatus.FAILED, PayStatus.REFUND_FAILED) and \
                        result.error_code in {c.value for c in ErrorCode}:
                    self.refused.append(Refusal(env.reply_to, ErrorCode(result.error_code), True, result.error_message))
                self.results.setdefault(env.reply_to, []).append(result)
                self.envelopes.setdefault(env.reply_to, set()).add(env.to_bytes())
                if self.ack:
                    self.service.mark_delivered(env.msg_id)
            elif isinstance(message, NotTakenMsg):
                self.refused.append(Refusal(message.msg_id, message.code, False, message.message))
            else:
                self.progress.append(message)

    def result(self, msg_id: str, timeout: float = 20.0) -> Result:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.service.outbox.get(timeout=0.05)
            if message is not None:
                self.take(message)
            with self.lock:
                if msg_id in self.results:
                    return self.results[msg_id][-1]
        raise AssertionError(f"no result for {msg_id} within {timeout} s; screen: {self.service.view()}")


def open_service(path: Path, config: DeviceConfig | None = None, clients=None, *, clock=time.time, seed: int | None = None,
                 on_commit=None, start: bool = True, **service_options) -> TerminalService:
    """A started service on the journal at `path`. The rng is seeded (`seed`) for reproducible runs;
    by default from os.urandom, because every test talks to one sandbox and order numbers must not
    repeat across tests."""
    journal = Journal(path, on_commit=on_commit)
    rng = random.Random(seed if seed is not None else os.urandom(16))
    service = TerminalService(config or make_config(), journal, clients or {}, device_key_seed=DEVICE_SEED, clock=clock,
                              rng=rng.randbytes, link_up=True, **service_options)
    if start:
        service.start()
    return service
