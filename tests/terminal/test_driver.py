"""terminal.driver: the channels' pacing, the waits, and the hand-offs from the cashier to a worker.

Instructions are real journal rows moved by the real lifecycle; the clients are the POS's real
gateway clients (never called here); the clock is injected and moved by hand, and every wait in
these tests is on an event the code under test sets.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from protocol.messages import PayChannel
from terminal import machine
from terminal.alarms import Alarm
from terminal.channels.base import ChannelClient, PayOutcome, PayState, RefundOutcome
from terminal.config import Polling
from terminal.driver import Driver, MAX_CHANNEL_CALLS
from terminal.gateway_client import GatewayChannelClient, GatewayConnection
from terminal.journal import Journal
from terminal.lifecycle import Accepted, Lifecycle
from terminal.machine import Event, State
from terminal.supervision import Supervision
from tests.terminal.helpers import DEVICE_ID, DEVICE_SEED, His, make_config
from tests.clocks import ManualClock

WAIT_S = 10.0  # an event that must come comes long before this; reached only when the code is broken
T0 = 1_790_000_000.0


@dataclass
class Alarms:
    got: list[Alarm] = field(default_factory=list)
    fail: bool = False

    def report(self, alarm: Alarm) -> bool:
        if self.fail:
            raise ConnectionError("gateway unreachable")
        self.got.append(alarm)
        return True


@dataclass
class Rig:
    driver: Driver
    core: Lifecycle
    journal: Journal
    cond: threading.Condition
    supervision: Supervision
    clock: ManualClock
    alarms: Alarms
    changes: list[str] = field(default_factory=list)
    notified: threading.Event = field(default_factory=threading.Event)

    def instruction(self, amount: str = "+8.00") -> int:
        """A collection shown to the cashier (AWAITING_SCAN)."""
        outcome = self.core.accept(His(clock=self.clock).envelope("MZ" + str(random.randrange(10**9)), amount))
        assert isinstance(outcome, Accepted)
        self.core.decide_on_arrival(outcome.seq)
        self.core.activate()
        assert self.journal.instruction(outcome.seq).state is State.AWAITING_SCAN
        return outcome.seq

    def paying(self) -> int:
        seq = self.instruction()
        self.core.begin_attempt(seq, State.AWAITING_SCAN, PayChannel.WECHAT, "134567******1234", 30.0)
        return seq

    def reversing(self) -> int:
        seq = self.paying()
        self.commit(seq, State.PAYING, Event.USER_PAYING)
        self.commit(seq, State.USER_PAYING, Event.CANCEL, reason="cancelled")
        assert self.journal.instruction(seq).state is State.REVERSING
        return seq

    def commit(self, seq: int, expect: State, event: Event, *, pay: PayOutcome | None = None,
               refund: RefundOutcome | None = None, reason: str | None = None) -> None:
        with self.cond:
            self.core.apply(seq, expect, event, pay=pay, refund=refund, reason=reason)
            self.cond.notify_all()  # as the service does when a person moves an instruction


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    clock = ManualClock(T0)
    config = make_config(polling={PayChannel.WECHAT: Polling(2.0, 40.0, 20.0)})
    journal = Journal(tmp_path / "j.db")
    core = Lifecycle(config, journal, clock=clock, rng=random.Random(3).randbytes, device_key_seed=DEVICE_SEED)
    connection = GatewayConnection("http://127.0.0.1:9", device_id=DEVICE_ID, seed=DEVICE_SEED)
    clients: dict[PayChannel, ChannelClient] = {c: GatewayChannelClient(connection, c) for c in (PayChannel.WECHAT, PayChannel.ALIPAY)}
    cond = threading.Condition(threading.RLock())
    supervision = Supervision(cond, work=lambda seq: None, needs_work=lambda seq: False, storage_dead=lambda: journal.dead)
    alarms = Alarms()
    holder: list[Rig] = []
    driver = Driver(cond, journal, config, clients, clock=clock, limits=machine.Limits(), alarms=alarms,
                    supervision=supervision, commit=lambda *a, **kw: holder[0].commit(*a, **kw),
                    changed=lambda: holder[0].changes.append("changed"), notify=lambda: holder[0].notified.set())
    holder.append(Rig(driver, core, journal, cond, supervision, clock, alarms))
    yield holder[0]
    supervision.close(WAIT_S)


def in_thread(fn, *args) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    thread.start()
    return thread, out


def test_the_device_configuration_overrides_the_channels_cadence(rig: Rig) -> None:
    assert rig.driver.polling(PayChannel.WECHAT) == (2.0, 40.0)
    assert rig.driver.reverse_not_before(PayChannel.WECHAT) == 20.0


def test_without_an_override_the_clients_cadence_holds(rig: Rig) -> None:
    assert rig.driver.polling(PayChannel.ALIPAY) == (5.0, 30.0)
    assert rig.driver.reverse_not_before(PayChannel.ALIPAY) == 0.0


def test_the_scanned_code_goes_to_one_look_only(rig: Rig) -> None:
    seq = rig.paying()
    with rig.cond:
        rig.driver.hand_code(seq, "134567890123451234")
    first, again = rig.driver.look(seq), rig.driver.look(seq)
    assert first is not None and first.code == "134567890123451234"
    assert again is not None and again.code is None  # a second worker run must not pay twice


def test_the_permission_to_refund_goes_to_one_look_only(rig: Rig) -> None:
    seq = rig.paying()
    with rig.cond:
        rig.driver.allow_refund(seq)
    first, again = rig.driver.look(seq), rig.driver.look(seq)
    assert first is not None and first.may_refund
    assert again is not None and not again.may_refund


def test_a_look_shows_the_rows_a_worker_needs(rig: Rig) -> None:
    seq = rig.paying()
    look = rig.driver.look(seq)
    assert look is not None
    assert look.row.seq == seq and look.row.state is State.PAYING
    assert look.attempt is not None and look.attempt.channel is PayChannel.WECHAT
    assert look.collection is None and look.refund is None


def test_nothing_to_drive_for_an_instruction_that_waits_for_the_cashier(rig: Rig) -> None:
    assert rig.driver.look(rig.instruction()) is None


def test_nothing_to_drive_once_the_service_closes(rig: Rig) -> None:
    seq = rig.paying()
    rig.supervision.close(WAIT_S)
    assert rig.driver.look(seq) is None


def test_a_reverse_waits_for_the_injected_clock_and_the_screen_shows_when(rig: Rig) -> None:
    seq = rig.reversing()
    when = rig.clock() + 15.0
    thread, out = in_thread(rig.driver.wait_for_clock, seq, State.REVERSING, when)
    assert rig.notified.wait(WAIT_S)  # the screen was told the reverse waits
    with rig.cond:
        assert rig.driver.reverse_at(seq) == when
    rig.clock.advance(15.0)
    rig.driver.wake()
    thread.join(WAIT_S)
    assert out == [True]
    assert rig.driver.reverse_at(seq) is None and rig.changes == ["changed", "changed"]


def test_a_wait_for_the_clock_ends_when_the_instruction_moves_on(rig: Rig) -> None:
    seq = rig.reversing()
    thread, out = in_thread(rig.driver.wait_for_clock, seq, State.REVERSING, rig.clock() + 15.0)
    assert rig.notified.wait(WAIT_S)
    rig.commit(seq, State.REVERSING, Event.REVERSED)  # e.g. a person settled it meanwhile
    thread.join(WAIT_S)
    assert out == [False] and rig.driver.reverse_at(seq) is None


def test_a_pause_ends_early_when_the_service_closes(rig: Rig) -> None:
    seq = rig.paying()
    entered = threading.Event()

    def pause() -> bool:
        entered.set()
        return rig.driver.pause(seq, State.PAYING, 3600.0)

    thread, out = in_thread(pause)
    assert entered.wait(WAIT_S)
    rig.supervision.close(WAIT_S)
    thread.join(WAIT_S)
    assert out == [False]


def test_a_pause_of_nothing_returns_at_once_while_the_state_holds(rig: Rig) -> None:
    seq = rig.paying()
    assert rig.driver.pause(seq, State.PAYING, 0.0) is True
    assert rig.driver.pause(seq, State.USER_PAYING, 0.0) is False  # it is not in that state


def test_a_client_that_raises_is_an_unknown_answer(rig: Rig) -> None:
    def broken() -> PayOutcome:
        raise RuntimeError("socket closed")

    outcome = rig.driver.call(broken, lambda message: PayOutcome(PayState.UNKNOWN, message=message))
    assert outcome == PayOutcome(PayState.UNKNOWN, message="RuntimeError: socket closed")


def test_channel_calls_in_flight_are_bounded(rig: Rig) -> None:
    inside, most, release = [0], [0], threading.Event()
    count = threading.Condition()

    def call() -> int:
        with count:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            count.notify_all()
        assert release.wait(WAIT_S)
        with count:
            inside[0] -= 1
        return 1

    threads = [in_thread(rig.driver.call, call, lambda m: 0) for _ in range(MAX_CHANNEL_CALLS + 4)]
    with count:
        assert count.wait_for(lambda: inside[0] == MAX_CHANNEL_CALLS, WAIT_S)
    release.set()
    for thread, _ in threads:
        thread.join(WAIT_S)
    assert most[0] == MAX_CHANNEL_CALLS and all(out == [1] for _, out in threads)


def test_an_alarm_names_the_payment_the_channel_knows(rig: Rig) -> None:
    seq = rig.paying()
    rig.driver.report_alarm(seq, "pay_unverified", "signature did not verify")
    attempt = rig.journal.current_attempt(seq)
    assert attempt is not None
    [alarm] = rig.alarms.got
    assert (alarm.reason, alarm.kind, alarm.channel, alarm.reference, alarm.amount_fen) == \
        ("pay_unverified", "collect", PayChannel.WECHAT, attempt.out_trade_no, 800)


def test_an_alarm_the_gateway_cannot_take_never_stops_the_worker(rig: Rig, caplog) -> None:
    rig.alarms.fail = True
    rig.driver.report_alarm(rig.paying(), "pay_unverified", None)
    assert "could not report the alarm" in caplog.text
