"""`payment-gateway` as a process: starts, reports where it listens, answers, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests


def start(*args: str, env: dict[str, str]) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("payment-gateway")
    return subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ | env, text=True)


def test_the_gateway_process_serves_and_stops(tmp_path) -> None:
    env = {"GATEWAY_MASTER_KEY": "11" * 32}
    proc = start("--db", f"sqlite:{tmp_path}/gw.db", "--listen", "127.0.0.1:0", "--migrate", env=env)
    try:
        ready = json.loads(proc.stdout.readline())
        assert requests.get(ready["url"] + "/v1/health", timeout=10).json() == {"ok": True}
        reply = requests.post(ready["url"] + "/v1/pay", json={}, timeout=10)
        assert (reply.status_code, reply.json()["error"]["code"]) == (401, "bad_request_auth")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_plain_http_off_loopback_and_an_old_schema_are_refused(tmp_path) -> None:
    env = {"GATEWAY_MASTER_KEY": "11" * 32}
    proc = start("--db", f"sqlite:{tmp_path}/gw.db", "--listen", "0.0.0.0:0", "--migrate", env=env)
    assert proc.wait(timeout=20) == 1 and "only allowed on a loopback" in proc.stderr.read()
    proc = start("--db", f"sqlite:{tmp_path}/new.db", "--listen", "127.0.0.1:0", env=env)
    assert proc.wait(timeout=20) == 1 and "gateway-admin migrate" in proc.stderr.read()
