"""Two gateway processes on one PostgreSQL: the same order fired at both at once is charged once.

This is how a provider that outgrows one machine grows: the gateway keeps no state of its own, all
coordination is in the database (the unique index of one order, one payment; row locks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import requests

from firmware_sim.sandbox.launcher import SandboxProcess
from gateway.db import PostgresDatabase
from gateway.vault import Vault
from terminal.gateway_client import GatewayConnection
from tests.gateway.fleet import make_fleet
from tests.gateway.test_api import onboard, pay_body

MASTER_KEY = bytes(range(32))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    process = SandboxProcess(str(tmp_path_factory.mktemp("gw2-sandbox"))).start()
    yield process
    process.stop()


def start_gateway(url: str, *extra: str) -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).with_name("payment-gateway")
    proc = subprocess.Popen([str(exe), "--db", url, "--listen", "127.0.0.1:0", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=os.environ | {"GATEWAY_MASTER_KEY": MASTER_KEY.hex()}, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError("payment-gateway did not start")
    return proc, json.loads(line)["url"]


def test_the_same_order_at_two_gateway_processes_is_charged_once(pg_server, sandbox) -> None:
    conninfo = pg_server.new_schema()
    db = PostgresDatabase(conninfo)
    db.migrate()
    fleet = make_fleet(db, devices=2, vault=Vault(MASTER_KEY))
    onboard(fleet, sandbox)
    gateways = [start_gateway(pg_server.url(conninfo)) for _ in range(2)]
    try:
        assert gateways[0][0].pid != gateways[1][0].pid
        for round_no in range(4):
            order_no = f"MZ2P{round_no}{uuid.uuid4().hex[:8]}"
            code = requests.post(sandbox.url + "/sandbox/v1/codes", json={"channel": "WECHAT", "balance": "100.00"}, timeout=10).json()["code"]
            replies: dict[int, tuple[int, dict]] = {}
            barrier = threading.Barrier(2)

            def window(n: int) -> None:
                pos = GatewayConnection(gateways[n - 1][1], device_id=f"H001-POS{n}", seed=fleet.seeds[f"H001-POS{n}"])
                body = pay_body(order_no, code, 1250, terminal=f"T000{n}")
                barrier.wait()
                replies[n] = pos.post("/v1/pay", body)

            threads = [threading.Thread(target=window, args=(n,)) for n in (1, 2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            outcomes = sorted(r[1].get("state") or r[1]["error"]["code"] for r in replies.values())
            assert outcomes == ["duplicate_order", "success"], replies
            balance = requests.get(f"{sandbox.url}/sandbox/v1/accounts/{code}", timeout=10).json()["balance"]
            assert balance == "87.50"  # charged once
        with db.transaction(write=False) as tx:
            assert tx.scalar("SELECT COUNT(*) FROM payments WHERE state = 'succeeded'") == 4
    finally:
        for proc, _ in gateways:
            proc.terminate()
            proc.wait(timeout=20)
        db.close()
