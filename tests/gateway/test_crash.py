"""kill -9 of a gateway process, and of PostgreSQL, in the middle of a payment: nothing is lost, the
patient is charged once, and the request the dead process held is resolved (never `in_progress`
forever). Real processes: `payment-gateway`, the channel sandbox, a PostgreSQL server with fsync on.

The moment of the kill is chosen with the sandbox's `slow:N` codes (the channel takes the money at
once and holds its answer N seconds): the gateway has written the collection as `paying` and is
waiting for the channel, the worst moment, since only the channel knows the money was taken.
`noreply` codes (the channel never answers, records nothing) give the other worst case: nothing
was taken, and the collection must not hold its order forever."""

from __future__ import annotations

import time
import uuid

import pytest

from gateway.api import GatewayHttpServer
from gateway.channel_clients import ChannelFactory
from gateway.db import PostgresDatabase
from gateway.ledger import PaymentState
from gateway.channel_work import ChannelWork
from gateway.jobs import JobQueue
from gateway.service import IN_PROGRESS_WINDOW_S, GatewayService
from gateway.tenancy import Directory
from gateway.vault import Vault
from terminal.gateway_client import GatewayConnection
from tests.gateway.fleet import recorded_earlier
from tests.gateway.pgserver import PostgresServer
from tests.gateway.sites import MASTER_KEY, GatewaySite, site_database
from tests.gateway.test_api import pay_body
from tests.waiting import wait_until

FAST = {"read_timeout_s": 2.0}


@pytest.fixture(scope="module")
def durable_pg():
    """A PostgreSQL server of its own, fsync on: this one gets killed."""
    server = PostgresServer(durable=True).start()
    yield server
    server.cleanup()


class Site(GatewaySite):
    def gateway(self) -> str:
        """A gateway process that runs no jobs: what its jobs would do, the tests run with `in_process`."""
        return self.start("--jobs-interval", "0")[1]

    def in_process(self, clock) -> tuple[GatewayHttpServer, ChannelWork]:
        """This site's gateway in this process, with an injected clock (to be "later" without waiting)."""
        directory = Directory(self.db, Vault(MASTER_KEY), clock=clock)
        service = GatewayService(directory, self.fleet.ledger, ChannelFactory(directory, overrides=FAST), clock=clock)
        work = ChannelWork(self.fleet.ledger, service.channels, JobQueue(self.db, owner="test", clock=clock), clock=clock)
        return GatewayHttpServer(service).start(), work


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request, tmp_path, sandbox):
    s = Site(*site_database(request, tmp_path), sandbox)
    yield s
    s.close()


def fire(pos: GatewayConnection, body: dict) -> dict:
    """Send a pay request on a thread; the box gets its (status, reply)."""
    import threading

    box: dict = {}
    box["thread"] = threading.Thread(target=lambda: box.update(reply=pos.post("/v1/pay", body)), daemon=True)
    box["thread"].start()
    return box


def later(seconds: float):
    return lambda: time.time() + seconds


def test_kill_9_of_the_gateway_while_the_channel_holds_the_money(site) -> None:
    url = site.gateway()
    code = site.sandbox.issue_code("WECHAT", "100.00", "slow:20")["code"]
    body = pay_body("MZK" + uuid.uuid4().hex[:12], code, 1250)
    box = fire(site.pos(url), body)
    wait_until(lambda: site.balance(code) == "87.50", timeout=20, what="the channel to take the money")
    assert site.fleet.ledger.payment(body["out_trade_no"], hospital_id="H001").state is PaymentState.PAYING
    site.procs[0].kill()  # SIGKILL: no handler, no cleanup
    box["thread"].join(timeout=30)
    assert box["reply"][0] == 0 and box["reply"][1]["error"]["code"] == "network"  # the POS lost the answer

    # A restarted gateway: the POS's retry at once gets in_progress (the first request could, as far
    # as any gateway process can tell, still be talking to the channel) ...
    pos = site.pos(site.gateway())
    status, reply = pos.post("/v1/pay", body)
    assert (status, reply["error"]["code"]) == (409, "in_progress")
    # ... and once no request can still be running, the retry itself resolves it: the gateway asks
    # the channel, settles the ledger and stores the outcome (simulated "later" with a clock).
    server, _ = site.in_process(later(IN_PROGRESS_WINDOW_S + 1))
    try:
        status, reply = GatewayConnection(server.url, device_id="H001-POS1", seed=site.fleet.seeds["H001-POS1"],
                                          clock=later(IN_PROGRESS_WINDOW_S + 1)).post("/v1/pay", body)
    finally:
        server.stop()
    assert (status, reply["state"], reply["paid_fen"]) == (200, "success", 1250)
    assert site.fleet.ledger.payment(body["out_trade_no"], hospital_id="H001").state is PaymentState.SUCCEEDED
    # Every later retry, at any process, gets that outcome; the patient was charged once.
    status, again = pos.post("/v1/pay", body)
    assert (status, again["state"], again["paid_fen"]) == (200, "success", 1250)
    assert site.balance(code) == "87.50" and len(site.sandbox.account(code)["orders"]) == 1


def test_a_payment_orphaned_by_a_dead_gateway_and_an_absent_pos_is_finished_by_its_job(site) -> None:
    """The POS never comes back (power cut) and the channel never answered: the collection's job
    queries, then reverses once the collection is abandoned, so the order is free for the patient's next try."""
    url = site.gateway()
    code = site.sandbox.issue_code("WECHAT", "100.00", "noreply")["code"]
    body = pay_body("MZK" + uuid.uuid4().hex[:12], code, 1250)
    box = fire(site.pos(url), body)
    wait_until(lambda: site.state(body["out_trade_no"]) is PaymentState.PAYING, timeout=20, what="the collection to be recorded")
    site.procs[0].kill()
    box["thread"].join(timeout=30)
    server, work = site.in_process(later(90))
    server.stop()
    report = work.run_due()  # queried: the channel has no such order; not abandoned yet
    assert body["out_trade_no"] in report.still_open and site.state(body["out_trade_no"]) is PaymentState.PAYING
    recorded_earlier(site.db, 3600)  # an hour later by the database's clock, too
    server, work = site.in_process(later(3600))
    server.stop()
    report = work.run_due()
    assert body["out_trade_no"] in report.reversed
    assert site.state(body["out_trade_no"]) is PaymentState.CLOSED
    assert site.balance(code) == "100.00"
    # The order is free again: the patient pays with a new code through a restarted gateway.
    fresh = site.sandbox.issue_code("WECHAT", "100.00", "success")["code"]
    status, reply = site.pos(site.gateway()).post("/v1/pay", pay_body(body["order_no"], fresh, 1250))
    assert (status, reply["state"]) == (200, "success")


def test_kill_9_of_postgresql_mid_payment_and_before_one(durable_pg, sandbox) -> None:
    conninfo = durable_pg.new_schema()
    db = PostgresDatabase(conninfo)
    db.migrate()
    site = Site(durable_pg.url(conninfo), db, sandbox)
    try:
        pos = site.pos(site.gateway())
        # 1. The database dies while the channel holds the money: the gateway cannot record the
        #    outcome, so it says "unavailable" (503), never "declined"; the POS will query.
        code = sandbox.issue_code("WECHAT", "100.00", "slow:2")["code"]
        body = pay_body("MZP" + uuid.uuid4().hex[:12], code, 1250)
        box = fire(pos, body)
        wait_until(lambda: site.balance(code) == "87.50", timeout=20, what="the channel to take the money")
        durable_pg.kill_9()
        box["thread"].join(timeout=30)
        status, reply = box["reply"]
        assert (status, reply["error"]["code"]) == (503, "database_unavailable")
        # 2. A request while the database is down: refused before anything is done.
        code2 = sandbox.issue_code("WECHAT", "100.00", "success")["code"]
        body2 = pay_body("MZP" + uuid.uuid4().hex[:12], code2, 700)
        status, reply = pos.post("/v1/pay", body2)
        assert (status, reply["error"]["code"]) == (503, "database_unavailable")
        assert site.balance(code2) == "100.00"
        durable_pg.start()
        # The same gateway process carries on with the restarted server (its pooled connections died).
        status, reply = pos.post("/v1/query", {"out_trade_no": body["out_trade_no"]})
        assert (status, reply["state"]) == (200, "success")  # the POS's query settles the ledger
        status, reply = pos.post("/v1/pay", body)  # the POS's retry gets the first outcome
        assert (status, reply["state"], reply["paid_fen"]) == (200, "success", 1250)
        status, reply = pos.post("/v1/pay", body2)  # the refused request runs now, once
        assert (status, reply["state"]) == (200, "success")
        assert (site.balance(code), site.balance(code2)) == ("87.50", "93.00")
        with db.transaction(write=False) as tx:
            states = dict(tx.all("SELECT out_trade_no, state FROM payments"))
        assert states == {body["out_trade_no"]: "succeeded", body2["out_trade_no"]: "succeeded"}
    finally:
        site.close()


def test_kill_9_of_postgresql_right_after_payments_loses_no_payment(durable_pg, sandbox) -> None:
    """Only the collection written before the channel call is committed durably; the settled state and
    the stored reply are not waited for (docs/gateway.md, "Commits"). Killed right after replies went
    out, the database may come back with some of them `paying` again: the POS's retry and the
    collections' jobs finish them from the channel; every payment the POS was told succeeded is succeeded, once."""
    conninfo = durable_pg.new_schema()
    db = PostgresDatabase(conninfo)
    db.migrate()
    site = Site(durable_pg.url(conninfo), db, sandbox)
    try:
        pos = site.pos(site.gateway())
        paid = []
        for _ in range(5):
            code = sandbox.issue_code("WECHAT", "100.00", "success")["code"]
            body = pay_body("MZQ" + uuid.uuid4().hex[:12], code, 1250)
            status, reply = pos.post("/v1/pay", body)
            assert (status, reply["state"]) == (200, "success")
            paid.append((body, code))
        durable_pg.kill_9()
        durable_pg.start()
        for body, _ in paid:  # the POS retries (as if a reply had been lost): the same outcome, never a second charge
            status, reply = pos.post("/v1/pay", body)
            assert (status, reply.get("state") or reply["error"]["code"]) in ((200, "success"), (409, "in_progress"))
        server, work = site.in_process(later(IN_PROGRESS_WINDOW_S + 1))
        server.stop()
        report = work.run_due()
        assert report.errors == []
        for body, code in paid:
            assert site.fleet.ledger.payment(body["out_trade_no"], hospital_id="H001").state is PaymentState.SUCCEEDED
            assert site.balance(code) == "87.50"
    finally:
        site.close()
