"""Issue 17: WeChat Pay's documented refund limits are refused by the gateway up front, with clear
codes, before the channel is asked: a refund more than a year after the payment, and more than 50
refunds of one payment. Alipay documents neither limit: its refunds are not held to them. Both
databases (the `db` fixture: SQLite and a real PostgreSQL server)."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayCode
from gateway.ledger import WECHAT_MAX_REFUNDS, WECHAT_REFUND_WINDOW_S, PaymentState, RefundState
from protocol.messages import PayChannel
from tests.gateway.fleet import make_fleet
from tests.gateway.test_ledger import Clock, paid, refuse


def _refund(fleet, order_no: str, number: str, fen: int):
    return fleet.ledger.start_refund(hospital_id="H001", order_no=order_no, out_refund_no=number, amount_fen=fen, device_id="H001-POS1")


@pytest.mark.parametrize("channel, refused", [(PayChannel.WECHAT, True), (PayChannel.ALIPAY, False)])
def test_a_refund_more_than_a_year_after_the_payment(db, channel, refused) -> None:
    clock = Clock()
    fleet = make_fleet(db, clock=clock)
    paid(fleet, "MZ0001", 5000, trade_no="A1", channel=channel)
    clock.now += WECHAT_REFUND_WINDOW_S - 60
    assert _refund(fleet, "MZ0001", "R1", 100).state is RefundState.REFUNDING  # within the year
    clock.now += 120
    if refused:
        err = refuse(GatewayCode.REFUND_WINDOW_CLOSED, _refund, fleet, "MZ0001", "R2", 100)
        assert "one year" in err.message and "MZ0001" in err.message
        assert err.http_status == 422
    else:
        assert _refund(fleet, "MZ0001", "R2", 100).state is RefundState.REFUNDING


@pytest.mark.parametrize("channel, refused", [(PayChannel.WECHAT, True), (PayChannel.ALIPAY, False)])
def test_more_than_50_refunds_of_one_payment(db, channel, refused) -> None:
    fleet = make_fleet(db)
    paid(fleet, "MZ0001", 10_000, trade_no="A1", channel=channel)
    for n in range(WECHAT_MAX_REFUNDS):
        refund = _refund(fleet, "MZ0001", f"R{n}", 10)
        # Failed ones count too: WeChat counts every refund request of the order.
        fleet.ledger.settle_refund(refund.out_refund_no, hospital_id="H001", state=RefundState.FAILED if n % 2 else RefundState.SUCCEEDED)
    assert WECHAT_MAX_REFUNDS == 50
    if refused:
        err = refuse(GatewayCode.TOO_MANY_REFUNDS, _refund, fleet, "MZ0001", "R50", 10)
        assert "50" in err.message
    else:
        assert _refund(fleet, "MZ0001", "R50", 10).state is RefundState.REFUNDING
    assert fleet.ledger.payment_for_order("MZ0001", hospital_id="H001").state is PaymentState.SUCCEEDED


@pytest.mark.parametrize("code, result", [("refund_window_closed", "refund_window_closed"), ("too_many_refunds", "too_many_refunds"),
                                          ("refund_exceeds_collected", "refund_exceeds_remaining"), ("not_paid", "refund_rejected")])
def test_the_pos_reports_the_gateways_refusal_to_his_with_its_own_code(code, result) -> None:
    """The POS turns the gateway's refusal into the REFUND_FAILED error_code HIS sees."""
    from terminal.channels.base import RefundState as PosRefundState
    from protocol.messages import PayChannel as Channel
    from terminal.gateway_client import GatewayChannelClient, GatewayConnection

    client = GatewayChannelClient(GatewayConnection("http://127.0.0.1:9", device_id="D1", seed=bytes(32)), Channel.WECHAT, terminal_id="T0001")
    outcome = client._refund_outcome(422, {"error": {"code": code, "message": "x"}})
    assert (outcome.state, outcome.result_code.value) == (PosRefundState.FAILED, result)
