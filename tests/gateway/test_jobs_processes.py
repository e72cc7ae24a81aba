"""Durable channel work with real processes: `payment-gateway` processes running the jobs table, the
channel sandbox, SQLite and a real PostgreSQL server.

- the POS loses power while the patient is still confirming (USERPAYING): the gateway finishes the
  payment (paid, or reversed when never confirmed) and the POS that comes back asks it the outcome;
- kill -9 of the gateway process in the middle of a job: another process takes the job over once
  its lease has run out, never before;
- two processes sharing one database never run one job at once.

Timings are shortened with the server's own options (follow-up 1 s, lease 3 s...) so nothing waits
for the production defaults; waits are on observable state, never fixed sleeps."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from firmware_sim.sandbox.launcher import SandboxProcess
from gateway.channel_clients import ChannelFactory
from gateway.db import Database
from gateway.jobs import JobKind, JobQueue
from gateway.ledger import Ledger, PaymentState
from protocol.messages import PayChannel
from tests.gateway.fleet import ACTOR, recorded_earlier
from tests.gateway.sites import GatewaySite, site_database
from tests.gateway.test_api import pay_body
from tests.waiting import wait_until

FAST_JOBS = ("--jobs-interval", "0.2", "--job-follow-up", "1", "--job-requery", "0.5", "--job-abandon", "4", "--job-lease", "3")


class Site(GatewaySite):
    def __init__(self, url: str, db: Database, sandbox: SandboxProcess, logs: Path) -> None:
        super().__init__(url, db, sandbox)
        self.logs = logs

    def gateway(self, *extra: str) -> tuple[subprocess.Popen, str, Path]:
        """A gateway process running jobs on the shortened timings, its stderr (the job log) kept."""
        log = self.logs / f"gateway-{len(self.procs)}.log"
        proc, url = self.start(*FAST_JOBS, *extra, log=log)
        return proc, url, log


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request, tmp_path, sandbox):
    s = Site(*site_database(request, tmp_path), sandbox, tmp_path)
    yield s
    s.close()


def test_a_pos_that_lost_power_while_the_patient_confirmed_gets_the_outcome_from_the_gateway(site) -> None:
    _, url, _ = site.gateway()
    code = site.sandbox.issue_code("WECHAT", "100.00", "userpaying:2")["code"]
    body = pay_body("MZJ" + uuid.uuid4().hex[:12], code, 1250)
    status, reply = site.pos(url).post("/v1/pay", body)
    assert (status, reply["state"]) == (200, "user_paying")
    # The POS loses power here: it never queries, never reverses. The patient confirms on the phone.
    wait_until(lambda: site.state(body["out_trade_no"]) is PaymentState.SUCCEEDED, timeout=30, what="the gateway to finish the payment")
    assert site.balance(code) == "87.50"
    assert JobQueue(site.db, owner="test").pending() == []
    # The POS comes back (a new connection, as after a reboot) and asks: the ledger answers.
    status, reply = site.pos(url).post("/v1/query", {"out_trade_no": body["out_trade_no"]})
    assert (status, reply["state"], reply["paid_fen"]) == (200, "success", 1250)
    assert reply["channel_txn_id"]


def test_a_payment_never_confirmed_while_the_pos_is_away_is_reversed_by_the_gateway(site) -> None:
    _, url, _ = site.gateway()
    code = site.sandbox.issue_code("ALIPAY", "100.00", "userpaying_forever")["code"]
    body = pay_body("MZJ" + uuid.uuid4().hex[:12], code, 1250, channel="ALIPAY")
    status, reply = site.pos(url).post("/v1/pay", body)
    assert (status, reply["state"]) == (200, "user_paying")
    wait_until(lambda: site.state(body["out_trade_no"]) is PaymentState.CLOSED, timeout=30, what="the gateway to reverse the abandoned payment")
    assert site.balance(code) == "100.00"
    status, reply = site.pos(url).post("/v1/query", {"out_trade_no": body["out_trade_no"]})
    assert (status, reply["state"]) == (200, "closed")
    # The order is free again: the patient pays with a new code.
    fresh = site.sandbox.issue_code("ALIPAY", "100.00", "success")["code"]
    status, reply = site.pos(url).post("/v1/pay", pay_body(body["order_no"], fresh, 1250, channel="ALIPAY"))
    assert (status, reply["state"]) == (200, "success")


class SilentChannel:
    """A TCP listener that accepts and never answers: a channel call to it hangs until its timeout."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connected = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)
            self.connected.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


def _point_wechat_at(site: Site, base_url: str) -> None:
    wechat: dict = site.sandbox.credentials["channels"]["wechat"]  # type: ignore[index]  # sandbox.json: a JSON object
    site.fleet.directory.set_merchant_key("H001", PayChannel.WECHAT, wechat["mch_id"],
                                          {"appid": wechat["appid"], "api_key": wechat["api_key"], "base_url": base_url}, actor=ACTOR)


def test_kill_9_of_a_gateway_mid_job_leaves_the_job_to_another_process_after_its_lease(site) -> None:
    # A collection the channel holds (the patient confirms 1 s after the scan) whose request died:
    # recorded, sent, never settled; its job is due at once.
    ledger = Ledger(site.db, follow_up_after_s=0)
    code = site.sandbox.issue_code("WECHAT", "100.00", "userpaying:1")["code"]
    payment = ledger.start_payment(hospital_id="H001", terminal_id="T0001", device_id="H001-POS1", order_no="MZK" + uuid.uuid4().hex[:10],
                                   out_trade_no="P" + uuid.uuid4().hex[:20], channel=PayChannel.WECHAT, amount_fen=1250)
    client = ChannelFactory(site.fleet.directory).client("H001", PayChannel.WECHAT)
    assert client.pay(out_trade_no=payment.out_trade_no, auth_code=code, total_fen=1250, subject="t").state.value == "user_paying"
    # The first process's channel call hangs (the channel stopped answering) ...
    silent = SilentChannel()
    try:
        _point_wechat_at(site, silent.url)
        first, _, _ = site.gateway()
        assert silent.connected.wait(20), "the first gateway never ran the job"
        queue = JobQueue(site.db, owner="test")
        held = queue.get(JobKind.PAYMENT, "H001", payment.out_trade_no)
        assert held is not None and held.lease_owner is not None and held.lease_until_ms is not None
        assert held.lease_owner.endswith(f":{first.pid}") and held.attempts == 1
        first.kill()  # ... and the process is killed mid-job: SIGKILL, no cleanup
        first.wait(timeout=10)
        _point_wechat_at(site, site.sandbox.credentials["channels"]["wechat"]["base_url"])  # the channel is back
        second, url, log = site.gateway()
        # Until the dead process's lease runs out, nobody touches its job.
        while time.time() * 1000 < held.lease_until_ms - 300:
            job = queue.get(JobKind.PAYMENT, "H001", payment.out_trade_no)
            assert job is not None and (job.lease_owner, job.attempts) == (held.lease_owner, 1)
            time.sleep(0.1)
        wait_until(lambda: site.state(payment.out_trade_no) is PaymentState.SUCCEEDED, timeout=30, what="the second process to finish the job")
        assert re.search(rf"job {held.job_id} payment H001 {payment.out_trade_no}: attempt 2 by \S+:{second.pid}", log.read_text())
        assert site.balance(code) == "87.50" and queue.pending() == []
    finally:
        silent.close()


def test_two_processes_sharing_the_jobs_never_run_one_job_at_once(site) -> None:
    """24 collections abandoned an hour ago (each job: a query, then a reversal), two processes with
    two job threads each: every job is claimed once (attempt 1, by one owner), and all end closed."""
    ledger = Ledger(site.db, clock=lambda: time.time() - 3600, follow_up_after_s=0)
    numbers = []
    for _ in range(24):
        p = ledger.start_payment(hospital_id="H001", terminal_id="T0001", device_id="H001-POS1", order_no="MZT" + uuid.uuid4().hex[:10],
                                 out_trade_no="P" + uuid.uuid4().hex[:20], channel=PayChannel.WECHAT, amount_fen=100)
        numbers.append(p.out_trade_no)
    recorded_earlier(site.db, 3600)  # an hour ago by the database's clock, too
    logs = [site.gateway("--job-lease", "60")[2] for _ in range(2)]
    wait_until(lambda: all(site.state(n) is PaymentState.CLOSED for n in numbers), timeout=60, what="every job to finish")
    claims = [m.groups() for log in logs for m in re.finditer(r"job (\d+) payment H001 (\S+): attempt (\d+) by (\S+)", log.read_text())]
    assert sorted(c[1] for c in claims) == sorted(numbers)  # each job claimed exactly once
    assert {c[2] for c in claims} == {"1"}
    assert JobQueue(site.db, owner="test").pending() == []
