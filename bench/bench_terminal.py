"""Terminal service: its own overhead per payment, and how fast it resumes after a restart.

Against a channel-sandbox process on loopback, with the real channel clients wrapped (not replaced)
so the time spent inside them is excluded:
- scan -> pay request handed to the channel client: the scan is routed, the attempt ("about to pay
  with out_trade_no X") is committed with synchronous=FULL, a worker picks it up;
- channel reply -> result frame ready: the outcome is committed with the sealed result, the
  ResultMsg reaches the outbox and is encoded as a DATA frame.
Baseline: one durable SQLite commit on the same disk (WAL, synchronous=FULL); the service makes one
such commit on each side, so twice this is the floor under the total.
Resume: a journal holding 100 payments that reached the channel just before the power failed (the
worst case: in normal operation at most one payment is in flight); time from start() until all 100
results are in the outbox, and start() itself.
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

from firmware_sim.sandbox.launcher import SandboxProcess
from protocol.amount import parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import seal_instruction
from protocol.link.app import ResultMsg, encode_app
from protocol.link.frame import FrameType, encode_frame
from protocol.messages import Display, Instruction, PayChannel
from protocol.registry import TerminalRecord
from gateway.channels import build_clients, settings_from_sandbox
from terminal.config import DeviceConfig, DeviceInfo, Supervisor
from terminal.journal import Journal
from terminal.lifecycle import out_trade_no
from terminal.machine import Kind, State
from terminal.pin import hash_pin, parse_pin_hash
from terminal.service import TerminalService

KEY = SharedKey("k1", "AES-256-GCM", bytes(range(32)))
DEVICE_SEED = bytes(range(100, 132))  # the device key that signs every result
TARGET_P99_MS = 20.0


class TimedClient:
    """The real client; records when the service handed a call over and when it got the answer."""

    def __init__(self, client) -> None:
        self._client = client
        self.pay_entered: list[int] = []
        self.pay_returned: list[int] = []

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def pay(self, **kwargs):
        self.pay_entered.append(time.perf_counter_ns())
        try:
            return self._client.pay(**kwargs)
        finally:
            self.pay_returned.append(time.perf_counter_ns())


def _config(channels: dict) -> DeviceConfig:
    return DeviceConfig(DeviceInfo("D-BENCH", "HIS-POS-1", "SN-B"), "Bench Hospital", KeyRing([KEY]),
                        (TerminalRecord("T1", "bench"),), Supervisor(parse_pin_hash(hash_pin("246810"))), channels)


def _envelope(order_no: str, msg_id: str, amount: str = "+12.50"):
    instruction = Instruction("T1", order_no, parse_amount(amount), Display("张*明", ()))
    return seal_instruction(instruction, key=KEY, msg_id=msg_id, ts=int(time.time()), nonce=os.urandom(12))


def _ms(samples: list[int]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return round(statistics.median(ordered) / 1e6, 2), round(p99 / 1e6, 2)


def _payments(sandbox: SandboxProcess, settings: dict, workdir: Path, n: int) -> dict[str, float]:
    clients = build_clients(settings)
    timed = {channel: TimedClient(client) for channel, client in clients.items()}
    service = TerminalService(_config(settings), Journal(workdir / "pay.db"), timed, device_key_seed=DEVICE_SEED, link_up=True)
    service.start()
    frames: list[int] = []
    ready = threading.Event()

    def on_put() -> None:
        for message in service.outbox.drain():
            if isinstance(message, ResultMsg):
                encode_frame(FrameType.DATA, 1, encode_app(message))
                frames.append(time.perf_counter_ns())
                service.mark_delivered(message.envelope.msg_id)
                ready.set()

    service.outbox.set_listener(on_put)
    scans, accepts = [], []
    channels = [PayChannel.WECHAT, PayChannel.ALIPAY]
    try:
        for i in range(n):
            channel = channels[i % 2]
            code = str(sandbox.issue_code(channel.value, "100.00", "success")["code"])
            envelope = _envelope(f"B{os.getpid()}N{i}", f"BENCH-{os.getpid()}-{i}")
            started = time.perf_counter_ns()
            service.submit_instruction(envelope)
            accepts.append(time.perf_counter_ns() - started)
            ready.clear()
            scans.append(time.perf_counter_ns())
            service.scan(code)
            if not ready.wait(30):
                raise RuntimeError(f"payment {i} got no result; screen {service.view()}")
    finally:
        service.close()
    entered = sorted(timed[PayChannel.WECHAT].pay_entered + timed[PayChannel.ALIPAY].pay_entered)
    returned = sorted(timed[PayChannel.WECHAT].pay_returned + timed[PayChannel.ALIPAY].pay_returned)
    to_channel = [e - s for s, e in zip(scans, entered)]
    to_frame = [f - r for r, f in zip(returned, frames)]
    total = [a + b for a, b in zip(to_channel, to_frame)]
    figures: dict[str, float] = {}
    for name, samples in (("scan_to_channel", to_channel), ("reply_to_frame", to_frame), ("overhead_total", total),
                          ("instruction_accept", accepts), ("channel_call", [r - e for e, r in zip(entered, returned)])):
        figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"] = _ms(samples)
    figures["payments"] = n
    return figures


def _commit_floor(workdir: Path, n: int) -> float:
    db = sqlite3.connect(str(workdir / "floor.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (x INTEGER)")
    samples = []
    for i in range(n):
        started = time.perf_counter_ns()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?)", (i,))
        db.execute("COMMIT")
        samples.append(time.perf_counter_ns() - started)
    db.close()
    return _ms(samples)[0]


def _resume(sandbox: SandboxProcess, settings: dict, workdir: Path, count: int) -> dict[str, float]:
    """A journal with `count` payments that reached the channel, as a power cut leaves it."""
    clients = build_clients(settings)
    config = _config(settings)
    journal = Journal(workdir / "resume.db")
    now = time.time()
    for i in range(count):
        channel = (PayChannel.WECHAT, PayChannel.ALIPAY)[i % 2]
        code = str(sandbox.issue_code(channel.value, "100.00", "success")["code"])
        with journal.transaction("bench:in-flight") as tx:
            seq = tx.add_instruction(kid=KEY.kid, msg_id=f"RES-{os.getpid()}-{i}", envelope_ts=int(now), terminal_id="T1",
                                     order_no=f"R{os.getpid()}N{i}", kind=Kind.COLLECT, amount_fen=1250, display=None, now=now,
                                     salt=os.urandom(8).hex())
            tx.advance(seq, State.QUEUED, State.AWAITING_SCAN, now)
        row = journal.instruction(seq)
        number = out_trade_no(config.device.device_id, row, 1)
        with journal.transaction("bench:paying") as tx:
            tx.add_attempt(seq=seq, out_trade_no=number, attempt_no=1, channel=channel, code_masked="****", now=now, deadline=now + 30)
            tx.advance(seq, State.AWAITING_SCAN, State.PAYING, now, channel=channel)
        clients[channel].pay(out_trade_no=number, auth_code=code, total_fen=1250, subject="bench")  # then the power failed
    journal.close()
    service = TerminalService(config, Journal(workdir / "resume.db"), clients, device_key_seed=DEVICE_SEED, link_up=True,
                              rng=random.Random(1).randbytes)
    done = threading.Event()
    results: list[int] = []

    def on_put() -> None:
        results.extend(1 for m in service.outbox.drain() if isinstance(m, ResultMsg))
        if len(results) >= count:
            done.set()

    service.outbox.set_listener(on_put)
    started = time.perf_counter_ns()
    report = service.start()
    start_call = time.perf_counter_ns() - started
    finished = done.wait(120)
    elapsed = time.perf_counter_ns() - started
    service.close()
    if not finished or report.resumed != count:
        raise RuntimeError(f"resume incomplete: {len(results)} of {count} results, {report}")
    return {"resume_100_in_flight_s": round(elapsed / 1e9, 3), "resume_start_call_ms": round(start_call / 1e6, 1)}


def run(quick: bool) -> dict:
    n = 40 if quick else 300
    with tempfile.TemporaryDirectory(prefix="bench-terminal-") as tmp:
        workdir = Path(tmp)
        with SandboxProcess(str(workdir / "sandbox")) as sandbox:
            settings = settings_from_sandbox(sandbox.credentials_path)
            figures = _payments(sandbox, settings, workdir, n)
            figures.update(_resume(sandbox, settings, workdir, 100))
        floor = _commit_floor(workdir, 50 if quick else 200)
    met = {
        "overhead_p99_le_20ms": figures["overhead_total_p99_ms"] <= TARGET_P99_MS,
        "resume_100_le_10s": figures["resume_100_in_flight_s"] <= 10.0,
    }
    return {
        "figures": figures,
        "targets": {"overhead_p99_le_20ms": "overhead_total p99 <= 20 ms (scan->channel + reply->frame)",
                    "resume_100_le_10s": "100 in-flight payments resolved <= 10 s after start"},
        "baseline": {"durable_commit_p50_ms": floor, "two_commits_floor_ms": round(2 * floor, 2)},
        "met": met,
    }
