"""The sandbox ledger: whatever sequence of payments, reversals and refunds, money adds up to the fen."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.sandbox.behaviour import Behaviour, Kind, channel_of_code, new_code
from firmware_sim.sandbox.store import OrderState, RefundResult, Store
from tests.budget import examples

_ops = st.lists(st.one_of(
    st.tuples(st.just("pay"), st.integers(0, 3), st.integers(0, 3), st.integers(1, 4000)),
    st.tuples(st.just("reverse"), st.integers(0, 3)),
    st.tuples(st.just("refund"), st.integers(0, 3), st.integers(0, 4), st.integers(1, 3000)),
), max_size=25)


@settings(max_examples=examples(40), deadline=None)
@given(st.sampled_from(["WECHAT", "ALIPAY"]), _ops)
def test_balances_always_equal_initial_minus_paid_plus_given_back(channel, ops):
    with tempfile.TemporaryDirectory() as directory:
        store = Store(f"{directory}/ledger.sqlite3")
        codes = []
        for n in range(4):
            behaviour = Behaviour(Kind.INSUFFICIENT) if n == 3 else Behaviour(Kind.SUCCESS)
            account = store.create_account(channel, new_code(channel), behaviour, 5000, "buyer")
            assert account is not None
            codes.append(account.code)
        for op in ops:
            if op[0] == "pay":
                store.pay(channel, f"ORDER{op[1]:04d}", codes[op[2]], op[3], "x", None)
            elif op[0] == "reverse":
                store.reverse(channel, f"ORDER{op[1]:04d}")
            else:
                result, refund, _ = store.refund(channel, f"ORDER{op[1]:04d}", f"R{op[2]}", op[3], total_fen=None, reason="x")
                assert result is not RefundResult.DONE or refund is not None
        for code in codes:
            account = store.account(code)
            assert account is not None
            orders = store.orders_for(code)
            paid = sum(o.total_fen for o in orders if o.state in (OrderState.SUCCESS, OrderState.REVOKED))
            given_back = sum(r.amount_fen for r in store.refunds_for(code))
            assert account.balance_fen == 5000 - paid + given_back >= 0
            for order in orders:
                assert 0 <= order.refunded_fen <= order.total_fen
                assert order.state is not OrderState.REVOKED or order.refunded_fen == order.total_fen
        store.close()


@pytest.mark.parametrize("text", ["success", "insufficient", "userpaying:0", "userpaying:2.5", "userpaying_forever", "systemerror",
                                  "systemerror_unpaid", "slow:3", "noreply"])
def test_behaviours_round_trip(text):
    assert Behaviour.parse(text).text == text


@pytest.mark.parametrize("text", ["", "slow", "slow:", "slow:-1", "slow:1e3", "slow:99999", "success:1", "userpaying:x", None, 5])
def test_bad_behaviours_are_refused(text):
    with pytest.raises(ValueError):
        Behaviour.parse(text)


def test_issued_codes_route_to_their_channel():
    for _ in range(200):
        assert channel_of_code(new_code("WECHAT")) == "WECHAT"
        assert channel_of_code(new_code("ALIPAY")) == "ALIPAY"
