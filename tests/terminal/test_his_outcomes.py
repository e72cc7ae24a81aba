"""His-interface 1.1 C on the POS (terminal.his_outcomes): expiry, withdrawal, declines told to HIS.

Real parts: the terminal service on a SQLite journal, the channel sandbox on loopback, sealed and
signed envelopes. Waits are on results and screens, never fixed sleeps.
"""

from __future__ import annotations

import os
import time

from protocol.envelope import seal_cancel
from protocol.messages import Cancel, PayChannel, PayStatus, Progress
from terminal.machine import State
from terminal.service import PinStatus, ScanStatus
from terminal.view import Screen

from terminal.config import Polling
from tests.terminal.conftest import make_pos, new_order_no
from tests.terminal.helpers import His, KEY, PIN as SUPERVISOR_PIN, open_service, wait_for_view


def cancel_of(msg_id: str, order_no: str, *, terminal_id: str = "T0001", ts: int | None = None):
    return seal_cancel(Cancel(terminal_id, order_no), key=KEY, msg_id=f"C-{msg_id}", reply_to=msg_id,
                       ts=int(time.time()) if ts is None else ts, nonce=os.urandom(12))


def test_a_decline_is_told_to_his_while_the_cashier_may_scan_again(pos):
    code, order = pos.issue(PayChannel.WECHAT, behaviour="insufficient"), new_order_no()
    msg_id = pos.send(order, "+12.50")
    pos.service.scan(code)
    assert wait_for_view(pos.service, lambda v: v.screen is Screen.DECLINED, 10)
    pos.bridge.pump()
    told = [p for p in pos.bridge.progress if p.msg_id == msg_id and p.event is not None]
    assert len(told) == 1
    assert told[0].state is Progress.AWAITING_SCAN and told[0].event.code == "insufficient_funds"
    assert told[0].event.message and abs(told[0].event.at - time.time()) < 60
    assert msg_id not in pos.bridge.results  # the instruction goes on: the cashier may scan another code


def test_withdrawal_while_awaiting_a_scan_ends_it_closed_withdrawn(pos):
    order = new_order_no()
    msg_id = pos.send(order, "+12.50")
    assert pos.service.withdraw(cancel_of(msg_id, order))
    result = pos.bridge.result(msg_id)
    assert (result.pay_status, result.error_code, result.pay_order_no) == (PayStatus.CLOSED, "withdrawn", "")
    assert pos.service.journal.unfinished() == []


def test_withdrawal_after_a_decline_is_closed_withdrawn_not_failed(pos):
    code, order = pos.issue(PayChannel.ALIPAY, behaviour="insufficient"), new_order_no()
    msg_id = pos.send(order, "+3.00")
    pos.service.scan(code)
    assert wait_for_view(pos.service, lambda v: v.screen is Screen.DECLINED, 10)
    pos.service.withdraw(cancel_of(msg_id, order))
    result = pos.bridge.result(msg_id)
    assert (result.pay_status, result.error_code) == (PayStatus.CLOSED, "withdrawn")
    assert "insufficient_funds" in (result.error_message or "")


def test_withdrawal_while_the_patient_confirms_reverses_the_payment(pos):
    code, order = pos.issue(PayChannel.WECHAT, behaviour="userpaying_forever"), new_order_no()
    msg_id = pos.send(order, "+7.00")
    pos.service.scan(code)
    assert wait_for_view(pos.service, lambda v: v.state is State.USER_PAYING, 10)
    pos.service.withdraw(cancel_of(msg_id, order))
    result = pos.bridge.result(msg_id)
    assert (result.pay_status, result.error_code) == (PayStatus.CLOSED, "withdrawn")
    assert pos.balance(code) == 100_00


def test_withdrawal_never_undoes_a_collection(pos):
    code, order = pos.issue(PayChannel.WECHAT), new_order_no()
    msg_id = pos.send(order, "+2.00")
    assert pos.service.scan(code).status is ScanStatus.ACCEPTED
    assert pos.bridge.result(msg_id).pay_status is PayStatus.SUCCESS
    pos.service.withdraw(cancel_of(msg_id, order))
    assert [r.pay_status for r in pos.bridge.results[msg_id]] == [PayStatus.SUCCESS]
    assert pos.balance(code) == 100_00 - 200


def test_withdrawal_of_a_refund_waiting_for_the_supervisor(pos):
    code, order = pos.issue(PayChannel.WECHAT), new_order_no()
    assert pos.collect(order, "+5.00", code).pay_status is PayStatus.SUCCESS
    msg_id = pos.send(order, "-5.00")
    assert wait_for_view(pos.service, lambda v: v.state is State.AWAITING_SUPERVISOR, 10)
    pos.service.withdraw(cancel_of(msg_id, order))
    result = pos.bridge.result(msg_id)
    assert (result.pay_status, result.error_code) == (PayStatus.REFUND_FAILED, "withdrawn")
    assert pos.service.confirm_refund(SUPERVISOR_PIN).status is PinStatus.NOT_AWAITING
    assert pos.balance(code) == 100_00 - 500


def test_a_withdrawal_for_another_order_or_unknown_instruction_is_ignored(pos):
    order = new_order_no()
    msg_id = pos.send(order, "+1.00")
    assert not pos.service.withdraw(cancel_of(msg_id, "OTHER-ORDER"))
    assert not pos.service.withdraw(cancel_of("HIS-NOPE", order))
    assert pos.service.journal.unfinished()[0].state is State.AWAITING_SCAN


def test_an_instruction_expires_by_itself_closed_expired(pos):
    order = new_order_no()
    envelope = pos.his.envelope(order, "+4.00", expires_at=int(time.time()) + 1)
    pos.service.submit_instruction(envelope)
    result = pos.bridge.result(envelope.msg_id, timeout=30)  # the service's deadline thread ends it
    assert (result.pay_status, result.error_code) == (PayStatus.CLOSED, "expired")


def test_the_bridge_default_applies_without_expires_at_and_nothing_starts_after_it(pos):
    code, order = pos.issue(PayChannel.WECHAT), new_order_no()
    envelope = pos.his.envelope(order, "+4.00")
    pos.service.submit_instruction(envelope, expires_at=int(time.time()) - 1)  # as the bridge relayed it
    result = pos.bridge.result(envelope.msg_id)
    assert (result.pay_status, result.error_code) == (PayStatus.CLOSED, "expired")
    assert pos.service.scan(code).status is ScanStatus.NOT_AWAITING
    assert pos.balance(code) == 100_00


def test_a_payment_under_way_settles_first_after_expiry(tmp_path, sandbox, channel_settings):
    # The patient confirms for 3.5 s (the deadline here is 10 s); the instruction expires 2-3 s in.
    pos = make_pos(tmp_path / "journal.db", sandbox, channel_settings,
                   polling={PayChannel.ALIPAY: Polling(query_interval_s=0.2, pay_deadline_s=10.0)})
    try:
        code, order = pos.issue(PayChannel.ALIPAY, behaviour="userpaying:3.5"), new_order_no()
        expires_at = int(time.time()) + 2
        envelope = pos.his.envelope(order, "+6.00", expires_at=expires_at)
        pos.service.submit_instruction(envelope)
        assert pos.service.scan(code).status is ScanStatus.ACCEPTED
        result = pos.bridge.result(envelope.msg_id, timeout=30)
        assert result.finished_at > expires_at  # it did expire while the payment was under way
        assert result.pay_status is PayStatus.SUCCESS and result.error_code is None  # the patient paid: it stands
        assert pos.balance(code) == 100_00 - 600
    finally:
        pos.service.close()


def test_expiry_follows_the_injected_clock_and_survives_a_restart(tmp_path):
    now = [1_795_000_000.0]
    clock = lambda: now[0]  # noqa: E731
    path = tmp_path / "journal.db"
    service = open_service(path, clock=clock)
    his = His(clock=clock)
    envelope = his.envelope("MZ1", "+12.50", expires_at=int(now[0]) + 600)
    service.submit_instruction(envelope)
    assert service.check_deadlines() == 0
    service.close()
    service.journal.close()
    now[0] += 601
    again = open_service(path, clock=clock)  # the expiry was journaled with the instruction
    try:
        assert again.journal.unfinished() == []
        row = again.journal.find_msg_id(envelope.msg_id)
        assert row is not None and (row.pay_status, row.error_code) == (PayStatus.CLOSED, "expired")
    finally:
        again.close()


def test_doc_result_msg_ids_are_r_and_24_hex_digits(pos):
    """docs/his-interface.md §5: a result's msg_id is R + 24 hex digits, made by the POS."""
    order = new_order_no()
    msg_id = pos.send(order, "+1.00")
    pos.service.cancel()
    pos.bridge.result(msg_id)
    (envelope,) = pos.bridge.envelopes[msg_id]
    import json
    import re
    assert re.fullmatch(r"R[0-9a-f]{24}", json.loads(envelope)["msg_id"])


def test_doc_refunds_that_cannot_be_honoured_skip_the_supervisor(pos):
    """docs/his-interface.md §9: order_not_paid and refund_exceeds_remaining are answered at once."""
    code, order = pos.issue(PayChannel.WECHAT), new_order_no()
    unpaid = pos.send(new_order_no(), "-1.00")
    assert (pos.bridge.result(unpaid).pay_status, pos.bridge.results[unpaid][-1].error_code) == (
        PayStatus.REFUND_FAILED, "order_not_paid")
    assert pos.collect(order, "+2.00", code).pay_status is PayStatus.SUCCESS
    too_much = pos.send(order, "-2.01")
    result = pos.bridge.result(too_much)
    assert (result.pay_status, result.error_code) == (PayStatus.REFUND_FAILED, "refund_exceeds_remaining")
    assert pos.service.view().state is not State.AWAITING_SUPERVISOR
