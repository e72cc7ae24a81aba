"""The terminal service against the channel-sandbox process over real HTTP: what the cashier sees,
what HIS receives, and where the patient's money went (sandbox balances, to the fen)."""

from __future__ import annotations

import threading
import time

from protocol.messages import PayChannel, PayStatus
from terminal.machine import State
from terminal.service import PinStatus, ScanStatus
from terminal.view import Screen
from tests.terminal.conftest import new_order_no
from tests.terminal.helpers import PIN


def test_success(pos, channel):
    code, order = pos.issue(channel), new_order_no()
    result = pos.collect(order, "+12.50", code)
    assert (result.pay_status, result.pay_channel, str(result.amount), result.error_code) == (PayStatus.SUCCESS, channel, "+12.50", None)
    account = pos.sandbox.account(code)
    assert account["balance_fen"] == 100_00 - 1250
    assert [o["channel_txn_id"] for o in account["orders"]] == [result.pay_order_no]
    view = pos.service.view()
    assert view.screen is Screen.RESULT and view.last_result.ok
    receipt = pos.service.receipt(pos.service.history()[0].msg_id)
    assert (receipt.channel, receipt.channel_txn_no, receipt.amount_text) == (channel, result.pay_order_no, "¥12.50")
    totals = pos.service.totals()
    assert [(c.channel, c.collected_count, c.collected_fen) for c in totals.channels] == [(channel, 1, 1250)]


def test_decline_then_rescan_with_another_code(pos, channel):
    poor, rich, order = pos.issue(channel, "5.00"), pos.issue(channel), new_order_no()
    msg_id = pos.send(order, "+12.50")
    assert pos.service.scan(poor).status is ScanStatus.ACCEPTED
    view = pos.service.wait_until(lambda v: v.screen is Screen.DECLINED, 10)
    assert view is not None and "余额不足" in view.message.zh and view.can_scan and view.can_cancel
    assert pos.service.scan(rich).status is ScanStatus.ACCEPTED  # a new attempt, a new out_trade_no
    result = pos.bridge.result(msg_id)
    assert result.pay_status is PayStatus.SUCCESS
    assert (pos.balance(poor), pos.balance(rich)) == (500, 100_00 - 1250)
    assert len({a.out_trade_no for a in pos.service.journal.attempts(1)}) == 2


def test_decline_then_cancel_is_failed_with_the_reason(pos):
    code, order = pos.issue(PayChannel.WECHAT, behaviour="insufficient"), new_order_no()
    msg_id = pos.send(order, "+12.50")
    pos.service.scan(code)
    assert pos.service.wait_until(lambda v: v.screen is Screen.DECLINED, 10)
    pos.service.cancel()
    result = pos.bridge.result(msg_id)
    assert (result.pay_status, result.error_code, result.pay_channel) == (PayStatus.FAILED, "insufficient_funds", PayChannel.WECHAT)
    assert pos.balance(code) == 100_00


def test_user_paying_then_success(pos, channel):
    code, order = pos.issue(channel, behaviour="userpaying:0.5"), new_order_no()
    msg_id = pos.send(order, "+3.00")
    pos.service.scan(code)
    view = pos.service.wait_until(lambda v: v.state is State.USER_PAYING, 10)
    assert view is not None and view.countdown_s is not None and 0 < view.countdown_s <= 1.5 and view.can_cancel
    result = pos.bridge.result(msg_id)
    assert result.pay_status is PayStatus.SUCCESS and pos.balance(code) == 100_00 - 300


def test_user_paying_past_the_deadline_is_reversed(pos, channel):
    code, order = pos.issue(channel, behaviour="userpaying_forever"), new_order_no()
    result = pos.collect(order, "+3.00", code)
    assert (result.pay_status, result.error_code, result.pay_order_no) == (PayStatus.CLOSED, "pay_timeout", "")
    assert pos.balance(code) == 100_00
    assert pos.sandbox.account(code)["orders"][0]["state"] == "CLOSED"  # the channel closed it: it can never be paid later


def test_cashier_cancels_while_the_patient_confirms(pos):
    code, order = pos.issue(PayChannel.ALIPAY, behaviour="userpaying:1.2"), new_order_no()
    msg_id = pos.send(order, "+3.00")
    pos.service.scan(code)
    assert pos.service.wait_until(lambda v: v.state is State.USER_PAYING, 10)
    assert pos.service.cancel().ok
    result = pos.bridge.result(msg_id)
    assert (result.pay_status, result.error_code) == (PayStatus.CLOSED, "cancelled")
    assert pos.balance(code) == 100_00


def test_system_error_is_queried_and_the_payment_found(pos, channel):
    code, order = pos.issue(channel, behaviour="systemerror"), new_order_no()
    result = pos.collect(order, "+8.00", code)
    assert result.pay_status is PayStatus.SUCCESS and result.pay_order_no
    assert pos.balance(code) == 100_00 - 800


def test_system_error_without_payment_is_reversed(pos):
    code, order = pos.issue(PayChannel.WECHAT, behaviour="systemerror_unpaid"), new_order_no()
    result = pos.collect(order, "+8.00", code)
    assert (result.pay_status, result.error_code) == (PayStatus.CLOSED, "channel_error")
    assert pos.balance(code) == 100_00


def test_silent_and_slow_channels(pos):
    silent, slow = pos.issue(PayChannel.ALIPAY, behaviour="noreply"), pos.issue(PayChannel.WECHAT, behaviour="slow:1.5")
    result = pos.collect(new_order_no(), "+1.00", silent)
    assert (result.pay_status, result.error_code) == (PayStatus.CLOSED, "channel_error") and pos.balance(silent) == 100_00
    result = pos.collect(new_order_no(), "+1.00", slow)
    assert result.pay_status is PayStatus.SUCCESS and pos.balance(slow) == 100_00 - 100


def test_the_same_code_scanned_twice(pos, channel):
    code, order = pos.issue(channel, behaviour="userpaying:0.3"), new_order_no()
    msg_id = pos.send(order, "+2.00")
    assert pos.service.scan(code).status is ScanStatus.ACCEPTED
    assert pos.service.scan(code).status is ScanStatus.NOT_AWAITING  # the scanner read it twice
    assert pos.bridge.result(msg_id).pay_status is PayStatus.SUCCESS
    other = pos.send(new_order_no(), "+2.00")  # the patient shows the same, now used, code again
    pos.service.scan(code)
    assert pos.service.wait_until(lambda v: v.screen is Screen.DECLINED, 10)
    pos.service.cancel()
    result = pos.bridge.result(other)
    assert (result.pay_status, result.error_code) == (PayStatus.FAILED, "code_invalid")
    assert pos.balance(code) == 100_00 - 200


def test_a_second_collection_of_a_paid_order(pos, channel):
    code, order = pos.issue(channel), new_order_no()
    first = pos.collect(order, "+12.50", code)
    msg_id = pos.send(order, "+12.50")
    again = pos.bridge.result(msg_id)
    assert (again.pay_status, again.pay_order_no, again.error_code) == (PayStatus.SUCCESS, first.pay_order_no, "duplicate_order")
    assert pos.balance(code) == 100_00 - 1250
    assert pos.service.totals().collected_fen == 1250


def test_full_refund(pos, channel):
    code, order = pos.issue(channel), new_order_no()
    pos.collect(order, "+12.50", code)
    msg_id = pos.send(order, "-12.50")
    view = pos.service.view()
    assert (view.screen, view.amount_text) == (Screen.AWAITING_SUPERVISOR, "-12.50")
    assert pos.service.confirm_refund(PIN).status is PinStatus.ACCEPTED
    result = pos.bridge.result(msg_id)
    assert (result.pay_status, str(result.amount), result.pay_channel) == (PayStatus.REFUNDED, "-12.50", channel)
    assert result.pay_order_no and pos.balance(code) == 100_00
    totals = pos.service.totals().channels[0]
    assert (totals.collected_fen, totals.refunded_fen, totals.net_fen) == (1250, 1250, 0)


def test_two_partial_refunds_then_one_over_what_remains(pos):
    code, order = pos.issue(PayChannel.ALIPAY), new_order_no()
    pos.collect(order, "+10.00", code)
    for amount in ("-3.00", "-5.00"):
        msg_id = pos.send(order, amount)
        pos.service.confirm_refund(PIN)
        assert pos.bridge.result(msg_id).pay_status is PayStatus.REFUNDED
    assert pos.balance(code) == 100_00 - 200
    over = pos.bridge.result(pos.send(order, "-2.01"))
    assert (over.pay_status, over.error_code) == (PayStatus.REFUND_FAILED, "refund_exceeds_remaining")
    assert pos.service.view().screen is not Screen.AWAITING_SUPERVISOR  # nobody is bothered for it
    last = pos.send(order, "-2.00")
    pos.service.confirm_refund(PIN)
    assert pos.bridge.result(last).pay_status is PayStatus.REFUNDED and pos.balance(code) == 100_00


def test_each_partial_refund_carries_its_own_refund_id(pos, channel):
    """Issue 14 finding 10: Alipay REFUNDED results carried the payment's trade_no, so HIS could not
    tell two partial refunds of one order apart. Each refund names itself (Alipay: out_request_no)."""
    code, order = pos.issue(channel), new_order_no()
    paid = pos.collect(order, "+10.00", code)
    ids = []
    for amount in ("-3.00", "-5.00"):
        msg_id = pos.send(order, amount)
        pos.service.confirm_refund(PIN)
        result = pos.bridge.result(msg_id)
        assert result.pay_status is PayStatus.REFUNDED
        ids.append(result.pay_order_no)
    assert ids[0] and ids[1] and ids[0] != ids[1]
    assert paid.pay_order_no not in ids  # a refund id is not the payment's transaction id


def test_a_refund_of_an_unpaid_order(pos):
    code, order = pos.issue(PayChannel.WECHAT, behaviour="insufficient"), new_order_no()
    msg_id = pos.send(order, "+1.00")
    pos.service.scan(code)
    pos.service.wait_until(lambda v: v.screen is Screen.DECLINED, 10)
    pos.service.cancel()
    pos.bridge.result(msg_id)
    refund = pos.bridge.result(pos.send(order, "-1.00"))
    assert (refund.pay_status, refund.error_code) == (PayStatus.REFUND_FAILED, "order_not_paid")


def test_a_refund_without_the_supervisor_pin(pos):
    code, order = pos.issue(PayChannel.WECHAT), new_order_no()
    pos.collect(order, "+6.00", code)
    msg_id = pos.send(order, "-6.00")
    assert pos.service.confirm_refund("135790").status is PinStatus.WRONG
    assert pos.balance(code) == 100_00 - 600  # nothing refunded on a wrong PIN
    assert pos.service.decline_refund().ok
    result = pos.bridge.result(msg_id)
    assert (result.pay_status, result.error_code) == (PayStatus.REFUND_FAILED, "supervisor_declined")
    assert pos.balance(code) == 100_00 - 600


def test_concurrent_instructions_for_one_order(pos, channel):
    code, order = pos.issue(channel), new_order_no()
    envelopes = [pos.his.envelope(order, "+4.00") for _ in range(3)]
    start = threading.Barrier(3)

    def submit(envelope):
        start.wait()
        pos.service.submit_instruction(envelope)

    threads = [threading.Thread(target=submit, args=(e,)) for e in envelopes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pos.service.view().queued == 2  # one on screen, two waiting their turn
    assert pos.service.scan(code).status is ScanStatus.ACCEPTED
    results = [pos.bridge.result(e.msg_id) for e in envelopes]
    assert sorted((r.pay_status.value, r.error_code or "") for r in results) == [
        ("SUCCESS", ""), ("SUCCESS", "duplicate_order"), ("SUCCESS", "duplicate_order")]
    assert len({r.pay_order_no for r in results}) == 1
    assert pos.balance(code) == 100_00 - 400


def test_concurrent_refunds_never_exceed_the_collection(pos):
    code, order = pos.issue(PayChannel.WECHAT), new_order_no()
    pos.collect(order, "+10.00", code)
    envelopes = [pos.his.envelope(order, "-6.00") for _ in range(2)]
    threads = [threading.Thread(target=pos.service.submit_instruction, args=(e,)) for e in envelopes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pos.service.confirm_refund(PIN)
    # Whichever thread got in first is refunded; the other finds too little left, in either order.
    results = [pos.bridge.result(e.msg_id) for e in envelopes]
    assert sorted((r.pay_status.value, r.error_code or "") for r in results) == [
        ("REFUNDED", ""), ("REFUND_FAILED", "refund_exceeds_remaining")]
    assert pos.balance(code) == 100_00 - 400


def test_a_badly_signed_reply_is_never_believed(pos):
    """The replies are tampered with: the service does not take the pay reply for SUCCESS, nor for a
    failure (the channel did act). It asks again; a second unverifiable answer hands it to a person
    (issue 17) instead of reversing forever. Once the replies check again, a recheck settles it."""
    code, order = pos.issue(PayChannel.WECHAT), new_order_no()
    msg_id = pos.send(order, "+5.00")
    pos.sandbox.control("POST", "/faults", {"channel": "WECHAT", "reply_signature": "tamper"})
    try:
        pos.service.scan(code)
        view = pos.service.wait_until(lambda v: v.state is State.PAYMENT_NEEDS_PERSON, 10)
        assert view is not None and view.needs_person and "验证" in view.message.zh
        pos.bridge.pump()
        assert pos.bridge.results == {}
        assert [p.event.code for p in pos.bridge.progress if p.msg_id == msg_id and p.event][-1] == "needs_person"
    finally:
        pos.sandbox.control("POST", "/faults", {"channel": "WECHAT", "reply_signature": "ok"})
    assert pos.service.recheck().ok
    result = pos.bridge.result(msg_id)
    assert (result.pay_status, result.error_code) == (PayStatus.SUCCESS, None)  # it had been paid all along
    assert pos.balance(code) == 100_00 - 500
