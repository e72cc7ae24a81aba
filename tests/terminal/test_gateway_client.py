"""The POS's gateway client reads the amounts of the gateway's replies once, strictly (issue 11
item 2: the gateway -> POS boundary). A reply whose amount is not an integer of fen is not
understood: UNKNOWN, so the POS queries again instead of booking what it cannot read."""

from __future__ import annotations

import pytest

from protocol.messages import PayChannel
from terminal.channels.base import PayState, RefundState
from terminal.gateway_client import GatewayChannelClient, GatewayConnection


def _client() -> GatewayChannelClient:
    # Port 9 (discard): nothing is sent; these tests read replies only.
    return GatewayChannelClient(GatewayConnection("http://127.0.0.1:9", device_id="D1", seed=bytes(32)), PayChannel.WECHAT,
                                terminal_id="T0001")


def _paid(paid_fen: object) -> dict[str, object]:
    return {"state": "success", "channel_txn_id": "4200000001", "paid_fen": paid_fen, "result_code": None}


def test_a_paid_amount_in_fen_is_taken() -> None:
    outcome = _client()._pay_outcome(200, _paid(1250))
    assert (outcome.state, outcome.paid_fen) == (PayState.SUCCESS, 1250)


@pytest.mark.parametrize("paid_fen", ["1250", 12.5, True, 0, -1250, 10**13])
def test_a_paid_amount_that_is_not_fen_is_not_booked(paid_fen: object) -> None:
    outcome = _client()._pay_outcome(200, _paid(paid_fen))
    assert outcome.state is PayState.UNKNOWN and outcome.paid_fen is None


def test_a_reply_without_an_amount_stays_without_one() -> None:
    outcome = _client()._pay_outcome(200, {"state": "failed", "result_code": "declined"})
    assert outcome.state is PayState.FAILED and outcome.paid_fen is None


@pytest.mark.parametrize("refunded_fen", ["500", 5.0, False])
def test_a_refunded_amount_that_is_not_fen_is_not_booked(refunded_fen: object) -> None:
    outcome = _client()._refund_outcome(200, {"state": "success", "channel_refund_id": "R1", "refunded_fen": refunded_fen})
    assert outcome.state is RefundState.UNKNOWN and outcome.refunded_fen is None


def test_the_gateways_over_limit_refusal_is_bad_amount_as_the_bridges_and_the_poss() -> None:
    """One limit, one code: the gateway's over_transaction_limit reaches HIS as bad_amount."""
    outcome = _client()._pay_outcome(422, {"error": {"code": "over_transaction_limit", "message": "over 2000.00"}})
    assert outcome.state is PayState.FAILED and outcome.result_code is not None and outcome.result_code.value == "bad_amount"
