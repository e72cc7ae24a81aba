"""/v1/health and instructions at a million journal rows, against an empty journal (issue 14, finding 7).

Set-up: the same rig as bench_bridge (a real `his-bridge serve`, the echo device on a pty), once on an
empty journal and once on a journal pre-filled with N finished instructions (1,000,000; 100,000 with
--quick), each row with valid checksums (the bridge verifies them). In one run per journal: one HIS
client pays N_PAY instructions one after the other (POST ?wait until the verified result) while a
dashboard polls GET /v1/health ten times a second (ten times the rate of the finding).

Figures: instruction round trip p99 and health p99 on both journals, and their ratios. Target: both
ratios <= 1.5 (health is O(1) in history: it reads trigger-kept counts on a connection of its own).
"""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.bench_bridge import Rig, _pay, _percentile
from bridge.journal import Journal, envelope_sum, result_sum

POLL_HZ = 10


def _prefill(path: Path, rows: int) -> float:
    started = time.perf_counter()
    Journal(path).close()  # the schema, the triggers, the mark
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    envelope = b'{"v":1,"type":"instruction","pad":"' + b"x" * 600 + b'"}'
    result = b'{"v":1,"type":"result","pad":"' + b"y" * 700 + b'"}'
    digest = bytes(32)
    now = time.time() - 86400

    def batch(start: int, end: int):
        for i in range(start, end):
            msg_id = f"OLD{i:09d}"
            order = f"MZ{i:09d}"
            yield (msg_id, "kbench", digest, envelope, int(now), "T1", "D-BENCH", order, "+12.50", "result_stored",
                   now, now, f"R{msg_id}", result, now, "SUCCESS", "WECHAT", f"42{i:020d}", "+12.50", int(now), None,
                   envelope_sum(msg_id, "kbench", digest, envelope, int(now), "T1", "D-BENCH", order, "+12.50"),
                   result_sum(msg_id, f"R{msg_id}", result, "SUCCESS", "WECHAT", f"42{i:020d}", "+12.50", int(now), None))

    step = 50_000
    for start in range(0, rows, step):
        db.executemany(
            "INSERT INTO instructions (msg_id, kid, digest, envelope, ts, terminal_id, device_id, order_no, amount, state, "
            "accepted_at, updated_at, result_msg_id, result_envelope, result_at, pay_status, pay_channel, pay_order_no, "
            "result_amount, finished_at, error_code, env_sum, result_sum) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch(start, min(rows, start + step)))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - started


def _measure(rig: Rig, n_pay: int) -> dict[str, float]:
    stop = threading.Event()
    health: list[float] = []

    def dashboard() -> None:
        conn = rig.connection()
        while not stop.wait(1 / POLL_HZ):
            t0 = time.perf_counter_ns()
            conn.request("GET", "/v1/health")
            conn.getresponse().read()
            health.append((time.perf_counter_ns() - t0) / 1e6)
        conn.close()

    conn = rig.connection()
    for _ in range(20):
        _pay(conn, rig.envelope()[1])
    poller = threading.Thread(target=dashboard, daemon=True)
    poller.start()
    rounds: list[float] = []
    for _ in range(n_pay):
        sent, done = _pay(conn, rig.envelope()[1])
        rounds.append((done - sent) / 1e6)
    stop.set()
    poller.join()
    conn.close()
    return {"instruction_p50_ms": round(statistics.median(rounds), 3), "instruction_p99_ms": round(_percentile(rounds, 0.99), 3),
            "health_p50_ms": round(statistics.median(health), 3), "health_p99_ms": round(_percentile(health, 0.99), 3)}


def run(quick: bool) -> dict[str, object]:
    rows = 100_000 if quick else 1_000_000
    n_pay = 100 if quick else 400
    figures: dict[str, object] = {"journal_rows": rows}
    with tempfile.TemporaryDirectory() as tmp:
        empty, full = Path(tmp, "empty"), Path(tmp, "full")
        empty.mkdir()
        full.mkdir()
        figures["prefill_s"] = round(_prefill(full / "journal.sqlite3", rows), 1)
        figures["journal_mib"] = round(os.path.getsize(full / "journal.sqlite3") / 2**20, 1)
        for name, directory in (("empty", empty), ("full", full)):
            started = time.perf_counter()
            rig = Rig(directory, baud=None)
            figures[f"start_s_{name}"] = round(time.perf_counter() - started, 2)
            try:
                for key, value in _measure(rig, n_pay).items():
                    figures[f"{key}_{name}"] = value
            finally:
                rig.close()
    ratios = {k: round(figures[f"{k}_full"] / max(figures[f"{k}_empty"], 1e-6), 2)
              for k in ("instruction_p99_ms", "health_p99_ms")}
    figures.update({f"{k}_ratio": v for k, v in ratios.items()})
    targets = {f"{k}_ratio": "<= 1.5" for k in ratios}
    met = {f"{k}_ratio": v <= 1.5 for k, v in ratios.items()}
    return {"figures": figures, "targets": targets, "met": met,
            "notes": f"one run per journal; a dashboard polls /v1/health at {POLL_HZ} Hz during the payments"}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
