"""Finishing the work of requests that died: collections and refunds the ledger holds as under way
(`paying`, `reversing`, `refunding`) long after any request could still be working on them.

A gateway process killed (kill -9, power, a crash) between writing a collection as `paying` and
storing the channel's answer leaves the row under way; so does a POS that went offline before it
queried. Every gateway process runs `Recovery.run_once()` at start and then every
RECOVERY_INTERVAL_S (`payment-gateway --recovery-interval`):

- `paying`, idle for STALE_AFTER_S: the channel is queried; a final answer settles the row. Still not
  final ABANDON_AFTER_S after it was created (the POS, whose own deadline is 30 s, never came back
  to query and reverse), the gateway reverses it, so the patient is never left charged for an
  order HIS does not know was paid;
- `reversing`, idle: the reversal is sent again (idempotent at both channels) until it is done;
- `refunding`, idle: the refund is queried; if the channel never saw it, it is sent again with the
  same out_refund_no (the channel refunds an out_refund_no once) and amount.

Everything here is idempotent and every decision is re-checked under the ledger's row locks, so
several gateway processes sweeping at once, or a sweep racing the POS's own query, are harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from gateway.channel_clients import ChannelFactory
from gateway.errors import GatewayError
from gateway.ledger import Ledger, Payment, PaymentState, Refund, RefundState
from terminal.channels.base import PayState, RefundState as ChannelRefundState, ReverseState

log = logging.getLogger(__name__)

# Longer than any request can run (a channel call is bounded at 35 s by its client's timeouts).
STALE_AFTER_S = 60
# A collection still not final this long after it started is reversed by the gateway.
ABANDON_AFTER_S = 600
RECOVERY_INTERVAL_S = 30

_PAY_FINAL = {PayState.SUCCESS: PaymentState.SUCCEEDED, PayState.FAILED: PaymentState.FAILED, PayState.CLOSED: PaymentState.CLOSED}
_REFUND_FINAL = {ChannelRefundState.SUCCESS: RefundState.SUCCEEDED, ChannelRefundState.FAILED: RefundState.FAILED}


@dataclass
class RecoveryReport:
    settled: list[str] = field(default_factory=list)  # out_trade_no / out_refund_no now final
    reversed: list[str] = field(default_factory=list)
    resent_refunds: list[str] = field(default_factory=list)
    still_open: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Recovery:
    def __init__(self, ledger: Ledger, channels: ChannelFactory, *, clock: Callable[[], float] = time.time,
                 stale_after_s: float = STALE_AFTER_S, abandon_after_s: float = ABANDON_AFTER_S) -> None:
        self.ledger = ledger
        self.channels = channels
        self._clock = clock
        self.stale_after_s = stale_after_s
        self.abandon_after_s = abandon_after_s

    def run_once(self) -> RecoveryReport:
        now = self._clock()
        report = RecoveryReport()
        for payment, created_at in self.ledger.unsettled_payments(idle_since=now - self.stale_after_s):
            try:
                self._payment(payment, created_at, now, report)
            except GatewayError as exc:  # one row's trouble (a channel down, a race lost) never stops the sweep
                report.errors.append(f"{payment.out_trade_no}: {exc.code.value}")
        for refund, payment in self.ledger.unsettled_refunds(idle_since=now - self.stale_after_s):
            try:
                self._refund(refund, payment, report)
            except GatewayError as exc:
                report.errors.append(f"{refund.out_refund_no}: {exc.code.value}")
        if report.settled or report.reversed or report.resent_refunds or report.errors:
            log.info("recovery: settled %d, reversed %d, refunds re-sent %d, still open %d, errors %s", len(report.settled),
                     len(report.reversed), len(report.resent_refunds), len(report.still_open), report.errors)
        return report

    def _payment(self, payment: Payment, created_at: int, now: float, report: RecoveryReport) -> None:
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
            if now - created_at < self.abandon_after_s:
                report.still_open.append(payment.out_trade_no)
                return
            self.ledger.settle_payment(payment.out_trade_no, hospital_id=payment.hospital_id, state=PaymentState.REVERSING)
        reverse = client.reverse(payment.out_trade_no)
        if reverse.state is ReverseState.DONE:
            self.ledger.settle_payment(payment.out_trade_no, hospital_id=payment.hospital_id, state=PaymentState.CLOSED)
            report.reversed.append(payment.out_trade_no)
        else:
            report.still_open.append(payment.out_trade_no)

    def _refund(self, refund: Refund, payment: Payment, report: RecoveryReport) -> None:
        client = self.channels.client(payment.hospital_id, payment.channel)
        outcome = client.refund_query(out_trade_no=payment.out_trade_no, out_refund_no=refund.out_refund_no)
        if outcome.state is ChannelRefundState.NOT_FOUND:
            outcome = client.refund(out_trade_no=payment.out_trade_no, out_refund_no=refund.out_refund_no,
                                    total_fen=payment.amount_fen, refund_fen=refund.amount_fen, reason="patient refund")
            report.resent_refunds.append(refund.out_refund_no)
        final = _REFUND_FINAL.get(outcome.state)
        if final is None:
            report.still_open.append(refund.out_refund_no)
            return
        self.ledger.settle_refund(refund.out_refund_no, hospital_id=refund.hospital_id, state=final,
                                  channel_refund_id=outcome.channel_refund_id)
        report.settled.append(refund.out_refund_no)


class RecoveryLoop:
    """`Recovery.run_once()` now and every `interval_s` on a daemon thread, until `stop()`."""

    def __init__(self, recovery: Recovery, interval_s: float = RECOVERY_INTERVAL_S) -> None:
        self.recovery = recovery
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-recovery", daemon=True)

    def start(self) -> "RecoveryLoop":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.recovery.run_once()
            except GatewayError as exc:  # the database is away: try again next round
                log.warning("recovery sweep skipped: %s", exc)
            except Exception:  # noqa: BLE001 - a bug must not end the loop silently; it is logged
                log.exception("recovery sweep failed")
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
