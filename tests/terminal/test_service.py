"""The service without a channel: step-4 checks, idempotency, queueing, cancel, refund gates, PIN,
link delivery, views. (Money moving through a channel: test_e2e.py, against the sandbox.)"""

import time

import pytest

from protocol.crypto import SharedKey
from protocol.errors import ErrorCode
from protocol.link.app import ProgressMsg, ResultMsg
from protocol.messages import PayChannel, PayStatus, Progress
from terminal.machine import Kind, State
from terminal.service import PinStatus, ScanStatus
from terminal.view import Screen
from tests.terminal.helpers import DEVICE_ID, KEY, OLD_KEY, PIN, Bridge, His, make_config, open_service


@pytest.fixture
def svc(tmp_path):
    service = open_service(tmp_path / "journal.db")
    yield service
    service.close()


def seed_collection(journal, order_no, paid_fen, channel=PayChannel.WECHAT):
    """A journal that already holds a successful collection of `order_no` (as after a payment)."""
    with journal.transaction("seed") as tx:
        seq = tx.add_instruction(kid="k2026a", msg_id=f"SEED-{order_no}", envelope_ts=1, terminal_id="T0001",
                                 order_no=order_no, kind=Kind.COLLECT, amount_fen=paid_fen, display=None, now=time.time())
        tx.add_attempt(seq=seq, out_trade_no=f"P{order_no}", attempt_no=1, channel=channel, code_masked="1345****6789",
                       now=time.time(), deadline=time.time())
        tx.add_collection(order_no=order_no, seq=seq, out_trade_no=f"P{order_no}", channel=channel,
                          channel_txn_id="4200000001", paid_fen=paid_fen, now=time.time())
        tx.advance(seq, State.QUEUED, State.FINISHED, time.time(), pay_status=PayStatus.SUCCESS, finished_at=time.time())


@pytest.mark.parametrize(("kwargs", "code", "sealed"), [
    ({"terminal_id": "T9999"}, ErrorCode.UNKNOWN_TERMINAL, True),
    ({"amount": "+5000.01"}, ErrorCode.BAD_AMOUNT, True),  # the device's own limit (5000.00 here)
    ({"amount": "-5000.01"}, ErrorCode.BAD_AMOUNT, True),
    ({"ts": int(time.time()) - 2 * 86400}, ErrorCode.CLOCK_SKEW, True),
    ({"key": SharedKey("k2026a", "AES-256-GCM", bytes(32))}, ErrorCode.AUTH_FAILED, False),  # cannot seal for HIS
    ({"key": SharedKey("k1999", "AES-256-GCM", bytes(32))}, ErrorCode.UNKNOWN_KID, False),
    ({"key": SharedKey(OLD_KEY.kid, OLD_KEY.suite, OLD_KEY.secret)}, ErrorCode.UNKNOWN_KID, False),  # retired
])
def test_protocol_refusals_are_signed_results_or_end_nothing(svc, kwargs, code, sealed):
    """1.1 A: every refusal that ends an instruction is a sealed result signed by the device; what
    cannot be sealed for HIS (the keys differ) is a NotTakenMsg, which ends nothing."""
    bridge = Bridge(svc)
    amount = kwargs.pop("amount", "+12.50")
    svc.submit_instruction(His().envelope("MZ1", amount, msg_id="HIS-1", **kwargs))
    bridge.pump()
    assert [(r.msg_id, r.code, r.sealed) for r in bridge.refused] == [("HIS-1", code, sealed)]
    assert svc.view().screen is Screen.IDLE and svc.journal.unfinished() == []
    if sealed:
        (result,) = bridge.results["HIS-1"]
        failed = PayStatus.REFUND_FAILED if amount.startswith("-") else PayStatus.FAILED
        assert (result.pay_status, result.error_code, result.order_no, str(result.amount)) == (failed, code.value, "MZ1", amount)
        assert result.pay_order_no == "" and result.pay_channel is None and result.error_message
    else:
        assert bridge.results == {} and svc.journal.seen(KEY.kid, "HIS-1") is None


def test_a_sealed_refusal_is_journaled_once_and_answered_again_identically(svc):
    bridge = Bridge(svc)
    envelope = His().envelope("MZ1", "+12.50", msg_id="HIS-1", terminal_id="T9999")
    svc.submit_instruction(envelope)
    svc.submit_instruction(envelope)
    bridge.pump()
    assert len(bridge.envelopes["HIS-1"]) == 1 and len(bridge.results["HIS-1"]) == 2
    assert svc.journal.unfinished() == []


def test_a_late_instruction_within_the_device_window_is_accepted(svc):
    """The bridge checked +-300 s on arrival; a cable fault may deliver it hours later: taken while
    its expiry (here HIS's own expires_at, his-interface 1.1 C) has not passed."""
    bridge = Bridge(svc)
    now = int(time.time())
    svc.submit_instruction(His().envelope("MZ1", "+12.50", ts=now - 3 * 3600, expires_at=now + 600))
    bridge.pump()
    assert bridge.refused == [] and svc.view().screen is Screen.AWAITING_SCAN


def test_same_msg_id_other_content_is_a_conflict(svc):
    bridge = Bridge(svc)
    his = His()
    svc.submit_instruction(his.envelope("MZ1", "+12.50", msg_id="HIS-1"))
    svc.submit_instruction(his.envelope("MZ1", "+13.50", msg_id="HIS-1"))
    bridge.pump()
    assert [r.code for r in bridge.refused] == [ErrorCode.MSG_ID_CONFLICT]


def test_identical_envelope_executes_once_and_gets_the_stored_answer(svc):
    bridge = Bridge(svc)
    envelope = His().envelope("MZ1", "+12.50", msg_id="HIS-1")
    svc.submit_instruction(envelope)
    svc.submit_instruction(envelope)
    bridge.pump()
    assert [p.state for p in bridge.progress] == [Progress.AWAITING_SCAN, Progress.AWAITING_SCAN]
    assert len(svc.journal.unfinished()) == 1
    svc.cancel()
    first = bridge.result("HIS-1")
    svc.submit_instruction(envelope)
    bridge.pump()
    assert len(bridge.envelopes["HIS-1"]) == 1 and len(bridge.results["HIS-1"]) == 2  # the same bytes again
    assert first.pay_status is PayStatus.CLOSED and first.error_code == "cancelled"


def test_cancel_before_scan_is_closed_and_the_result_is_sealed_properly(svc):
    bridge = Bridge(svc)
    svc.submit_instruction(His().envelope("MZ20261122000123", "+12.50", msg_id="HIS-7"))
    assert svc.cancel().ok
    messages = svc.outbox.drain()
    result_msg = [m for m in messages if isinstance(m, ResultMsg)][0]
    env = result_msg.envelope
    assert env.kid == KEY.kid and env.reply_to == "HIS-7" and env.device_id == DEVICE_ID and env.msg_id != "HIS-7"
    for m in messages:
        bridge.take(m)
    result = bridge.results["HIS-7"][0]
    assert (result.order_no, result.pay_status, result.pay_order_no, str(result.amount)) == ("MZ20261122000123", PayStatus.CLOSED, "", "+12.50")
    assert svc.view().screen is Screen.RESULT
    svc.dismiss()
    assert svc.view().screen is Screen.IDLE


def test_instructions_wait_their_turn(svc):
    bridge = Bridge(svc)
    his = His()
    svc.submit_instruction(his.envelope("A", "+1.00", msg_id="HIS-A"))
    svc.submit_instruction(his.envelope("B", "+2.00", msg_id="HIS-B"))
    bridge.pump()
    assert (svc.view().order_no, svc.view().queued) == ("A", 1)
    assert ProgressMsg("HIS-B", Progress.DELIVERED) in bridge.progress
    svc.cancel()
    view = svc.view()
    assert (view.order_no, view.screen, view.last_result.order_no) == ("B", Screen.AWAITING_SCAN, "A")


def test_scans_that_cannot_pay(svc):
    assert svc.scan("134567890123456789").status is ScanStatus.NOT_AWAITING
    svc.submit_instruction(His().envelope("MZ1", "+12.50"))
    reply = svc.scan("https://example.com/qr")
    assert reply.status is ScanStatus.REFUSED and reply.reason == "link_qr_code"
    view = svc.view()
    assert view.screen is Screen.AWAITING_SCAN and view.notice == reply.message and view.can_scan
    assert svc.scan("134567890123456789").status is ScanStatus.UNAVAILABLE  # no WeChat Pay configured here
    assert svc.view().screen is Screen.AWAITING_SCAN


def test_second_collection_of_a_paid_order_returns_the_original(svc):
    seed_collection(svc.journal, "MZ9", 1250)
    bridge = Bridge(svc)
    svc.submit_instruction(His().envelope("MZ9", "+12.50", msg_id="HIS-9"))
    result = bridge.result("HIS-9")
    assert (result.pay_status, result.error_code, result.pay_order_no, result.pay_channel) == (
        PayStatus.SUCCESS, "duplicate_order", "4200000001", PayChannel.WECHAT)
    assert result.refunded_fen == 0 and str(result.amount) == "+12.50"
    assert svc.totals().collected_fen == 0  # nothing moved


def test_duplicate_order_says_what_was_refunded_and_never_books_another_amount(svc):
    seed_collection(svc.journal, "MZ9", 1250)
    with svc.journal.transaction("seed refund") as tx:  # 3.00 of it refunded since
        seq = tx.add_instruction(kid="k2026a", msg_id="SEED-R", envelope_ts=1, terminal_id="T0001", order_no="MZ9",
                                 kind=Kind.REFUND, amount_fen=300, display=None, now=time.time())
        tx.reserve_refund(out_refund_no="RSEED", seq=seq, order_no="MZ9", refund_fen=300, now=time.time())
        tx.settle_refund("RSEED", refunded=True, channel_refund_id="5030001", now=time.time())
        tx.advance(seq, State.QUEUED, State.FINISHED, time.time(), pay_status=PayStatus.REFUNDED, finished_at=time.time())
    bridge = Bridge(svc)
    svc.submit_instruction(His().envelope("MZ9", "+12.50", msg_id="HIS-9"))
    assert bridge.result("HIS-9").refunded_fen == 300
    # Step 6: a result's amount is always the instruction's; another amount was never collected.
    svc.submit_instruction(His().envelope("MZ9", "+20.00", msg_id="HIS-10"))
    other = bridge.result("HIS-10")
    assert (other.pay_status, other.error_code, str(other.amount), other.refunded_fen) == (
        PayStatus.FAILED, "duplicate_order", "+20.00", 300)
    assert "12.50" in other.error_message and other.pay_order_no == "4200000001"


def test_part_b_the_pos_requires_his_signature_too(tmp_path):
    import dataclasses

    from protocol import signing
    from protocol.envelope import sign_envelope
    from protocol.signatures import HisSignaturePolicy

    his_seed = bytes(range(7, 39))
    policy = HisSignaturePolicy((signing.public_key(his_seed),), required=True)
    service = open_service(tmp_path / "j.db", dataclasses.replace(make_config(), his_signature=policy))
    try:
        bridge = Bridge(service)
        service.submit_instruction(His().envelope("MZ1", "-5.00", msg_id="HIS-1"))  # a refund nobody at HIS signed
        bridge.pump()
        assert [(r.msg_id, r.code, r.sealed) for r in bridge.refused] == [("HIS-1", ErrorCode.AUTH_FAILED, True)]
        assert bridge.results["HIS-1"][0].pay_status is PayStatus.REFUND_FAILED
        service.submit_instruction(sign_envelope(His().envelope("MZ2", "+5.00", msg_id="HIS-2"), his_seed))
        assert service.view().screen is Screen.AWAITING_SCAN
    finally:
        service.close()


@pytest.mark.parametrize(("amount", "code"), [("-12.51", "refund_exceeds_remaining"), ("-1.00", None)])
def test_refund_gates(svc, amount, code):
    seed_collection(svc.journal, "MZ9", 1250)
    bridge = Bridge(svc)
    svc.submit_instruction(His().envelope("MZX", "-1.00", msg_id="HIS-X"))
    assert bridge.result("HIS-X").error_code == "order_not_paid"
    svc.submit_instruction(His().envelope("MZ9", amount, msg_id="HIS-R"))
    if code:
        result = bridge.result("HIS-R")
        assert (result.pay_status, result.error_code) == (PayStatus.REFUND_FAILED, code)
        assert "12.50 yuan of 12.50 remains" in result.error_message
    else:
        view = svc.view()
        assert (view.screen, view.amount_text, view.pin_tries_left) == (Screen.AWAITING_SUPERVISOR, "-1.00", 3)


def test_a_refund_shows_the_payment_it_goes_back_against(svc):
    """The supervisor approves against the original payment: its channel, what was paid, what was
    refunded already and what remains (finding 5 of issue 16)."""
    seed_collection(svc.journal, "MZ9", 1250)
    with svc.journal.transaction("seed refund") as tx:  # 3.00 of it refunded earlier
        seq = tx.add_instruction(kid="k2026a", msg_id="SEED-R", envelope_ts=1, terminal_id="T0001", order_no="MZ9",
                                 kind=Kind.REFUND, amount_fen=300, display=None, now=time.time())
        assert tx.reserve_refund(out_refund_no="RMZ9-1", seq=seq, order_no="MZ9", refund_fen=300, now=time.time())
        tx.settle_refund("RMZ9-1", refunded=True, channel_refund_id="5000001", now=time.time())
        tx.advance(seq, State.QUEUED, State.FINISHED, time.time(), pay_status=PayStatus.REFUNDED, finished_at=time.time())
    svc.submit_instruction(His().envelope("MZ9", "-1.00", msg_id="HIS-R"))
    original = svc.view().original
    assert original is not None and svc.view().screen is Screen.AWAITING_SUPERVISOR
    assert (original.channel, original.paid_fen, original.refunded_fen, original.remaining_fen, original.channel_txn_id) == \
        (PayChannel.WECHAT, 1250, 300, 950, "4200000001")
    svc.decline_refund()
    svc.submit_instruction(His().envelope("MZ10", "+2.00", msg_id="HIS-C"))
    assert svc.view().screen is Screen.AWAITING_SCAN and svc.view().original is None  # a collection has none


def test_wrong_pins_lock_out_and_survive_a_restart(tmp_path):
    svc = open_service(tmp_path / "j.db")
    seed_collection(svc.journal, "MZ9", 1250)
    svc.submit_instruction(His().envelope("MZ9", "-5.00", msg_id="HIS-R"))
    assert svc.confirm_refund("000000").status is PinStatus.WRONG
    assert svc.confirm_refund("12").tries_left == 1  # malformed counts as wrong
    locked = svc.confirm_refund("111111")
    assert locked.status is PinStatus.LOCKED and locked.locked_until > time.time()
    assert svc.confirm_refund(PIN).status is PinStatus.LOCKED  # even the right PIN, while locked
    assert svc.view().pin_locked_until is not None
    svc.close()
    again = open_service(tmp_path / "j.db", seed=2)
    assert again.confirm_refund(PIN).status is PinStatus.LOCKED
    assert again.view().screen is Screen.AWAITING_SUPERVISOR  # the refund is still waiting
    bridge = Bridge(again)
    assert again.decline_refund().ok
    result = bridge.result("HIS-R")
    assert (result.pay_status, result.error_code, str(result.amount)) == (PayStatus.REFUND_FAILED, "supervisor_declined", "-5.00")
    again.close()


def test_results_wait_for_the_link_and_its_ack(tmp_path):
    svc = open_service(tmp_path / "j.db")
    svc.link_down()
    svc.submit_instruction(His().envelope("MZ1", "+1.00", msg_id="HIS-1"))
    svc.cancel()
    assert svc.outbox.drain() == []  # nothing goes out while the link is down
    svc.link_up()
    bridge = Bridge(svc, ack=False)
    bridge.result("HIS-1")
    svc.link_down()
    svc.link_up()  # not acknowledged: sent again
    bridge.ack = True
    bridge.result("HIS-1")
    assert len(bridge.results["HIS-1"]) == 2 and len(bridge.envelopes["HIS-1"]) == 1
    svc.link_down()
    svc.link_up()
    assert [m for m in svc.outbox.drain() if isinstance(m, ResultMsg)] == []  # acknowledged: done
    svc.close()


def test_undelivered_results_are_resent_after_a_restart(tmp_path):
    svc = open_service(tmp_path / "j.db")
    svc.submit_instruction(His().envelope("MZ1", "+1.00", msg_id="HIS-1"))
    svc.cancel()
    svc.close()  # the result never left
    again = open_service(tmp_path / "j.db", seed=2)
    assert Bridge(again).result("HIS-1").error_code == "cancelled"
    again.close()


def test_observers_see_every_change_in_order(svc):
    views = []
    remove = svc.add_observer(views.append)
    svc.submit_instruction(His().envelope("MZ1", "+12.50"))
    svc.scan("not a code")
    svc.cancel()
    remove()
    svc.submit_instruction(His().envelope("MZ2", "+12.50"))
    assert [v.screen for v in views] == [Screen.AWAITING_SCAN, Screen.AWAITING_SCAN, Screen.RESULT]
    assert [v.revision for v in views] == sorted({v.revision for v in views})
    assert views[1].notice is not None and views[2].notice is None


def test_history_totals_and_receipt(svc):
    seed_collection(svc.journal, "MZ9", 1250)
    svc.submit_instruction(His().envelope("MZ1", "+3.00", msg_id="HIS-1", patient="欧阳小明"))
    svc.cancel()
    history = svc.history()
    assert [h.order_no for h in history] == ["MZ1"]  # the seeded collection has no result of its own
    assert [h.order_no for h in svc.history(order_no="mz1")] == ["MZ1"]
    receipt = svc.receipt("HIS-1")
    assert receipt.patient == "欧**明" and receipt.amount_text == "¥3.00" and receipt.device_id == DEVICE_ID
    assert receipt.merchant_name == "示例市人民医院" and receipt.pay_status is PayStatus.CLOSED
    assert svc.receipt("nope") is None


def test_msg_ids_are_remembered_for_memory_plus_window_then_purged(tmp_path):
    now = [time.time()]
    svc = open_service(tmp_path / "j.db", clock=lambda: now[0])
    envelope = His(clock=lambda: now[0]).envelope("MZ1", "+1.00", msg_id="HIS-1")
    svc.submit_instruction(envelope)
    svc.cancel()
    now[0] += 86400 + 10  # past the answer's 24 h: the identical envelope is a replay now
    bridge = Bridge(svc)
    svc.submit_instruction(envelope)
    bridge.pump()
    assert bridge.refused[-1].code is ErrorCode.REPLAY  # idempotency is checked before the clock
    assert svc.journal.seen("k2026a", "HIS-1") is not None
    now[0] += 86400  # past memory + window: forgotten, and the clock window refuses it anyway
    svc.submit_instruction(envelope)
    bridge.pump()
    assert svc.journal.seen("k2026a", "HIS-1") is None
    assert bridge.refused[-1].code is ErrorCode.CLOCK_SKEW
    svc.close()
