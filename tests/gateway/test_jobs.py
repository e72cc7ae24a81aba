"""The jobs table (gateway.jobs) on SQLite and on a real PostgreSQL server: the ledger writes a
collection's and a refund's job with it and deletes it when final; a claim is a lease; concurrent
claimers never get one job while its lease holds; a lease that ran out is taken over; the work
(gateway.channel_work) finishes what the POS left, against the real channel sandbox."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest

from gateway.channel_clients import ChannelFactory
from gateway.channel_work import ChannelWork, WorkReport
from gateway.db import Database, Dialect, PostgresDatabase
from gateway.jobs import FOLLOW_UP_AFTER_S, Job, JobKind, JobQueue, ms
from gateway.ledger import Ledger, PaymentState, RefundState
from gateway.migrations import migrate
from protocol.messages import PayChannel
from tests.clocks import ManualClock
from tests.gateway.fleet import make_fleet


def pass_time(db: Database, clock: ManualClock, seconds: float) -> None:
    """`seconds` pass for due times (the host clock) and for leases (the database's clock). SQLite's
    lease clock is the host clock; PostgreSQL's is the server's, which a test cannot step, so there
    every lease is moved back by as much instead (the same thing, seen from the lease)."""
    clock.now += seconds
    if db.dialect is Dialect.POSTGRES:
        with db.transaction() as tx:
            tx.execute("UPDATE jobs SET lease_until_ms = lease_until_ms - ? WHERE lease_until_ms IS NOT NULL", (ms(seconds),))


def _payment(ledger: Ledger, order_no: str | None = None, *, out_trade_no: str | None = None, fen: int = 1250):
    return ledger.start_payment(hospital_id="H001", terminal_id="T0001", device_id="H001-POS1", order_no=order_no or "MZ" + uuid.uuid4().hex[:12],
                                out_trade_no=out_trade_no or "P" + uuid.uuid4().hex[:20], channel=PayChannel.WECHAT, amount_fen=fen)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_790_000_000.0)


@pytest.fixture
def fleet(db: Database, clock: ManualClock):
    return make_fleet(db, devices=1, clock=clock)


def test_a_collection_is_recorded_with_its_job_and_its_settlement_deletes_it(db, fleet, clock) -> None:
    queue = JobQueue(db, owner="a", clock=clock)
    payment = _payment(fleet.ledger)
    job = queue.get(JobKind.PAYMENT, "H001", payment.out_trade_no)
    assert job is not None and job.due_at_ms == ms(clock.now + FOLLOW_UP_AFTER_S) and job.lease_owner is None
    fleet.ledger.settle_payment(payment.out_trade_no, hospital_id="H001", state=PaymentState.SUCCEEDED, channel_txn_id="T1")
    assert queue.get(JobKind.PAYMENT, "H001", payment.out_trade_no) is None
    # Reversing a succeeded collection owes the channel a reversal again: its job is back.
    fleet.ledger.settle_payment(payment.out_trade_no, hospital_id="H001", state=PaymentState.REVERSING)
    assert queue.get(JobKind.PAYMENT, "H001", payment.out_trade_no) is not None
    fleet.ledger.settle_payment(payment.out_trade_no, hospital_id="H001", state=PaymentState.CLOSED)
    assert queue.pending() == []


def test_a_refund_is_recorded_with_its_job_and_its_settlement_deletes_it(db, fleet, clock) -> None:
    queue = JobQueue(db, owner="a", clock=clock)
    payment = _payment(fleet.ledger)
    fleet.ledger.settle_payment(payment.out_trade_no, hospital_id="H001", state=PaymentState.SUCCEEDED)
    refund = fleet.ledger.start_refund(hospital_id="H001", order_no=payment.order_no, out_refund_no="R" + uuid.uuid4().hex[:12],
                                       amount_fen=500, device_id="H001-POS1")
    assert [(j.kind, j.subject) for j in queue.pending()] == [(JobKind.REFUND, refund.out_refund_no)]
    fleet.ledger.settle_refund(refund.out_refund_no, hospital_id="H001", state=RefundState.FAILED)
    assert queue.pending() == []


def test_a_refused_collection_leaves_no_job(db, fleet, clock) -> None:
    first = _payment(fleet.ledger, "MZ-ONCE")
    with pytest.raises(Exception):
        _payment(fleet.ledger, "MZ-ONCE")  # duplicate_order: rolled back with its job
    assert [j.subject for j in JobQueue(db, owner="a", clock=clock).pending()] == [first.out_trade_no]


def test_a_claim_is_a_lease_that_only_its_owner_ends(db, fleet, clock) -> None:
    a, b = JobQueue(db, owner="a", clock=clock), JobQueue(db, owner="b", clock=clock)
    payment = _payment(fleet.ledger)
    assert a.claim(lease_s=30) is None  # not due yet
    clock.now += FOLLOW_UP_AFTER_S
    job = a.claim(lease_s=30)
    assert job is not None and (job.subject, job.lease_owner, job.attempts) == (payment.out_trade_no, "a", 1)
    assert b.claim(lease_s=30) is None  # leased to a
    pass_time(db, clock, 29)
    assert b.claim(lease_s=30) is None
    pass_time(db, clock, 2)  # a's lease ran out (a died, or hangs): b takes it over
    taken = b.claim(lease_s=30)
    assert taken is not None and (taken.job_id, taken.lease_owner, taken.attempts) == (job.job_id, "b", 2)
    # a comes back late: it can neither finish nor reschedule what b now holds.
    assert not a.done(job) and not a.retry(job, after_s=5)
    assert b.retry(taken, after_s=5, error="channel: timeout")
    again = b.get(JobKind.PAYMENT, "H001", payment.out_trade_no)
    assert again is not None and again.lease_owner is None and again.last_error == "channel: timeout"
    assert again.due_at_ms == ms(clock.now + 5)
    clock.now += 5
    last = b.claim(lease_s=30)
    assert last is not None and b.done(last) and b.pending() == []


def test_the_most_overdue_job_is_claimed_first(db, fleet, clock) -> None:
    queue = JobQueue(db, owner="a", clock=clock)
    first = _payment(fleet.ledger)
    clock.now += 10
    second = _payment(fleet.ledger)
    clock.now += FOLLOW_UP_AFTER_S
    claims = [queue.claim(lease_s=30) for _ in range(2)]
    assert [c.subject if c else None for c in claims] == [first.out_trade_no, second.out_trade_no]
    assert queue.claim(lease_s=30) is None


def test_concurrent_claimers_never_hold_one_job_at_once(db, fleet, clock) -> None:
    """Eight claimers (threads, each with its own connections, as processes have) race over 60 due
    jobs: every job is claimed exactly once, whatever the interleaving."""
    subjects = {_payment(fleet.ledger).out_trade_no for _ in range(60)}
    clock.now += FOLLOW_UP_AFTER_S
    claimed: dict[str, list[str]] = {}
    lock = threading.Lock()
    start = threading.Barrier(8)

    def claimer(owner: str) -> None:
        queue = JobQueue(db, owner=owner, clock=clock)
        start.wait()
        while (job := queue.claim(lease_s=300)) is not None:
            with lock:
                claimed.setdefault(job.subject, []).append(owner)

    threads = [threading.Thread(target=claimer, args=(f"p{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert set(claimed) == subjects
    assert {s: len(o) for s, o in claimed.items() if len(o) != 1} == {}


# --- leases on the database's clock (PostgreSQL: gateway hosts whose clocks disagree) -----------

@pytest.fixture
def pg_fleet(pg_server):
    """Hospital H001 on a PostgreSQL schema of its own."""
    db = PostgresDatabase(pg_server.new_schema())
    db.migrate()
    yield make_fleet(db, devices=1)
    db.close()


@pytest.fixture
def pg_db(pg_fleet):
    return pg_fleet.ledger.db


def _due_jobs(queue: JobQueue, count: int) -> set[str]:
    """`count` jobs already due by every clock in these tests, the ones stepped an hour back included
    (due exactly an hour ago, a clock stepped back an hour would find them due only if no millisecond
    had passed since)."""
    subjects = {f"P{n:03d}-{uuid.uuid4().hex[:8]}" for n in range(count)}
    for subject in subjects:
        queue.add(JobKind.PAYMENT, "H001", subject, due_at_ms=ms(time.time() - 3 * 3600))
    return subjects


def test_hosts_whose_clocks_differ_by_minutes_never_both_hold_a_job(pg_db) -> None:
    """Two gateway hosts on one PostgreSQL, one clock 10 minutes behind, one 10 minutes ahead, lease
    2 minutes: by the hosts' clocks the ahead one would see every lease of the other long run out
    and take the job while it is being worked on. By the database's clock neither takes what the
    other holds, and each of 40 jobs is claimed exactly once."""
    behind = JobQueue(pg_db, owner="behind", clock=lambda: time.time() - 600)
    ahead = JobQueue(pg_db, owner="ahead", clock=lambda: time.time() + 600)
    subjects = _due_jobs(behind, 40)
    claimed: dict[str, list[str]] = {}
    lock = threading.Lock()
    start = threading.Barrier(2)

    def claimer(queue: JobQueue) -> None:
        start.wait()
        while (job := queue.claim(lease_s=120)) is not None:
            with lock:
                claimed.setdefault(job.subject, []).append(queue.owner)

    threads = [threading.Thread(target=claimer, args=(q,)) for q in (behind, ahead)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert set(claimed) == subjects
    assert {s: o for s, o in claimed.items() if len(o) != 1} == {}
    assert ahead.claim(lease_s=120) is None and behind.claim(lease_s=120) is None  # every job still held


def test_a_stepped_clock_neither_expires_a_live_lease_nor_keeps_a_dead_one(pg_db) -> None:
    host_clock = ManualClock(time.time())
    holder = JobQueue(pg_db, owner="holder", clock=time.time)
    other = JobQueue(pg_db, owner="other", clock=host_clock)
    _due_jobs(holder, 1)
    job = holder.claim(lease_s=120)
    assert job is not None
    host_clock.now += 3600  # the other host's clock is stepped an hour forward (a bad NTP source, an operator)
    assert other.claim(lease_s=120) is None
    host_clock.now -= 7200  # and an hour back: a lease that ran out on the database's clock is still taken over
    assert holder.renew(job, lease_s=0) is not None  # the holder hangs; its lease runs out now
    taken = other.claim(lease_s=120)
    assert taken is not None and (taken.job_id, taken.lease_owner, taken.attempts) == (job.job_id, "other", 2)
    assert holder.renew(job, lease_s=120) is None and not holder.done(job)  # no longer the holder's


def test_a_collection_recorded_by_a_host_10_minutes_behind_gets_its_full_patience_on_another(pg_fleet, sandbox) -> None:
    """Host A, its clock 10 minutes behind, records a collection the patient is still confirming; host
    B, on the right time, runs its job (due at once by B's clock: a schedule, which tolerates that).
    B queries and waits: the 120 s of patience before a reversal are the database's seconds, so B
    does not reverse a payment A started a moment ago (on A's clock it would be 10 minutes old)."""
    from tests.gateway.test_api import onboard

    onboard(pg_fleet, sandbox)
    db = pg_fleet.ledger.db
    behind = Ledger(db, clock=lambda: time.time() - 600)
    channels = ChannelFactory(pg_fleet.directory, overrides={"read_timeout_s": 2.0})
    payment = _payment(behind)
    code = sandbox.issue_code("WECHAT", "100.00", "userpaying_forever")["code"]
    outcome = channels.client("H001", PayChannel.WECHAT).pay(out_trade_no=payment.out_trade_no, auth_code=code, total_fen=1250, subject="t")
    assert outcome.state.value == "user_paying"  # the patient is entering the password
    work = ChannelWork(pg_fleet.ledger, channels, JobQueue(db, owner="b", clock=time.time), clock=time.time,
                       abandon_after_s=120, requery_s=10)
    report = work.run_due()
    assert report.still_open == [payment.out_trade_no] and report.reversed == []
    assert pg_fleet.ledger.payment(payment.out_trade_no, hospital_id="H001").state is PaymentState.PAYING
    job = work.queue.get(JobKind.PAYMENT, "H001", payment.out_trade_no)
    assert job is not None and job.lease_owner is None and job.due_at_ms > ms(time.time())  # queried again later


@dataclass
class Running:
    """Which host is running which job, seen by both hosts' work; and any job two ran at once."""

    hosts: dict[int, str] = field(default_factory=dict)
    overlaps: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class HeldWork:
    """The bills jobs' work of one gateway host in the test below (ChannelWork's `bills`): it notes
    that this host runs the job, and holds it until the test lets it go."""

    def __init__(self, host: str, running: Running) -> None:
        self.host, self.running = host, running
        self.started, self.release = threading.Event(), threading.Event()

    def schedule(self, queue: JobQueue, now: float) -> int:
        return 0

    def run(self, job: Job, report: WorkReport) -> None:
        with self.running.lock:
            if job.job_id in self.running.hosts:
                self.running.overlaps.append((job.subject, self.running.hosts[job.job_id], self.host))
            self.running.hosts[job.job_id] = self.host
        self.started.set()
        assert self.release.wait(30)
        with self.running.lock:
            self.running.hosts.pop(job.job_id, None)
        report.bills.append(job.subject)


def test_two_job_runners_whose_clocks_are_20_minutes_apart_never_run_one_job_at_once(pg_fleet) -> None:
    """What each JobRunner thread does (ChannelWork.run_one) on two gateway hosts, one 10 minutes
    behind and one 10 minutes ahead: while the first runs a job, the second, looking for due jobs
    again and again, never takes it, however long ago its lease began by the second host's clock."""
    db = pg_fleet.ledger.db
    running = Running()
    hosts = {}
    for name, skew in (("behind", -600), ("ahead", +600)):
        clock = lambda skew=skew: time.time() + skew  # noqa: E731 - the host's clock
        work = HeldWork(name, running)
        hosts[name] = (ChannelWork(pg_fleet.ledger, ChannelFactory(pg_fleet.directory), JobQueue(db, owner=name, clock=clock),
                                   clock=clock, lease_s=120, bills=work), work)
    (behind, behind_work), (ahead, ahead_work) = hosts["behind"], hosts["ahead"]
    ahead_work.release.set()  # only the first host's job is held
    behind.queue.add(JobKind.BILLS, "H001", "2026-12-01", due_at_ms=ms(time.time() - 3600))
    first = threading.Thread(target=behind.run_one)
    first.start()
    try:
        assert behind_work.started.wait(30)  # the host behind is running the day's bills
        for _ in range(20):
            assert ahead.run_one() is None  # to the host ahead the lease began 20 minutes ago: still not its job
    finally:
        behind_work.release.set()
        first.join(timeout=30)
    assert running.overlaps == [] and behind.queue.pending() == []


def test_a_renewed_lease_holds_past_its_first_end(db, fleet, clock) -> None:
    a, b = JobQueue(db, owner="a", clock=clock), JobQueue(db, owner="b", clock=clock)
    payment = _payment(fleet.ledger)
    clock.now += FOLLOW_UP_AFTER_S
    job = a.claim(lease_s=30)
    assert job is not None
    pass_time(db, clock, 20)
    first = a.get(JobKind.PAYMENT, "H001", payment.out_trade_no)  # its lease 20 s later (on PostgreSQL moved back by them)
    assert first is not None and first.lease_until_ms is not None
    renewed = a.renew(job, lease_s=30)
    assert renewed is not None and renewed.lease_owner == "a" and renewed.lease_until_ms is not None
    assert renewed.lease_until_ms >= first.lease_until_ms + 20_000
    pass_time(db, clock, 20)  # 40 s after the claim: past the first lease, within the renewed one
    assert b.claim(lease_s=30) is None
    pass_time(db, clock, 11)
    taken = b.claim(lease_s=30)
    assert taken is not None and taken.subject == payment.out_trade_no and a.renew(job, lease_s=30) is None


def test_migration_6_turns_what_is_under_way_into_due_jobs(raw_db) -> None:
    migrate(raw_db, upto=4)
    make_fleet(raw_db, devices=1)
    with raw_db.transaction() as tx:  # the ledger as version 4 left it: one paying, one paid with a refund under way
        for no, state in (("P-PAYING", "paying"), ("P-PAID", "succeeded")):
            tx.execute("INSERT INTO payments (hospital_id, terminal_id, device_id, order_no, out_trade_no, channel, amount_fen, state, "
                       "local_day, created_at, updated_at) VALUES ('H001', 'T0001', 'H001-POS1', ?, ?, 'WECHAT', 1250, ?, '2026-12-01', 7, 7)",
                       ("MZ" + no, no, state))
        paid = tx.scalar("SELECT payment_id FROM payments WHERE out_trade_no = 'P-PAID'")
        tx.execute("INSERT INTO refunds (payment_id, hospital_id, out_refund_no, amount_fen, state, device_id, created_at, updated_at) "
                   "VALUES (?, 'H001', 'R-OLD', 100, 'refunding', 'H001-POS1', 8, 8)", (paid,))
    migrate(raw_db)
    pending = JobQueue(raw_db, owner="a").pending()
    assert sorted((j.kind.value, j.subject, j.due_at_ms, j.created_at_ms) for j in pending) == [
        ("payment", "P-PAYING", 0, 7000), ("refund", "R-OLD", 0, 8000)]


# --- the work, against the real sandbox ---------------------------------------------------------

@pytest.fixture
def site(db, sandbox, clock):
    from tests.gateway.test_api import onboard

    fleet = make_fleet(db, devices=1, clock=clock)
    onboard(fleet, sandbox)
    channels = ChannelFactory(fleet.directory, overrides={"read_timeout_s": 2.0})
    work = ChannelWork(fleet.ledger, channels, JobQueue(db, owner="w", clock=clock), clock=clock, abandon_after_s=120, requery_s=10)
    return fleet, channels, work


def test_a_refund_the_channel_never_saw_is_sent_by_its_job_once(site, sandbox, clock) -> None:
    fleet, channels, work = site
    code = sandbox.issue_code("WECHAT", "100.00", "success")["code"]
    payment = _payment(fleet.ledger, fen=2000)
    outcome = channels.client("H001", PayChannel.WECHAT).pay(out_trade_no=payment.out_trade_no, auth_code=code, total_fen=2000, subject="t")
    assert outcome.state.value == "success"
    fleet.ledger.settle_payment(payment.out_trade_no, hospital_id="H001", state=PaymentState.SUCCEEDED)
    # The gateway recorded the refund and died before calling the channel.
    refund = fleet.ledger.start_refund(hospital_id="H001", order_no=payment.order_no, out_refund_no="R" + uuid.uuid4().hex[:12],
                                       amount_fen=700, device_id="H001-POS1")
    assert work.run_due().ran() == 0  # not due: a request could still be working on it
    clock.now += FOLLOW_UP_AFTER_S
    report = work.run_due()
    assert report.resent_refunds == [refund.out_refund_no]  # accepted: WeChat Pay says PROCESSING, then SUCCESS
    assert report.settled == [] and report.still_open == [refund.out_refund_no]
    clock.now += 60
    assert work.run_due().settled == [refund.out_refund_no]
    assert fleet.ledger.refund(refund.out_refund_no, hospital_id="H001").state is RefundState.SUCCEEDED
    assert sandbox.account(code)["balance"] == "87.00"
    clock.now += 3600
    assert work.run_due().ran() == 0 and work.queue.pending() == []  # nothing more is owed


def test_the_pos_asking_while_the_gateway_reverses_gets_unknown_then_the_ledgers_final_state(site, sandbox, clock) -> None:
    """The POS that comes back asks /v1/query: while the gateway's job is reversing the payment the
    answer is `unknown` (never the channel's state of a moment before the reversal lands); once
    reversed, the ledger answers."""
    import time

    from gateway.api import GatewayHttpServer
    from gateway.service import GatewayService
    from terminal.gateway_client import GatewayConnection
    from tests.gateway.test_api import pay_body

    fleet, channels, work = site
    server = GatewayHttpServer(GatewayService(fleet.directory, fleet.ledger, channels, clock=time.time)).start()
    try:
        pos = GatewayConnection(server.url, device_id="H001-POS1", seed=fleet.seeds["H001-POS1"])
        code = sandbox.issue_code("WECHAT", "100.00", "userpaying_forever")["code"]
        body = pay_body("MZR" + uuid.uuid4().hex[:10], code, 1250)
        assert pos.post("/v1/pay", body)[1]["state"] == "user_paying"
        fleet.ledger.settle_payment(body["out_trade_no"], hospital_id="H001", state=PaymentState.REVERSING)  # the job decided
        status, reply = pos.post("/v1/query", {"out_trade_no": body["out_trade_no"]})
        assert (status, reply["state"]) == (200, "unknown")
        clock.now += FOLLOW_UP_AFTER_S
        assert work.run_due().reversed == [body["out_trade_no"]]
        status, reply = pos.post("/v1/query", {"out_trade_no": body["out_trade_no"]})
        assert (status, reply["state"], reply["message"]) == (200, "closed", "recovered from the gateway's ledger")
        assert sandbox.account(code)["balance"] == "100.00"
    finally:
        server.stop()
