"""The bridge's own cost: added latency, throughput, and round trip against the wire time at 115200 baud.

Set-up: `his-bridge serve` as a real subprocess (journal synchronous = FULL, INFO log to a file);
the echo device (firmware_sim.responder) on a pty in this process; HIS clients on keep-alive
http.client connections. Timestamps are time.perf_counter_ns (CLOCK_MONOTONIC, one clock for all
processes of the machine).

- inbound latency  = HTTP request sent by the client -> the device's handler has the instruction
  (bridge: parse, AES-GCM verify, journal commit, link frame; plus the pty hop and the device's decode)
- outbound latency = the device wrote its result frame -> the client has the HTTP answer
  (bridge: frame decode, result verify, journal commit, wake-up, HTTP write; plus the pty hop)
- throughput: instructions/s end to end (POST ?wait until the verified result), 1 and 8 clients
- paced: the device paces the line at 115200 baud 8N1; round trip / wire time of the bytes actually
  sent on the critical path (instruction frame, the device's ACK and result frame, each with its
  16-byte link authentication tag)

Every instruction costs two fsyncs with the default journal (acceptance, result), so the figures
are run twice: with synchronous = FULL (the default; the targets apply) and NORMAL (`*_sync_normal`),
next to a baseline of one bare SQLite FULL commit on the same disk.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from protocol import signing
from protocol.amount import parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import seal_instruction
from protocol.link.app import InstructionMsg, encode_app
from protocol.link.frame import OVERHEAD, wire_time_s
from protocol.link.handshake import HostTrust
from protocol.link.secure import TAG_SIZE
from protocol.link.handshake import DeviceIdentity
from protocol.messages import Instruction
from protocol.registry import DeviceRecord, TerminalRecord, format_device_csv, format_terminal_csv

from bridge.keystore import new_identity, write_keyfile
from terminal.link.endpoint import DeviceEndpoint
from firmware_sim.wires import PtyWire
from firmware_sim.responder import Responder

ROOT = Path(__file__).resolve().parents[1]
KEY = SharedKey("kbench", "AES-256-GCM", os.urandom(32))
SEED = os.urandom(32)
IDENTITY = DeviceIdentity("D-BENCH", "SIM-POS", "SN-BENCH", "1.0.0")


class TimedResponder(Responder):
    """The echo device, noting when each instruction arrives and when its result frame has been written."""

    def __init__(self) -> None:
        super().__init__(KeyRing([KEY]), IDENTITY.device_id, device_key_seed=SEED)
        self.arrived: dict[str, int] = {}
        self.answered: dict[str, int] = {}
        self.result_bytes: dict[str, int] = {}

    def on_instruction(self, envelope, endpoint) -> None:
        self.arrived[envelope.msg_id] = time.perf_counter_ns()
        super().on_instruction(envelope, endpoint)  # seals the result and sends it (through _try_send)

    def _try_send(self, endpoint, msg_id, message) -> None:
        # Stamped before the frame is written: the bridge may answer HIS before this thread runs again.
        self.answered[msg_id] = time.perf_counter_ns()
        self.result_bytes[msg_id] = len(encode_app(message)) + OVERHEAD + TAG_SIZE
        super()._try_send(endpoint, msg_id, message)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Rig:
    def __init__(self, directory: Path, baud: int | None, synchronous: str = "FULL") -> None:
        self.dir = directory
        write_keyfile(directory / "keys.json", [KEY], {})
        (directory / "devices.csv").write_text(format_device_csv(
            [DeviceRecord(IDENTITY.device_id, IDENTITY.model, IDENTITY.serial_no, signing.public_key(SEED))]))
        (directory / "terminals.csv").write_text(format_terminal_csv([TerminalRecord("T1", "bench", IDENTITY.device_id)]))
        self.responder = TimedResponder()
        bridge_key = new_identity(directory / "bridge_identity.key", "bench-bridge")
        self.endpoint = DeviceEndpoint(PtyWire(directory / "ttyPOS"), self.responder, identity=IDENTITY,
                                       device_key_seed=SEED, host_trust=HostTrust(bridges=frozenset({bridge_key.public})),
                                       baud=baud).start()
        (directory / "config.toml").write_text(
            "[http]\nport = 0\n[link]\nports = [\"%s\"]\nbaud = %d\n[log]\nfile = \"bridge.log\"\n"
            "[journal]\nsynchronous = \"%s\"\n" % (self.endpoint.bridge_url, baud or 115200, synchronous))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "--config", str(directory / "config.toml"),
                                      "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.host, self.port = self._wait_started()
        self.counter = 0

    def _wait_started(self) -> tuple[str, int]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            log = self.dir / "bridge.log"
            if log.exists():
                for line in log.read_text().splitlines():
                    entry = json.loads(line)
                    if entry.get("event") == "bridge_started":
                        host, port = entry["url"].removeprefix("http://").rsplit(":", 1)
                        conn = http.client.HTTPConnection(host, int(port), timeout=10)
                        while time.monotonic() < deadline:
                            conn.request("GET", "/v1/health")
                            if json.loads(conn.getresponse().read())["status"] == "ok":
                                conn.close()
                                return host, int(port)
                            time.sleep(0.05)
            time.sleep(0.05)
        raise RuntimeError("the bridge did not start with its device attached")

    def envelope(self) -> tuple[str, bytes, int]:
        self.counter += 1
        msg_id = f"B{os.getpid()}-{self.counter}-{os.urandom(3).hex()}"
        plain = Instruction("T1", f"MZ{self.counter}", parse_amount("+12.50"))
        envelope = seal_instruction(plain, key=KEY, msg_id=msg_id, ts=int(time.time()), nonce=os.urandom(12))
        frame = len(encode_app(InstructionMsg(envelope))) + OVERHEAD + TAG_SIZE
        return msg_id, envelope.to_bytes(), frame

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.endpoint.stop()


def _pay(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, int]:
    """POST with wait; returns (time sent, time answered) in ns."""
    sent = time.perf_counter_ns()
    conn.request("POST", "/v1/instructions?wait=30", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    done = time.perf_counter_ns()
    if response.status != 200:
        raise RuntimeError(f"bridge answered {response.status}")
    return sent, done


def _latency_and_throughput(rig: Rig, n: int) -> dict[str, float]:
    conn = rig.connection()
    inbound: list[float] = []
    outbound: list[float] = []
    for _ in range(20):  # warm-up
        _pay(conn, rig.envelope()[1])
    started = time.perf_counter()
    for _ in range(n):
        msg_id, body, _ = rig.envelope()
        sent, done = _pay(conn, body)
        inbound.append((rig.responder.arrived[msg_id] - sent) / 1e6)
        outbound.append((done - rig.responder.answered[msg_id]) / 1e6)
    one_client = n / (time.perf_counter() - started)
    health: list[float] = []
    for _ in range(min(n, 200)):
        t0 = time.perf_counter_ns()
        conn.request("GET", "/v1/health")
        conn.getresponse().read()
        health.append((time.perf_counter_ns() - t0) / 1e6)
    conn.close()

    per_client = max(n // 8, 10)
    bodies = [[rig.envelope()[1] for _ in range(per_client)] for _ in range(8)]
    barrier = threading.Barrier(9)

    def client(mine: list[bytes]) -> None:
        c = rig.connection()
        barrier.wait()
        for body in mine:
            _pay(c, body)
        c.close()

    threads = [threading.Thread(target=client, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    eight_clients = 8 * per_client / (time.perf_counter() - started)
    return {
        "inbound_latency_p50_ms": round(statistics.median(inbound), 3),
        "inbound_latency_p99_ms": round(_percentile(inbound, 0.99), 3),
        "outbound_latency_p50_ms": round(statistics.median(outbound), 3),
        "outbound_latency_p99_ms": round(_percentile(outbound, 0.99), 3),
        "throughput_1_client_per_s": round(one_client, 1),
        "throughput_8_clients_per_s": round(eight_clients, 1),
        "http_health_p50_ms": round(statistics.median(health), 3),
    }


def _paced(rig: Rig, n: int, baud: int) -> dict[str, float]:
    conn = rig.connection()
    ratios: list[float] = []
    trips: list[float] = []
    wires: list[float] = []
    _pay(conn, rig.envelope()[1])
    for _ in range(n):
        msg_id, body, instruction_frame = rig.envelope()
        sent, done = _pay(conn, body)
        ack = OVERHEAD + TAG_SIZE  # the device's ACK, with its tag
        wire = wire_time_s(instruction_frame + ack + rig.responder.result_bytes[msg_id], baud)
        trip = (done - sent) / 1e9
        ratios.append(trip / wire)
        trips.append(trip * 1000)
        wires.append(wire * 1000)
    conn.close()
    return {
        "paced_round_trip_p50_ms": round(statistics.median(trips), 2),
        "paced_wire_time_ms": round(statistics.median(wires), 2),
        "paced_round_trip_ratio_p50": round(statistics.median(ratios), 3),
        "paced_round_trip_ratio_max": round(max(ratios), 3),
    }


def _pty_hop_us(n: int) -> float:
    """Baseline: one small write through a pty to pyserial-style reads, no bridge."""
    wire = PtyWire()
    fd = os.open(wire.slave_path, os.O_RDWR | os.O_NOCTTY)
    hops = []
    try:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            wire.write(b"x" * 64)
            got = 0
            while got < 64:
                got += len(os.read(fd, 64))
            hops.append((time.perf_counter_ns() - t0) / 1000)
    finally:
        os.close(fd)
        wire.close()
    return round(statistics.median(hops), 1)


def _fsync_commit_ms(directory: Path, n: int) -> float:
    """Baseline: one small SQLite commit with synchronous=FULL (WAL) on the same disk, no bridge."""
    import sqlite3

    db = sqlite3.connect(directory / "fsync.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (x BLOB)")
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?)", (os.urandom(400),))
        db.execute("COMMIT")
        times.append((time.perf_counter_ns() - t0) / 1e6)
    db.close()
    return round(statistics.median(times), 3)


def run(quick: bool) -> dict[str, object]:
    n = 60 if quick else 600
    baud = 115200
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {name: Path(tmp, name) for name in ("full", "normal", "paced")}
        for d in dirs.values():
            d.mkdir()
        fsync_ms = _fsync_commit_ms(dirs["full"], 50 if quick else 200)
        rig = Rig(dirs["full"], baud=None)
        try:
            figures = _latency_and_throughput(rig, n)
        finally:
            rig.close()
        rig = Rig(dirs["normal"], baud=None, synchronous="NORMAL")
        try:
            relaxed = _latency_and_throughput(rig, n)
        finally:
            rig.close()
        rig = Rig(dirs["paced"], baud=baud)
        try:
            figures.update(_paced(rig, 10 if quick else 40, baud))
        finally:
            rig.close()
    relaxed.pop("http_health_p50_ms")
    figures.update({f"{name}_sync_normal": value for name, value in relaxed.items()})
    baseline = {"journal_fsync_commit_p50_ms": fsync_ms, "pty_hop_p50_us": _pty_hop_us(200),
                "http_health_p50_ms": figures.pop("http_health_p50_ms"),
                "paced_wire_time_ms": figures["paced_wire_time_ms"]}
    targets = {
        "inbound_latency_p99_ms": "<= 5",
        "outbound_latency_p99_ms": "<= 5",
        "throughput_1_client_per_s": ">= 300",
        "throughput_8_clients_per_s": ">= 300",
        "paced_round_trip_ratio_p50": "<= 1.10",
    }
    met = {
        "inbound_latency_p99_ms": figures["inbound_latency_p99_ms"] <= 5,
        "outbound_latency_p99_ms": figures["outbound_latency_p99_ms"] <= 5,
        "throughput_1_client_per_s": figures["throughput_1_client_per_s"] >= 300,
        "throughput_8_clients_per_s": figures["throughput_8_clients_per_s"] >= 300,
        "paced_round_trip_ratio_p50": figures["paced_round_trip_ratio_p50"] <= 1.10,
    }
    return {"figures": figures, "targets": targets, "baseline": baseline, "met": met,
            "notes": "targets apply to the default journal (synchronous = FULL: two fsyncs an instruction, "
                     "acceptance and result); *_sync_normal are the same runs with synchronous = NORMAL"}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
