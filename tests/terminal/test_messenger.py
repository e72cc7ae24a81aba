"""terminal.messenger: what the bridge is told, and nothing while the link is down.

Rows come from the real lifecycle on a real journal; results are opened and their signatures checked
as the bridge does.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from protocol.crypto import KeyRing
from protocol.envelope import receive_result
from protocol.errors import ErrorCode
from protocol.link.app import NotTakenMsg, ProgressMsg, ResultMsg
from protocol.messages import PayChannel, PayStatus, Progress, Result
from terminal.channels.base import PayOutcome, PayState
from terminal.journal import Journal
from terminal.lifecycle import Accepted, Lifecycle
from terminal.machine import Event, State
from terminal.messenger import Messenger
from terminal.outbox import Outbox
from tests.terminal.helpers import DEVICE_KEYS, DEVICE_SEED, KEY, His, make_config

T0 = 1_790_000_000.0


class Rig:
    def __init__(self, path: Path) -> None:
        self.now = T0
        self.journal = Journal(path)
        self.core = Lifecycle(make_config(), self.journal, clock=lambda: self.now, rng=random.Random(9).randbytes,
                              device_key_seed=DEVICE_SEED)
        self.outbox = Outbox()
        self.bridge = Messenger(self.outbox, self.journal, self.core, lambda: self.now)
        self.his = His(clock=lambda: self.now)

    def shown(self, order_no: str, msg_id: str) -> int:
        outcome = self.core.accept(self.his.envelope(order_no, "+8.00", msg_id=msg_id))
        assert isinstance(outcome, Accepted)
        self.core.decide_on_arrival(outcome.seq)
        self.core.activate()
        return outcome.seq

    def cancelled(self, order_no: str, msg_id: str) -> bytes:
        """A finished instruction; the sealed result's bytes."""
        change = self.core.apply(self.shown(order_no, msg_id), State.AWAITING_SCAN, Event.CANCEL, reason="cancelled")
        assert change is not None and change.result is not None
        return change.result.envelope

    def open(self, message: object) -> Result:
        assert isinstance(message, ResultMsg)
        received = receive_result(message.envelope.to_json_obj(), KeyRing([KEY]), now=self.now, device_keys=DEVICE_KEYS)
        assert isinstance(received.message, Result)
        return received.message


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path / "j.db")


def test_nothing_is_queued_while_the_link_is_down(rig: Rig) -> None:
    sealed = rig.cancelled("MZ1", "HIS-1")
    rig.bridge.sealed(sealed)
    rig.bridge.progress(rig.journal.instruction(1))
    rig.bridge.not_taken("HIS-9", ErrorCode.REPLAY, "seen before")
    assert not rig.bridge.up and rig.outbox.drain() == []


def test_at_link_up_every_unacknowledged_result_goes_again_oldest_first(rig: Rig) -> None:
    rig.cancelled("MZ1", "HIS-1")
    rig.cancelled("MZ2", "HIS-2")
    rig.bridge.came_up()
    results = [rig.open(m) for m in rig.outbox.drain()]
    assert [(r.order_no, r.pay_status) for r in results] == [("MZ1", PayStatus.CLOSED), ("MZ2", PayStatus.CLOSED)]


def test_an_acknowledged_result_is_not_sent_again(rig: Rig) -> None:
    rig.cancelled("MZ1", "HIS-1")
    rig.bridge.came_up()
    [first] = rig.outbox.drain()
    assert isinstance(first, ResultMsg)
    assert rig.core.mark_delivered(first.envelope.msg_id)
    rig.bridge.went_down()
    rig.bridge.came_up()
    assert rig.outbox.drain() == []


def test_link_down_drops_queued_results_but_keeps_other_messages(rig: Rig) -> None:
    sealed = rig.cancelled("MZ1", "HIS-1")
    rig.bridge.came_up()
    rig.outbox.drain()
    rig.bridge.sealed(sealed)
    rig.bridge.not_taken("HIS-9", ErrorCode.REPLAY, "seen before")
    rig.bridge.went_down()
    assert rig.outbox.drain() == [NotTakenMsg("HIS-9", ErrorCode.REPLAY, "seen before")]


def test_a_result_sealed_now_and_one_sent_again_say_the_same(rig: Rig) -> None:
    sealed = rig.cancelled("MZ1", "HIS-1")
    rig.bridge.came_up()
    rig.outbox.drain()
    rig.bridge.sealed(sealed)
    rig.bridge.stored(sealed)
    now, again = (rig.open(m) for m in rig.outbox.drain())
    assert now == again and now.pay_status is PayStatus.CLOSED and now.error_code == "cancelled"


def test_a_queued_instruction_says_delivered(rig: Rig) -> None:
    rig.bridge.came_up()
    seq = rig.shown("MZ1", "HIS-1")
    rig.bridge.queued(rig.journal.instruction(seq))
    assert rig.outbox.drain() == [ProgressMsg("HIS-1", Progress.DELIVERED)]


def test_a_decline_is_told_with_its_reason(rig: Rig) -> None:
    rig.bridge.came_up()
    seq = rig.shown("MZ1", "HIS-1")
    rig.core.begin_attempt(seq, State.AWAITING_SCAN, PayChannel.WECHAT, "134567******1234", 30.0)
    declined = PayOutcome(PayState.FAILED, message="余额不足")
    assert rig.core.apply(seq, State.PAYING, Event.DECLINED, pay=declined, reason="insufficient_funds") is not None
    rig.bridge.progress(rig.journal.instruction(seq))
    [message] = rig.outbox.drain()
    assert isinstance(message, ProgressMsg) and message.state is Progress.AWAITING_SCAN
    assert message.event is not None and message.event.at == int(T0)


def test_a_hand_over_to_a_person_is_told_as_needs_person(rig: Rig) -> None:
    rig.bridge.came_up()
    seq = rig.shown("MZ1", "HIS-1")
    rig.core.begin_attempt(seq, State.AWAITING_SCAN, PayChannel.WECHAT, "134567******1234", 30.0)
    unverified = PayOutcome(PayState.UNVERIFIED, message="bad signature")
    assert rig.core.apply(seq, State.PAYING, Event.UNKNOWN, pay=unverified) is not None
    assert rig.core.apply(seq, State.CONFIRMING, Event.HAND_OVER, pay=unverified, reason="pay_unverified") is not None
    rig.bridge.progress(rig.journal.instruction(seq))
    [message] = rig.outbox.drain()
    assert isinstance(message, ProgressMsg) and message.event is not None
    assert message.event.code == "needs_person" and message.event.message.startswith("pay_unverified: ")
