"""What the gateway's jobs do (`gateway.jobs`), and the loop that runs them in every gateway process.

A collection or refund whose request ended without a final outcome (the patient still confirming on
the phone, no answer from the channel, the POS gone offline or without power, the gateway process
killed) is finished here, from its job, whatever the POS does; the POS that comes back asks the
gateway for the outcome (`/v1/query`, answered from the ledger once it is final).

- payment, `paying`: the channel is queried; a final answer settles the ledger. Still not final
  ABANDON_AFTER_S after it was recorded, by the database's clock, which wrote the job (the POS, whose own loop gives up at 30 s, did not reverse
  it), the gateway reverses it, so the patient is never left charged for an order HIS was not told
  was paid; until then it is queried again every REQUERY_INTERVAL_S;
- payment, `reversing`: the reversal is sent (again: idempotent at both channels) until done;
- refund, `refunding`: the refund is queried; if the channel never saw it, it is sent again with the
  same out_refund_no (the channel refunds an out_refund_no once) and amount; otherwise queried again;
- bills: the hospital's channel bills of a day are downloaded (`gateway.bills`);
- alipay_token: a third-party-mode hospital's Alipay app_auth_token is refreshed before it ends
  (`gateway.alipay_authorizations`; the job reschedules itself after each refresh).

Failures (the channel or the database away, a reply that does not verify) are retried with a
growing pause (RETRY_BACKOFF_S, capped); after ALARM_AFTER_ATTEMPTS tries an alarm tells the
operators, once, and the job goes on. Every decision is re-checked under the ledger's row locks, so a
job racing the POS's own query or reversal is harmless.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from gateway.alarms import AlarmKind, Alarms
from gateway.channel_clients import ChannelFactory
from gateway.errors import GatewayCode, GatewayError
from gateway.jobs import Job, JobKind, JobQueue, RunAgain
from gateway.ledger import PAYMENT_FINAL, REFUND_FINAL, Ledger, PaymentState, RefundState
from terminal.channels.base import PayState, RefundState as ChannelRefundState, ReverseState

log = logging.getLogger(__name__)

# A collection still not final this long after it was recorded is reversed by the gateway. Beyond the
# POS's own loop (queries for 30 s, then reverses) and WeChat Pay's own revocation of unpaid code
# payments (45 s), so the gateway only reverses what nobody else will.
ABANDON_AFTER_S = 120
REQUERY_INTERVAL_S = 10
# Pauses between tries of a job that failed (channel or database away): doubling, capped.
RETRY_BACKOFF_S = 5.0
RETRY_BACKOFF_MAX_S = 600.0
# A refund the channel is still processing is asked about again this often.
REFUND_REQUERY_S = 60.0
# A job's lease: longer than one job can run (two channel calls, each bounded at 35 s).
LEASE_S = 120.0
# How often an idle runner looks for due jobs.
POLL_INTERVAL_S = 2.0
# Tries after which the operators are told (an alarm), once per job.
ALARM_AFTER_ATTEMPTS = 10
# How often a process checks that the daily jobs (yesterday's bills) are scheduled.
DAILY_CHECK_S = 600.0

_PAY_FINAL = {PayState.SUCCESS: PaymentState.SUCCEEDED, PayState.FAILED: PaymentState.FAILED, PayState.CLOSED: PaymentState.CLOSED}
_REFUND_FINAL = {ChannelRefundState.SUCCESS: RefundState.SUCCEEDED, ChannelRefundState.FAILED: RefundState.FAILED}


def default_owner() -> str:
    """This process, as a lease owner: host and pid (what an operator sees in `gateway-admin jobs list`)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class WorkReport:
    settled: list[str] = field(default_factory=list)  # out_trade_no / out_refund_no now final
    reversed: list[str] = field(default_factory=list)
    resent_refunds: list[str] = field(default_factory=list)
    still_open: list[str] = field(default_factory=list)  # rescheduled: not final yet
    bills: list[str] = field(default_factory=list)  # "H001 2026-12-01"
    tokens: list[str] = field(default_factory=list)  # hospitals whose Alipay app_auth_token was refreshed
    certificates: list[str] = field(default_factory=list)  # "1900000109: SERIAL, SERIAL" (WeChat Pay platform certificates)
    errors: list[str] = field(default_factory=list)

    def ran(self) -> int:
        return (len(self.settled) + len(self.reversed) + len(self.still_open) + len(self.bills) + len(self.tokens) + len(self.certificates)
                + len(self.errors))


class JobWork(Protocol):
    """A kind of job's work done by a collaborator (the Alipay token refresh: gateway.alipay_authorizations)."""

    def run(self, job: Job, report: WorkReport) -> None: ...


class DailyBills(Protocol):
    """The bills jobs' work (`gateway.bills.BillFetcher`); the same shape for the WeChat Pay platform
    certificates' (`gateway.wechat_certificates.CertificateRefresher`)."""

    def schedule(self, queue: JobQueue, now: float) -> int: ...

    def run(self, job: Job, report: WorkReport) -> None: ...


def backoff_s(attempts: int) -> float:
    return min(RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_S * 2 ** max(0, min(attempts - 1, 20)))


class ChannelWork:
    """Runs due jobs; `bills` (a `gateway.bills.BillFetcher`) handles the bills jobs when given."""

    def __init__(self, ledger: Ledger, channels: ChannelFactory, queue: JobQueue, *, clock: Callable[[], float] = time.time,
                 abandon_after_s: float = ABANDON_AFTER_S, requery_s: float = REQUERY_INTERVAL_S, lease_s: float = LEASE_S,
                 bills: DailyBills | None = None, alipay_tokens: JobWork | None = None,
                 certificates: DailyBills | None = None) -> None:
        self.ledger = ledger
        self.channels = channels
        self.queue = queue
        self.alarms = Alarms(ledger.db, clock=clock)
        self._clock = clock
        self.abandon_after_s = abandon_after_s
        self.requery_s = requery_s
        self.lease_s = lease_s
        self.bills = bills
        self.alipay_tokens = alipay_tokens
        self.certificates = certificates
        self._last_daily = float("-inf")
        self._daily_lock = threading.Lock()

    def schedule_daily(self) -> None:
        """Schedule the daily jobs (yesterday's bills of every hospital, the platform certificates' refresh) if not done lately."""
        if self.bills is None and self.certificates is None:
            return
        now = self._clock()
        with self._daily_lock:
            if now - self._last_daily < DAILY_CHECK_S:
                return
            self._last_daily = now
        for daily in (self.bills, self.certificates):
            if daily is not None:
                daily.schedule(self.queue, now)

    def kinds(self) -> tuple[JobKind, ...]:
        kinds = [JobKind.PAYMENT, JobKind.REFUND]
        if self.bills is not None:
            kinds.append(JobKind.BILLS)
        if self.alipay_tokens is not None:
            kinds.append(JobKind.ALIPAY_TOKEN)
        if self.certificates is not None:
            kinds.append(JobKind.WECHAT_CERTS)
        return tuple(kinds)

    def run_one(self, report: WorkReport | None = None) -> Job | None:
        """Claim and run one due job; the job, or None when nothing is due."""
        report = report if report is not None else WorkReport()
        job = self.queue.claim(lease_s=self.lease_s, kinds=self.kinds())
        if job is None:
            return None
        log.info("job %d %s %s %s: attempt %d by %s", job.job_id, job.kind.value, job.hospital_id, job.subject, job.attempts, self.queue.owner)
        try:
            self._run(job, report)
        except RunAgain as again:
            self.queue.retry(job, after_s=again.after_s, error=again.error)
            if again.error:
                report.errors.append(f"{job.subject}: {again.error}")
                self._maybe_alarm(job, again.error)
            return job
        except GatewayError as exc:  # the channel's settings, the database: try again later
            self.queue.retry(job, after_s=backoff_s(job.attempts), error=exc.code.value)
            report.errors.append(f"{job.subject}: {exc.code.value}")
            self._maybe_alarm(job, exc.message)
            return job
        self.queue.done(job)
        return job

    def run_due(self, *, max_jobs: int = 10_000) -> WorkReport:
        """Run jobs until none is due (or `max_jobs`); what was done."""
        report = WorkReport()
        self.schedule_daily()
        for _ in range(max_jobs):
            if self.run_one(report) is None:
                break
        if report.ran():
            log.info("jobs: settled %d, reversed %d, refunds re-sent %d, still open %d, bills %d, errors %s", len(report.settled),
                     len(report.reversed), len(report.resent_refunds), len(report.still_open), len(report.bills), report.errors)
        return report

    def _run(self, job: Job, report: WorkReport) -> None:
        if job.kind is JobKind.PAYMENT:
            self._payment(job, report)
        elif job.kind is JobKind.REFUND:
            self._refund(job, report)
        elif job.kind is JobKind.ALIPAY_TOKEN and self.alipay_tokens is not None:  # kinds() claims them only then
            self.alipay_tokens.run(job, report)
        elif job.kind is JobKind.BILLS and self.bills is not None:
            self.bills.run(job, report)
        elif job.kind is JobKind.WECHAT_CERTS and self.certificates is not None:
            self.certificates.run(job, report)

    # --- collections ----------------------------------------------------------------------------

    def _payment(self, job: Job, report: WorkReport) -> None:
        try:
            payment = self.ledger.payment(job.subject, hospital_id=job.hospital_id)
        except GatewayError as exc:
            if exc.code is GatewayCode.UNKNOWN_PAYMENT:  # cannot happen (same transaction); nothing to do
                return
            raise
        if payment.state in PAYMENT_FINAL:
            return
        client = self.channels.client(payment.hospital_id, payment.channel)
        if payment.state is PaymentState.PAYING:
            outcome = client.query(payment.out_trade_no)
            final = _PAY_FINAL.get(outcome.state)
            if final is not None:
                result_code = outcome.result_code.value if outcome.result_code else outcome.channel_code
                self.ledger.settle_payment(payment.out_trade_no, hospital_id=payment.hospital_id, state=final,
                                           channel_txn_id=outcome.channel_txn_id, result_code=result_code)
                report.settled.append(payment.out_trade_no)
                return
            # Its age on the database's clock, which recorded it: a host whose clock is off neither
            # reverses a payment the patient is still confirming nor keeps one past its patience.
            age = (self.queue.clock_ms() - job.created_at_ms) / 1000
            if age < self.abandon_after_s:
                report.still_open.append(payment.out_trade_no)
                raise RunAgain(min(self.requery_s, self.abandon_after_s - age))
            try:
                self.ledger.settle_payment(payment.out_trade_no, hospital_id=payment.hospital_id, state=PaymentState.REVERSING)
            except GatewayError as exc:
                if exc.code is GatewayCode.BAD_TRANSITION:  # settled meanwhile (the POS's query): look again at once
                    raise RunAgain(0) from None
                raise
        reverse = client.reverse(payment.out_trade_no)
        if reverse.state is ReverseState.DONE:
            self.ledger.settle_payment(payment.out_trade_no, hospital_id=payment.hospital_id, state=PaymentState.CLOSED)
            report.reversed.append(payment.out_trade_no)
            return
        report.still_open.append(payment.out_trade_no)
        raise RunAgain(backoff_s(job.attempts), f"reverse {reverse.state.value} {reverse.channel_code or ''}".strip())

    # --- refunds --------------------------------------------------------------------------------

    def _refund(self, job: Job, report: WorkReport) -> None:
        try:
            refund = self.ledger.refund(job.subject, hospital_id=job.hospital_id)
        except GatewayError as exc:
            if exc.code is GatewayCode.UNKNOWN_REFUND:
                return
            raise
        if refund.state in REFUND_FINAL:
            return
        payment = self.ledger.payment_by_id(refund.payment_id)
        client = self.channels.client(payment.hospital_id, payment.channel)
        outcome = client.refund_query(out_trade_no=payment.out_trade_no, out_refund_no=refund.out_refund_no)
        if outcome.state is ChannelRefundState.NOT_FOUND:
            outcome = client.refund(out_trade_no=payment.out_trade_no, out_refund_no=refund.out_refund_no,
                                    total_fen=payment.amount_fen, refund_fen=refund.amount_fen, reason="patient refund")
            report.resent_refunds.append(refund.out_refund_no)
        final = _REFUND_FINAL.get(outcome.state)
        if final is None:
            report.still_open.append(refund.out_refund_no)
            if outcome.state is ChannelRefundState.PROCESSING:
                raise RunAgain(REFUND_REQUERY_S)
            raise RunAgain(backoff_s(job.attempts), f"refund {outcome.state.value} {outcome.channel_code or ''}".strip())
        self.ledger.settle_refund(refund.out_refund_no, hospital_id=refund.hospital_id, state=final,
                                  channel_refund_id=outcome.channel_refund_id)
        report.settled.append(refund.out_refund_no)

    # --- operators ------------------------------------------------------------------------------

    def _maybe_alarm(self, job: Job, error: str) -> None:
        if job.attempts != ALARM_AFTER_ATTEMPTS or job.kind not in (JobKind.PAYMENT, JobKind.REFUND):
            return
        kind, reason = ((AlarmKind.COLLECT, "reverse_failing") if job.kind is JobKind.PAYMENT
                        else (AlarmKind.REFUND, "refund_abnormal" if "abnormal" in error else "refund_unconfirmed"))
        try:
            self.alarms.raise_alarm(hospital_id=job.hospital_id, kind=kind, reason=reason, reference=job.subject,
                                    message=f"the gateway's job has failed {job.attempts} times: {error}")
        except GatewayError as exc:
            log.warning("job %d: the alarm could not be stored: %s", job.job_id, exc)


class JobRunner:
    """`ChannelWork.run_due()` now and every `interval_s` on `workers` daemon threads, until `stop()`."""

    def __init__(self, work: ChannelWork, interval_s: float = POLL_INTERVAL_S, *, workers: int = 2) -> None:
        self.work = work
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"gateway-jobs-{n}", daemon=True) for n in range(max(1, workers))]

    def start(self) -> "JobRunner":
        for thread in self._threads:
            thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.work.schedule_daily()
                while not self._stop.is_set() and self.work.run_one() is not None:
                    pass
            except GatewayError as exc:  # the database is away: try again next round
                log.warning("jobs skipped: %s", exc)
            except Exception:  # noqa: BLE001 - a bug must not end the loop silently; it is logged
                log.exception("job runner failed")
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
