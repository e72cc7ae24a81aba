"""The worker that talks to the channel for one instruction, on its own thread.

One loop: read the instruction's state (under the service lock), make the channel call that state
calls for (outside the lock), commit what the answer means (terminal.machine's decision functions),
and again, until the instruction waits for a person or is finished.

    PAYING             pay, once, with the code the cashier just scanned. Without that code (we are
                       after a restart: the call may or may not have gone out) -> RESTART -> query.
    CONFIRMING         query now, then every query interval; NOT_FOUND three times or the deadline
                       -> reverse. Never a second pay.
    USER_PAYING        query every interval until the deadline, then once more, then reverse.
    REVERSING          not before the channel's minimum after the payment (WeChat Pay: 15 s, also
                       when the cashier cancels), reverse until the channel says done; if it refuses,
                       query: paid -> SUCCESS (the money is taken and HIS must know), else CLOSED.
    REFUNDING          refund with the instruction's out_refund_no (after a restart: query first).
    REFUND_CONFIRMING  query with backoff until final; NOT_FOUND -> refund again (same number).

Every loop is bounded (terminal.machine.Limits, issue 17): replies that cannot be verified, a reverse
that keeps failing, a refund the bank bounced (WeChat CHANGE) or one that stays unconfirmed are
handed to a person (HAND_OVER): the service reports it to HIS (progress event) and to the gateway
(alarm), and leaves the instruction alone until a person asks for a RECHECK.

A client that raises (it should not) is treated as "unknown": query before deciding.
"""

from __future__ import annotations

import logging

from terminal import machine
from terminal.channels.base import PayOutcome, PayState, RefundOutcome, RefundState, ReverseOutcome, ReverseState
from terminal.driver import Driver
from terminal.machine import Event, State

log = logging.getLogger("terminal.worker")

# Retrying reverse or re-querying a refund backs off from the channel's query interval up to these.
REVERSE_BACKOFF_MAX_S = 30.0
REFUND_BACKOFF_MAX_S = 60.0
# After an unexpected error in a worker, wait this long before trying the instruction again.
WORKER_ERROR_BACKOFF_S = 2.0


class Worker:
    """Drives one instruction through terminal.driver.Driver, its only view of the service. Owns
    what one run has learnt: streaks of answers, retries, and whether a refund call may go out."""

    def __init__(self, driver: Driver, seq: int) -> None:
        self.d = driver
        self.seq = seq
        self.not_found = 0
        self.retries = 0
        self.query_now = True  # the first query after a restart or an unknown answer goes out at once
        self.may_refund = False
        self.tally = machine.Tally()
        self.limits = driver.limits

    def run(self) -> None:
        d, seq = self.d, self.seq
        while True:
            look = d.look(seq)
            if look is None:
                return
            row, state, code = look.row, look.row.state, look.code
            attempt, collection, refund = look.attempt, look.collection, look.refund
            if look.may_refund:
                self.may_refund = True
            try:
                if state is State.PAYING:
                    assert attempt is not None
                    if code is None:
                        d.commit(seq, state, Event.RESTART)
                        self.query_now = True
                        continue
                    client = d.client(attempt.channel)
                    subject = f"{d.config.merchant_name[:20]} {row.order_no}"
                    outcome = d.call(lambda: client.pay(out_trade_no=attempt.out_trade_no, auth_code=code,
                                                       total_fen=row.amount_fen, subject=subject,
                                                       order_no=row.order_no, terminal_id=row.terminal_id), _unknown_pay)
                    event = machine.after_pay(outcome.state, outcome.result_code)
                    self.query_now = event is Event.UNKNOWN
                    d.commit(seq, state, event, pay=outcome)
                elif state in (State.USER_PAYING, State.CONFIRMING):
                    assert attempt is not None
                    interval, _ = d.polling(attempt.channel)
                    if not self.query_now:
                        wait = min(interval, max(0.0, attempt.deadline - d.clock()))
                        if not d.pause(seq, state, wait):
                            continue
                    self.query_now = False
                    client = d.client(attempt.channel)
                    outcome = d.call(lambda: client.query(attempt.out_trade_no), _unknown_pay)
                    self.not_found = self.not_found + 1 if outcome.state is PayState.NOT_FOUND else 0
                    self.tally.heard(outcome.state)
                    event = machine.after_query(outcome.state, past_deadline=d.clock() >= attempt.deadline,
                                                not_found_streak=self.not_found, unverified_streak=self.tally.unverified,
                                                limits=self.limits)
                    if event is Event.HAND_OVER:
                        self._hand_over(seq, state, row.kind, outcome.state, pay=outcome)
                        return
                    reason = "pay_timeout" if state is State.USER_PAYING else "channel_error"
                    d.commit(seq, state, event, pay=outcome, reason=reason)
                elif state is State.REVERSING:
                    assert attempt is not None
                    client = d.client(attempt.channel)
                    wait = machine.reverse_wait(attempt.started_at, d.clock(), d.reverse_not_before(attempt.channel))
                    if wait > 0:  # WeChat Pay: never sooner than 15 s after micropay (a cancel too)
                        log.info("order %s: reverse of %s waits %.1f s (the channel's minimum after the payment)",
                                 row.order_no, attempt.out_trade_no, wait)
                        d.wait_for_clock(seq, state, attempt.started_at + d.reverse_not_before(attempt.channel))
                        continue
                    reversed_ = d.call(lambda: client.reverse(attempt.out_trade_no), _unknown_reverse)
                    self.tally.reverses += 1
                    self.tally.heard(reversed_.state)
                    event = machine.after_reverse(reversed_.state, reverses=self.tally.reverses,
                                                  unverified_streak=self.tally.unverified, limits=self.limits)
                    query = None
                    if event is None:
                        log.warning("order %s: the channel refused to reverse %s (%s); querying", row.order_no,
                                    attempt.out_trade_no, reversed_.channel_code)
                        query = d.call(lambda: client.query(attempt.out_trade_no), _unknown_pay)
                        event = machine.after_refused_reverse(query.state, reverses=self.tally.reverses, limits=self.limits)
                    if event is Event.HAND_OVER:
                        self._hand_over(seq, state, row.kind, reversed_.state, pay=query or _unknown_pay(reversed_.message or ""))
                        return
                    if event is Event.REVERSE_AGAIN:
                        self.retries += 1
                        interval, _ = d.polling(attempt.channel)
                        d.pause(seq, state, min(REVERSE_BACKOFF_MAX_S, interval * 2 ** min(self.retries, 10)))
                        continue
                    d.commit(seq, state, event, pay=query)
                elif state is State.REFUNDING:
                    assert collection is not None and refund is not None
                    if not self.may_refund:
                        d.commit(seq, state, Event.RESTART)
                        self.query_now = True
                        continue
                    self.may_refund = False
                    client = d.client(collection.channel)
                    outcome = d.call(lambda: client.refund(out_trade_no=collection.out_trade_no,
                                                          out_refund_no=refund.out_refund_no, total_fen=collection.paid_fen,
                                                          refund_fen=refund.refund_fen, reason=f"退费 {row.order_no}",
                                                          order_no=row.order_no, instruction=d.sealed_instruction(seq)),
                                     _unknown_refund)
                    self.query_now = outcome.state is RefundState.UNKNOWN
                    d.commit(seq, state, machine.after_refund(outcome.state), refund=outcome)
                elif state is State.REFUND_CONFIRMING:
                    assert collection is not None and refund is not None
                    client = d.client(collection.channel)
                    if not self.query_now:
                        self.retries += 1
                        interval, _ = d.polling(collection.channel)
                        if not d.pause(seq, state, min(REFUND_BACKOFF_MAX_S, interval * 2 ** min(self.retries - 1, 10))):
                            continue
                    self.query_now = False
                    outcome = d.call(lambda: client.refund_query(out_trade_no=collection.out_trade_no,
                                                                out_refund_no=refund.out_refund_no), _unknown_refund)
                    self.tally.heard(outcome.state)
                    self.tally.refund_queries += 1
                    self.tally.abnormal += outcome.state is RefundState.ABNORMAL
                    event = machine.after_refund_query(outcome.state, self.tally, self.limits)
                    if event is Event.HAND_OVER:
                        self._hand_over(seq, state, row.kind, outcome.state, refund=outcome)
                        return
                    self.may_refund = event is Event.REFUND_UNSEEN
                    self.tally.refund_calls += self.may_refund
                    d.commit(seq, state, event, refund=outcome)
            except Exception:  # a bug or a journal error: log, wait, look again; never strand money
                log.exception("order %s: worker error in %s; retrying in %.0f s", row.order_no, state.value, WORKER_ERROR_BACKOFF_S)
                d.pause(seq, state, WORKER_ERROR_BACKOFF_S)

    def _hand_over(self, seq: int, state: State, kind: machine.Kind, heard: PayState | ReverseState | RefundState, *,
                   pay: PayOutcome | None = None, refund: RefundOutcome | None = None) -> None:
        """The budget is spent or asking again cannot settle it: a person takes over."""
        reason = machine.hand_over_reason(kind, heard, self.tally.unverified)
        words = pay.message if pay is not None else refund.message if refund is not None else None
        # The gateway hears of it first: once the POS shows "needs a person", the operators' list has it.
        self.d.report_alarm(seq, reason.value, words)
        self.d.commit(seq, state, Event.HAND_OVER, pay=pay, refund=refund, reason=reason.value)


def _unknown_pay(message: str) -> PayOutcome:
    return PayOutcome(PayState.UNKNOWN, message=message)


def _unknown_reverse(message: str) -> ReverseOutcome:
    return ReverseOutcome(ReverseState.UNKNOWN, message=message)


def _unknown_refund(message: str) -> RefundOutcome:
    return RefundOutcome(RefundState.UNKNOWN, message=message)
