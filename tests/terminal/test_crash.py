"""Power cuts at every journaled state, then a restart on the same journal: the money at the
sandbox, the results HIS received and the journal must agree. No double charge, no lost result, no
double refund, and every instruction finishes.

A cut is injected at the Nth commit of a service's journal, either just before it becomes durable
(rolled back) or just after (durable, but nothing acted on it). The PowerLostAtCommit kills that service
object wherever it happens (the link thread, the cashier's thread or a worker); the test abandons it
and starts a fresh service on the same files, as a device does after power returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.messages import PayChannel, PayStatus
from gateway.channels import build_clients
from terminal.config import Polling
from terminal.journal import CommitPoint, PowerLostAtCommit
from terminal.view import Screen
from tests.terminal.conftest import new_order_no
from tests.terminal.helpers import PIN, Bridge, His, make_config, open_service
from tests.budget import examples

POLLING = {PayChannel.WECHAT: Polling(0.05, 0.8), PayChannel.ALIPAY: Polling(0.05, 0.8)}


@dataclass(frozen=True)
class Scenario:
    name: str
    channel: PayChannel
    behaviour: str
    refund: str | None = None  # after a clean collection of +10.00, refund this much (with cuts)


SCENARIOS = [
    Scenario("success", PayChannel.WECHAT, "success"),
    Scenario("declined-then-cancelled", PayChannel.ALIPAY, "insufficient"),
    Scenario("user-paying-then-paid", PayChannel.ALIPAY, "userpaying:0.2"),
    Scenario("user-paying-then-reversed", PayChannel.WECHAT, "userpaying_forever"),
    Scenario("system-error-paid", PayChannel.ALIPAY, "systemerror"),
    Scenario("system-error-unpaid", PayChannel.WECHAT, "systemerror_unpaid"),
    Scenario("full-refund", PayChannel.ALIPAY, "success", refund="-10.00"),
    Scenario("partial-refund", PayChannel.WECHAT, "success", refund="-3.50"),
]


class Cut:
    """Raise PowerLostAtCommit at commit `number` in `phase` of the journal it is given to."""

    def __init__(self, number: int, phase: str) -> None:
        self.number, self.phase, self.fired = number, phase, False

    def __call__(self, point: CommitPoint) -> None:
        if point.number == self.number and point.phase == self.phase:
            self.fired = True
            raise PowerLostAtCommit(f"cut at {point}")


class Run:
    def __init__(self, tmp_path, sandbox, channel_settings, scenario: Scenario) -> None:
        self.path = tmp_path / f"journal-{time.monotonic_ns()}.db"
        self.sandbox, self.scenario = sandbox, scenario
        self.config = make_config(polling=POLLING)
        self.clients = build_clients(channel_settings)
        self.code = str(sandbox.issue_code(scenario.channel.value, "100.00", scenario.behaviour)["code"])
        self.order = new_order_no()
        self.his = His()
        self.bridge: Bridge | None = None
        self.collected_fen = 0
        if scenario.refund is not None:  # a clean collection first
            self.envelopes = [self.his.envelope(self.order, "+10.00")]
            assert self.run([]) == 0
            self.collected_fen = 1000
            self.envelopes = [self.his.envelope(self.order, scenario.refund)]
        else:
            self.envelopes = [self.his.envelope(self.order, "+12.50")]

    def run(self, cuts: list[Cut]) -> int:
        """Drive until every instruction has a result at the bridge, one fresh service per cut.
        Returns how many cuts fired."""
        fired, pending = 0, list(cuts)
        for _ in range(len(cuts) + 1):
            cut = pending.pop(0) if pending else None
            service = open_service(self.path, self.config, self.clients, on_commit=cut, start=False)
            if self.bridge is None:
                self.bridge = Bridge(service)
            self.bridge.service = service
            try:
                service.start()
                self.drive(service)
                done = True
            except PowerLostAtCommit:
                done = False
            finally:
                service.close()
                service.journal.close()
            fired += bool(cut and cut.fired)
            if done:
                return fired
        raise AssertionError("the scenario did not finish after the last restart")

    def drive(self, service, timeout: float = 20.0) -> None:
        for envelope in self.envelopes:  # the bridge sends again whatever was not acknowledged
            service.submit_instruction(envelope)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if service.dead:
                raise PowerLostAtCommit("the service died in a worker")
            self.bridge.pump()
            if all(e.msg_id in self.bridge.results for e in self.envelopes):
                assert service.journal.unfinished() == [] and service.journal.undelivered() == []
                return
            view = service.view()
            if view.screen is Screen.AWAITING_SCAN:
                service.scan(self.code)
            elif view.screen is Screen.DECLINED:
                service.cancel()
            elif view.screen is Screen.AWAITING_SUPERVISOR:
                service.confirm_refund(PIN)
            time.sleep(0.01)
        raise AssertionError(f"{self.scenario.name}: no result in {timeout} s; screen {service.view()}")

    def check(self) -> None:
        """Money, results and journal agree."""
        account = self.sandbox.account(self.code)
        envelope = self.envelopes[-1]
        assert len(self.bridge.envelopes[envelope.msg_id]) == 1, "one result per instruction (re-sends are identical)"
        result = self.bridge.results[envelope.msg_id][0]
        paid = [o for o in account["orders"] if o["state"] == "SUCCESS"]
        refunds = [r for r in account["refunds"] if r["kind"] == "REFUND"]
        assert len(refunds) <= 1, "never refunded twice"
        refunded = sum(r["amount_fen"] for r in refunds)
        if self.scenario.refund is None:
            if result.pay_status is PayStatus.SUCCESS:
                assert len(paid) == 1 and paid[0]["channel_txn_id"] == result.pay_order_no
                assert account["balance_fen"] == 100_00 - 1250
            else:
                assert result.pay_status in (PayStatus.CLOSED, PayStatus.FAILED)
                assert paid == [] and account["balance_fen"] == 100_00
        else:
            fen = int(self.scenario.refund[1:].replace(".", ""))
            if result.pay_status is PayStatus.REFUNDED:
                assert refunded == fen and account["balance_fen"] == 100_00 - 1000 + fen
            else:
                assert result.pay_status is PayStatus.REFUND_FAILED
                assert refunded == 0 and account["balance_fen"] == 100_00 - 1000


@pytest.mark.parametrize("phase", ["before", "after"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_power_cut_at_every_commit(tmp_path, sandbox, channel_settings, scenario, phase):
    number = 1
    while True:
        run = Run(tmp_path, sandbox, channel_settings, scenario)
        fired = run.run([Cut(number, phase)])
        run.check()
        if not fired:  # the scenario has fewer commits than `number`: every one has been cut
            break
        number += 1
    assert number >= 5


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=st.sampled_from(SCENARIOS),
       cuts=st.lists(st.tuples(st.integers(1, 8), st.sampled_from(["before", "after"])), min_size=1, max_size=3))
def test_power_cuts_during_recovery_too(tmp_path, sandbox, channel_settings, scenario, cuts):
    """Cut again while recovering from a cut (and again): still no double charge or lost result."""
    run = Run(tmp_path, sandbox, channel_settings, scenario)
    run.run([Cut(n, phase) for n, phase in cuts])
    run.check()
