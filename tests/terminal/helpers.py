"""Shared test helpers: a device configuration, HIS's side of the envelope, and the bridge's side
of the link (drain the outbox, open results, acknowledge them)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from protocol.amount import parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import Envelope, receive_result, seal_instruction
from protocol import signing
from protocol.errors import ErrorCode
from protocol.link.app import NotTakenMsg, ProgressMsg, ResultMsg
from protocol.messages import BillItem, Display, Instruction, PayStatus, Result
from protocol.registry import DeviceRecord, TerminalRecord
from terminal.config import DeviceConfig, DeviceInfo, GatewaySettings, Polling, Supervisor
from terminal.factory import gateway_clients
from terminal.journal import Journal
from terminal.pin import hash_pin, parse_pin_hash
from terminal.service import PinStatus, ScanStatus, TerminalService
from terminal.view import ScreenView

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
                assert env.device_id == DEVICE_ID and env.reply_to is not None  # a result answers an instruction
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


def wait_for_view(service: TerminalService, predicate: Callable[[ScreenView], bool], timeout: float) -> ScreenView | None:
    """The service's first view that satisfies `predicate`, waiting up to `timeout` s; None if none did.

    Woken by the service's own observer call on every change, so it never polls on a timer.
    """
    changed = threading.Event()
    remove = service.add_observer(lambda view: changed.set())
    try:
        deadline = time.monotonic() + timeout
        while True:
            changed.clear()  # before looking: a change from here on wakes the wait below
            view = service.view()
            if predicate(view):
                return view
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            changed.wait(left)
    finally:
        remove()


def collect_and_refund_through_gateway(tmp_path: Path, sandbox, gateway, channel) -> tuple[str, str]:
    """The POS's terminal service, with the clients `terminal.factory` builds (device-signed requests),
    paying through `gateway` (a firmware_sim.demo_gateway.DemoGateway, onboarded; served here in a
    thread): HIS's +12.50 paid with a fresh code of `channel`, then -5.00 confirmed with the supervisor
    PIN; both results and the patient's balance checked. Returns (the code, the gateway's URL); the
    caller closes the gateway."""
    config = make_config()
    gateway.enroll(DeviceRecord(DEVICE_ID, "HIS-POS-1", "SN000123", signing.public_key(DEVICE_SEED)), config.terminals)
    url = gateway.serve_in_thread({"read_timeout_s": 2.0, "query_interval_s": 0.2})
    config = dataclasses.replace(config, gateway=GatewaySettings(url))
    clients = gateway_clients(config, device_key_seed=DEVICE_SEED, firmware="test", state_dir=tmp_path)
    service = open_service(tmp_path / "journal.db", config, clients)
    bridge, his = Bridge(service), His()
    try:
        order_no = "MZ" + uuid.uuid4().hex[:12]
        collect = his.envelope(order_no, "+12.50")
        service.submit_instruction(collect)
        code = str(sandbox.issue_code(channel.value)["code"])
        assert service.scan(code).status is ScanStatus.ACCEPTED
        paid = bridge.result(collect.msg_id)
        assert paid.pay_status is PayStatus.SUCCESS and paid.pay_order_no
        refund = his.envelope(order_no, "-5.00")
        service.submit_instruction(refund)
        assert service.confirm_refund(PIN).status is PinStatus.ACCEPTED
        assert bridge.result(refund.msg_id).pay_status is PayStatus.REFUNDED
        assert int(sandbox.account(code)["balance_fen"]) == 100_00 - 1250 + 500
    finally:
        service.close()
    return code, url
