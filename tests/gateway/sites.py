"""A gateway site for the tests that run real `payment-gateway` processes: one database (SQLite or
a real PostgreSQL), one hospital with one POS onboarded to the channel sandbox, the gateway
processes started on it, and what those tests ask of it (the POS's connection, a payment's state in
the ledger, a patient's balance at the sandbox). Shared by test_crash, test_jobs_processes and
test_two_processes, which each add only what is theirs (an in-process gateway with a clock, logs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_sim.sandbox.launcher import SandboxProcess
from gateway.db import Database, PostgresDatabase, open_database
from gateway.errors import GatewayCode, GatewayError
from gateway.ledger import PaymentState
from gateway.vault import Vault
from terminal.gateway_client import GatewayConnection
from tests.gateway.fleet import make_fleet
from tests.gateway.test_api import onboard

MASTER_KEY = bytes(range(32))


def start_gateway(url: str, *extra: str, log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A `payment-gateway` process on the database at `url`, listening on a free port of 127.0.0.1
    (its stderr to `log`, or discarded): the process and its URL, once it listens."""
    exe = Path(sys.executable).with_name("payment-gateway")
    with open(log, "wb") if log is not None else open(os.devnull, "wb") as err:
        proc = subprocess.Popen([str(exe), "--db", url, "--listen", "127.0.0.1:0", *extra], stdout=subprocess.PIPE, stderr=err,
                                env=os.environ | {"GATEWAY_MASTER_KEY": MASTER_KEY.hex()}, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError("payment-gateway did not start" + (f": {log.read_text()}" if log is not None else ""))
    return proc, json.loads(line)["url"]


def site_database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Database]:
    """The database a parametrized site fixture asks for (`request.param`: "sqlite" or "postgresql"),
    migrated: its URL (for the processes) and this process's handle on it."""
    if request.param == "sqlite":
        url = f"sqlite:{tmp_path}/gateway.db"
        db = open_database(url)
    else:
        pg = request.getfixturevalue("pg_server")
        conninfo = pg.new_schema()
        db, url = PostgresDatabase(conninfo), pg.url(conninfo)
    db.migrate()
    return url, db


class GatewaySite:
    def __init__(self, url: str, db: Database, sandbox: SandboxProcess) -> None:
        self.url, self.db, self.sandbox = url, db, sandbox
        self.fleet = make_fleet(db, devices=1, vault=Vault(MASTER_KEY))
        onboard(self.fleet, sandbox)
        self.procs: list[subprocess.Popen] = []

    def start(self, *extra: str, log: Path | None = None) -> tuple[subprocess.Popen, str]:
        proc, url = start_gateway(self.url, *extra, log=log)
        self.procs.append(proc)
        return proc, url

    def pos(self, url: str) -> GatewayConnection:
        return GatewayConnection(url, device_id="H001-POS1", seed=self.fleet.seeds["H001-POS1"])

    def state(self, out_trade_no: str) -> PaymentState | None:
        """The payment's state in the ledger; None while it is not recorded."""
        try:
            return self.fleet.ledger.payment(out_trade_no, hospital_id="H001").state
        except GatewayError as exc:
            if exc.code is GatewayCode.UNKNOWN_PAYMENT:
                return None
            raise

    def balance(self, code: str) -> str:
        return str(self.sandbox.account(code)["balance"])

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=20)
            if proc.stdout is not None:
                proc.stdout.close()
        self.db.close()
