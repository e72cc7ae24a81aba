"""Issue 17 on the POS: channels that never loop. Every finding is a scenario against the real
sandbox; the retry budget is made small (`Limits`) so a test sees the hand-over within seconds.

- finding 1: a configuration error no longer loops: a rejected request ends the payment FAILED
  `merchant_config`; replies we cannot verify, and a reverse that keeps failing, go to a person;
- finding 2: an Alipay refund query without refund_status never ends the refund either way;
- finding 3: a WeChat reverse never goes out sooner than 15 s after micropay (injected clock);
- finding 4: WeChat refund CHANGE goes to a person after a bounded number of polls.
A hand-over reaches HIS as a progress event (`needs_person`) and the gateway as an alarm, shows on
the screen, steps aside for the next patient, and a person's recheck settles it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from Crypto.PublicKey import RSA

from gateway.channels import build_clients, settings_from_sandbox
from protocol.messages import PayChannel, PayStatus
from terminal.alarms import Alarm
from terminal.machine import Limits, State
from terminal.service import ScanStatus
from terminal.view import Screen
from tests.terminal.conftest import FAST, Pos, new_order_no
from tests.terminal.helpers import PIN, Bridge, His, make_config, open_service

SMALL = Limits(unverified=2, reverses=3, refund_queries=6, refund_calls=2, abnormal=2)


class Alarms:
    """Where the POS reports hand-overs (in production terminal.gateway_client.GatewayAlarms: the
    gateway's own test, tests/gateway/test_alarms.py, covers that path over HTTP)."""

    def __init__(self) -> None:
        self.got: list[Alarm] = []

    def report(self, alarm: Alarm) -> bool:
        self.got.append(alarm)
        return True


class ManualClock:
    def __init__(self) -> None:
        self.now = time.time()
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def _pos(tmp_path: Path, sandbox, *, wechat: dict | None = None, alipay: dict | None = None, clock=time.time) -> tuple[Pos, Alarms]:
    settings = settings_from_sandbox(sandbox.credentials_path, wechat={**FAST, **(wechat or {})}, alipay={**FAST, **(alipay or {})})
    alarms = Alarms()
    service = open_service(tmp_path / "journal.db", make_config(), build_clients(settings), limits=SMALL, alarms=alarms, clock=clock)
    return Pos(service, Bridge(service), His(clock), sandbox), alarms


@pytest.fixture
def made(tmp_path):
    made: list[Pos] = []
    yield made
    for pos in made:
        pos.service.close()


def _wait(pos: Pos, predicate, what: str, timeout: float = 15.0):
    view = pos.service.wait_until(predicate, timeout)
    assert view is not None, f"{what}; screen: {pos.service.view()}"
    return view


def _collect(pos: Pos, code: str, amount: str = "+5.00") -> str:
    msg_id = pos.send(new_order_no(), amount)
    assert pos.service.scan(code).status is ScanStatus.ACCEPTED
    return msg_id


def _refund(pos: Pos, order_no: str, amount: str) -> str:
    msg_id = pos.send(order_no, amount)
    _wait(pos, lambda v: v.state is State.AWAITING_SUPERVISOR, "refund shown")
    pos.service.confirm_refund(PIN)
    return msg_id


def _out_trade_no(pos: Pos, msg_id: str) -> str:
    row = next(r for r in pos.service.journal.unfinished() if r.msg_id == msg_id)
    attempt = pos.service.journal.current_attempt(row.seq)
    assert attempt is not None
    return attempt.out_trade_no


def _events(pos: Pos, msg_id: str) -> list[str | None]:
    pos.bridge.pump()
    return [p.event.code if p.event else None for p in pos.bridge.progress if p.msg_id == msg_id]


def test_a_wrong_merchant_key_ends_the_payment_failed_with_a_configuration_code(tmp_path, sandbox, made):
    pos, _ = _pos(tmp_path, sandbox, wechat={"api_key": "0" * 32})
    made.append(pos)
    code = pos.issue(PayChannel.WECHAT)
    msg_id = _collect(pos, code)
    view = _wait(pos, lambda v: v.state is State.DECLINED, "declined at once: the channel processed nothing")
    assert "配置" in view.message.zh
    pos.service.cancel()
    result = pos.bridge.result(msg_id)
    assert (result.pay_status, result.error_code) == (PayStatus.FAILED, "merchant_config")
    assert pos.balance(code) == 100_00


def test_unverifiable_replies_go_to_a_person_and_a_recheck_settles_it(tmp_path, sandbox, made):
    """Finding 1: a wrong Alipay public key made every reply "unknown" and the POS queried and
    reversed forever. Alipay did take the money: the POS must neither loop nor say FAILED."""
    app_key = Path(str(settings_from_sandbox(sandbox.credentials_path)["alipay"]["private_key_pem"])).read_text()
    wrong = RSA.import_key(app_key).public_key().export_key().decode()
    pos, alarms = _pos(tmp_path, sandbox, alipay={"alipay_public_key_pem": wrong})
    made.append(pos)
    code = pos.issue(PayChannel.ALIPAY)
    msg_id = _collect(pos, code)
    view = _wait(pos, lambda v: v.state is State.PAYMENT_NEEDS_PERSON, "handed to a person")
    assert view.screen is Screen.PAYING and view.can_recheck and not view.can_cancel
    assert "需人工处理" in view.message.zh and "公钥" in view.message.zh
    assert pos.bridge.results == {} and _events(pos, msg_id)[-1] == "needs_person"
    assert [(a.reason, a.kind, a.channel) for a in alarms.got] == [("unverified_reply", "collect", PayChannel.ALIPAY)]
    assert pos.balance(code) == 100_00 - 500  # taken: "failed" would have been a lie
    # The provider fixes the key; a person asks the POS to check again.
    pos.service.clients.update(build_clients(settings_from_sandbox(sandbox.credentials_path, alipay=FAST)))
    assert pos.service.recheck().ok
    result = pos.bridge.result(msg_id)
    assert (result.pay_status, result.error_code) == (PayStatus.SUCCESS, None)


def test_a_reverse_that_keeps_failing_goes_to_a_person(tmp_path, sandbox, made):
    pos, alarms = _pos(tmp_path, sandbox)
    made.append(pos)
    code = pos.issue(PayChannel.WECHAT, behaviour="userpaying_forever")
    sandbox.control("POST", "/scripts", {"code": code, "answer": "wechat_reverse_recall", "times": 0})
    msg_id = _collect(pos, code)
    view = _wait(pos, lambda v: v.state is State.PAYMENT_NEEDS_PERSON, "handed over after the reverse budget")
    assert view.needs_person and "撤销" in view.message.zh
    assert [a.reason for a in alarms.got] == ["reverse_failing"]
    assert pos.bridge.results == {}
    sandbox.control("DELETE", "/scripts")
    pos.service.recheck()
    result = pos.bridge.result(msg_id)
    assert (result.pay_status, result.error_code) == (PayStatus.CLOSED, "pay_timeout")
    assert pos.balance(code) == 100_00


def test_wechat_refund_change_goes_to_a_person_and_steps_aside(tmp_path, sandbox, made):
    """Finding 4: CHANGE (退款异常) was polled every 60 s forever."""
    pos, alarms = _pos(tmp_path, sandbox)
    made.append(pos)
    code = pos.issue(PayChannel.WECHAT)
    order = new_order_no()
    paid = pos.send(order, "+8.00")
    pos.service.scan(code)
    assert pos.bridge.result(paid).pay_status is PayStatus.SUCCESS
    sandbox.control("POST", "/scripts", {"code": code, "answer": "wechat_refund_status", "value": "CHANGE", "times": 0})
    refund = _refund(pos, order, "-3.00")
    view = _wait(pos, lambda v: v.state is State.REFUND_NEEDS_PERSON, "handed over after a few CHANGE answers")
    assert view.screen is Screen.REFUNDING and "商户平台" in view.message.zh
    assert [a.reason for a in alarms.got] == ["refund_abnormal"] and alarms.got[0].kind == "refund"
    assert _events(pos, refund)[-1] == "needs_person"
    # The next patient is not kept waiting behind a refund the bank bounced.
    other = pos.send(new_order_no(), "+1.00")
    view = _wait(pos, lambda v: v.state is State.AWAITING_SCAN and v.msg_id == other, "the next instruction comes forward")
    assert view.needs_person_elsewhere == 1 and view.can_recheck
    pos.service.cancel()
    pos.bridge.result(other)
    # Resolved on the merchant platform: the channel now says SUCCESS.
    sandbox.control("DELETE", "/scripts")
    pos.service.recheck()
    result = pos.bridge.result(refund)
    assert result.pay_status is PayStatus.REFUNDED


def test_alipay_refund_without_refund_status_is_never_ended_either_way(tmp_path, sandbox, made):
    """Finding 2: the query without refund_status was taken for success. Now it is sent again with
    the same out_request_no and queried again, within the budget, then a person decides."""
    pos, alarms = _pos(tmp_path, sandbox)
    made.append(pos)
    code = pos.issue(PayChannel.ALIPAY)
    order = new_order_no()
    paid = pos.send(order, "+8.00")
    pos.service.scan(code)
    assert pos.bridge.result(paid).pay_status is PayStatus.SUCCESS
    sandbox.control("POST", "/scripts", {"code": code, "answer": "alipay_fund_change_n", "times": 0})
    sandbox.control("POST", "/scripts", {"code": code, "answer": "alipay_refund_status_missing", "times": 0})
    refund = _refund(pos, order, "-3.00")
    _wait(pos, lambda v: v.state is State.REFUND_NEEDS_PERSON, "handed over, neither refunded nor failed")
    assert refund not in pos.bridge.results
    assert [a.reason for a in alarms.got] == ["refund_unconfirmed"]
    assert pos.balance(code) == 100_00 - 800 + 300  # one refund, however often it was asked about
    sandbox.control("DELETE", "/scripts")
    pos.service.recheck()
    assert pos.bridge.result(refund).pay_status is PayStatus.REFUNDED
    assert pos.balance(code) == 100_00 - 800 + 300


@pytest.mark.parametrize("how", ["cashier_cancels", "order_not_found"])
def test_a_wechat_reverse_waits_15_s_after_micropay(tmp_path, sandbox, made, how):
    """Finding 3: three "order not found" answers reversed at ~10 s, a cancel during USERPAYING at
    once. WeChat asks for at least 15 s; the clock is injected, so nobody waits 15 real seconds."""
    clock = ManualClock()
    pos, _ = _pos(tmp_path, sandbox, wechat={"reverse_not_before_s": 15.0}, clock=clock)
    made.append(pos)
    behaviour = "userpaying_forever" if how == "cashier_cancels" else "systemerror_unpaid"
    code = pos.issue(PayChannel.WECHAT, behaviour=behaviour)
    msg_id = _collect(pos, code)
    if how == "cashier_cancels":
        _wait(pos, lambda v: v.state is State.USER_PAYING, "the patient is confirming")
        clock.advance(3)
        assert pos.service.cancel().ok
    view = _wait(pos, lambda v: v.state is State.REVERSING and v.reverse_at is not None, "the reverse waits")
    otn = _out_trade_no(pos, msg_id)
    attempt_started = pos.service.journal.current_attempt(pos.service.journal.unfinished()[0].seq).started_at
    assert view.reverse_at == pytest.approx(attempt_started + 15.0)
    assert "15秒" in view.message.zh
    clock.advance(11)  # 14 s after micropay (cancel case), 11 s (not-found case): still waiting
    pos.service.wake()
    assert pos.service.view().reverse_at is not None
    if how == "cashier_cancels":
        assert sandbox.control("GET", f"/orders/WECHAT/{otn}")["state"] == "USERPAYING"  # not reversed yet
    clock.advance(4.5)
    pos.service.wake()
    result = pos.bridge.result(msg_id)
    assert result.pay_status is PayStatus.CLOSED
    assert result.error_code == ("cancelled" if how == "cashier_cancels" else "channel_error")
    assert pos.balance(code) == 100_00
