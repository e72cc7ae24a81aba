"""terminal.worker: one instruction driven to its end through terminal.driver, against the sandbox.

The worker runs on the test's own thread (Worker.run returns once nothing is left to ask the channel),
with the real driver, the real lifecycle on a real journal, and the real channel clients talking to
the channel sandbox at the fast test cadence (conftest.FAST). No sleeps: the only waits are the
worker's own pacing between queries.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from gateway.channels import build_clients
from protocol.messages import PayChannel, PayStatus
from terminal import machine
from terminal.channels.base import PayOutcome, RefundOutcome
from terminal.driver import Driver
from terminal.journal import Journal
from terminal.lifecycle import Accepted, Lifecycle
from terminal.machine import Event, State
from terminal.routing import mask_code
from terminal.supervision import Supervision
from terminal.worker import Worker
from tests.terminal.conftest import new_order_no
from tests.terminal.helpers import DEVICE_SEED, His, make_config


class Rig:
    def __init__(self, path: Path, channel_settings: dict) -> None:
        self.journal = Journal(path)
        self.core = Lifecycle(make_config(), self.journal, clock=time.time,
                              rng=random.Random().randbytes, device_key_seed=DEVICE_SEED)
        self.cond = threading.Condition(threading.RLock())
        self.supervision = Supervision(self.cond, work=lambda seq: None, needs_work=lambda seq: False,
                                       storage_dead=lambda: self.journal.dead)
        self.commits: list[tuple[State, Event]] = []
        self.driver = Driver(self.cond, self.journal, make_config(), build_clients(channel_settings),
                             clock=self.core.clock, limits=machine.Limits(), alarms=None, supervision=self.supervision,
                             commit=self.commit, changed=lambda: None, notify=lambda: None)

    def commit(self, seq: int, expect: State, event: Event, *, pay: PayOutcome | None = None,
               refund: RefundOutcome | None = None, reason: str | None = None) -> None:
        with self.cond:
            if self.core.apply(seq, expect, event, pay=pay, refund=refund, reason=reason) is not None:
                self.commits.append((expect, event))
            self.cond.notify_all()

    def paying(self, code: str | None, amount: str = "+8.00", channel: PayChannel = PayChannel.WECHAT) -> int:
        """A collection the cashier scanned `code` for (None: we are after a restart, the code is gone)."""
        outcome = self.core.accept(His().envelope(new_order_no(), amount))
        assert isinstance(outcome, Accepted)
        self.core.decide_on_arrival(outcome.seq)
        self.core.activate()
        self.core.begin_attempt(outcome.seq, State.AWAITING_SCAN, channel, mask_code(code or "134567890123451234"),
                                self.driver.polling(channel)[1])
        if code is not None:
            with self.cond:
                self.driver.hand_code(outcome.seq, code)
        return outcome.seq


@pytest.fixture
def rig(tmp_path: Path, channel_settings: dict) -> Iterator[Rig]:
    r = Rig(tmp_path / "j.db", channel_settings)
    yield r
    r.supervision.close()


def _balance(sandbox, code: str) -> int:
    return int(sandbox.account(code)["balance_fen"])


def test_a_scanned_code_is_paid_once_and_the_payment_commits(rig: Rig, sandbox) -> None:
    code = str(sandbox.issue_code("WECHAT", "100.00", "success")["code"])
    seq = rig.paying(code)
    Worker(rig.driver, seq).run()
    row = rig.journal.instruction(seq)
    assert row.state is State.FINISHED and row.pay_status is PayStatus.SUCCESS
    assert rig.commits == [(State.PAYING, Event.PAID)]
    assert _balance(sandbox, code) == 100_00 - 800


def test_a_patient_confirming_on_the_phone_is_queried_until_paid(rig: Rig, sandbox) -> None:
    code = str(sandbox.issue_code("ALIPAY", "100.00", "userpaying:0.3")["code"])
    seq = rig.paying(code, channel=PayChannel.ALIPAY)
    Worker(rig.driver, seq).run()
    row = rig.journal.instruction(seq)
    assert row.state is State.FINISHED and row.pay_status is PayStatus.SUCCESS
    assert rig.commits[0] == (State.PAYING, Event.USER_PAYING) and rig.commits[-1] == (State.USER_PAYING, Event.PAID)
    assert _balance(sandbox, code) == 100_00 - 800


def test_after_a_restart_the_worker_never_pays_again_it_asks(rig: Rig, sandbox) -> None:
    """The code is gone (never journaled): the call may or may not have gone out, so query; the
    channel never saw it, so after the not-found answers it is reversed and closed, nothing taken."""
    code = str(sandbox.issue_code("WECHAT", "100.00", "success")["code"])
    seq = rig.paying(None)
    Worker(rig.driver, seq).run()
    row = rig.journal.instruction(seq)
    assert rig.commits[0] == (State.PAYING, Event.RESTART)
    assert Event.PAID not in [event for _, event in rig.commits]
    assert row.state is State.FINISHED and row.pay_status is PayStatus.CLOSED
    assert _balance(sandbox, code) == 100_00
