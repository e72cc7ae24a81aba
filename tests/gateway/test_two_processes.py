"""Two gateway processes on one PostgreSQL: the same order fired at both at once is charged once.

This is how a provider that outgrows one machine grows: the gateway keeps no state of its own, all
coordination is in the database (the unique index of one order, one payment; row locks)."""

from __future__ import annotations

import threading
import uuid

import pytest
import requests

from gateway.db import PostgresDatabase
from gateway.vault import Vault
from terminal.gateway_client import GatewayConnection
from tests.gateway.fleet import make_fleet
from tests.gateway.sites import MASTER_KEY, start_gateway
from tests.gateway.test_api import onboard, pay_body


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
