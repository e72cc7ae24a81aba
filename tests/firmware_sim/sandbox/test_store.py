"""The sandbox ledger: whatever sequence of payments, reversals and refunds, money adds up to the fen."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.sandbox.behaviour import Behaviour, Kind, channel_of_code, new_code
from firmware_sim.sandbox.store import OrderState, RefundResult, Store, StoreError
from tests.budget import examples

# Two merchants share the order numbers ORDER0000..3 (each number is each merchant's own).
MERCHANTS = ("", "1900000109")
_ops = st.lists(st.one_of(
    st.tuples(st.just("pay"), st.integers(0, 3), st.integers(0, 3), st.integers(1, 4000), st.integers(0, 1)),
    st.tuples(st.just("reverse"), st.integers(0, 3), st.integers(0, 1)),
    st.tuples(st.just("refund"), st.integers(0, 3), st.integers(0, 4), st.integers(1, 3000), st.integers(0, 1)),
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
                store.pay(channel, f"ORDER{op[1]:04d}", codes[op[2]], op[3], "x", None, merchant=MERCHANTS[op[4]])
            elif op[0] == "reverse":
                store.reverse(channel, f"ORDER{op[1]:04d}", merchant=MERCHANTS[op[2]])
            else:
                result, refund, _ = store.refund(channel, f"ORDER{op[1]:04d}", f"R{op[2]}", op[3], total_fen=None, reason="x",
                                                 merchant=MERCHANTS[op[4]])
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


# --- order numbers per merchant, and a data dir from before them ------------------------------------

_SCHEMA_1 = """
CREATE TABLE accounts(code TEXT PRIMARY KEY, channel TEXT NOT NULL, behaviour TEXT NOT NULL, initial_fen INTEGER NOT NULL,
    balance_fen INTEGER NOT NULL CHECK (balance_fen >= 0), buyer_id TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE orders(channel TEXT NOT NULL, out_trade_no TEXT NOT NULL, txn_id TEXT NOT NULL UNIQUE, code TEXT,
    total_fen INTEGER NOT NULL, subject TEXT NOT NULL, state TEXT NOT NULL, device_info TEXT, created_at REAL NOT NULL, paid_at REAL,
    closed_at REAL, confirm_at REAL, refunded_fen INTEGER NOT NULL DEFAULT 0, merchant TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (channel, out_trade_no));
CREATE INDEX orders_by_code ON orders(code);
CREATE TABLE refunds(channel TEXT NOT NULL, out_trade_no TEXT NOT NULL, out_refund_no TEXT NOT NULL, refund_id TEXT NOT NULL UNIQUE,
    amount_fen INTEGER NOT NULL CHECK (amount_fen > 0), kind TEXT NOT NULL, reason TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (channel, out_trade_no, out_refund_no));
CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO accounts VALUES ('105000000000000001', 'WECHAT', 'success', 10000, 8750, 'buyer', 1);
INSERT INTO orders VALUES ('WECHAT', 'MZ0001', '4200000001', '105000000000000001', 1250, 'x', 'SUCCESS', NULL, 1, 1, NULL, NULL, 250,
    '1900000109');
INSERT INTO refunds VALUES ('WECHAT', 'MZ0001', 'R1', '5030000001', 250, 'REFUND', 'x', 2);
INSERT INTO settings VALUES ('clock_offset_s', '0.0');
"""


def test_the_same_number_at_two_merchants_is_two_orders(tmp_path):
    store = Store(str(tmp_path / "ledger.sqlite3"))
    codes = [store.create_account("WECHAT", new_code("WECHAT"), Behaviour(Kind.SUCCESS), 5000, "b") for _ in range(2)]
    assert all(codes)
    for code, merchant, fen in zip(codes, MERCHANTS, (1000, 2000)):
        assert store.pay("WECHAT", "MZ0001", code.code, fen, "x", None, merchant=merchant)[0].value == "paid"
    assert [store.order("WECHAT", "MZ0001", merchant=m).total_fen for m in MERCHANTS] == [1000, 2000]
    assert store.refund("WECHAT", "MZ0001", "R1", 500, total_fen=None, reason="x", merchant=MERCHANTS[1])[0] is RefundResult.DONE
    assert store.find_refund("WECHAT", "R1", merchant=MERCHANTS[0]) is None  # refund numbers are per merchant too
    assert store.order("WECHAT", "MZ0001").refunded_fen == 0
    assert [o.merchant for o in store.orders_numbered("WECHAT", "MZ0001")] == list(MERCHANTS)
    store.close()


def test_a_data_dir_from_before_per_merchant_numbers_is_migrated(tmp_path):
    import sqlite3

    path = str(tmp_path / "sandbox.sqlite3")
    old = sqlite3.connect(path)
    old.executescript(_SCHEMA_1)
    old.close()
    store = Store(path)
    assert store.migrated_from == 1
    order = store.order("WECHAT", "MZ0001", merchant="1900000109")
    assert order is not None and (order.total_fen, order.refunded_fen, order.txn_id) == (1250, 250, "4200000001")
    refund = store.find_refund("WECHAT", "R1", merchant="1900000109")
    assert refund is not None and refund.amount_fen == 250
    assert store.account("105000000000000001").balance_fen == 8750
    store.close()
    reopened = Store(path)
    assert reopened.migrated_from is None  # once
    reopened.close()
    newer = sqlite3.connect(path)
    newer.execute("PRAGMA user_version = 99")
    newer.close()
    with pytest.raises(StoreError, match="newer than this sandbox"):
        Store(path)


def test_alipay_trades_of_a_data_dir_from_before_per_merchant_numbers_are_rekeyed(tmp_path):
    import sqlite3

    from firmware_sim.sandbox.alipay_tenants import Tenants

    path = str(tmp_path / "alipay.sqlite3")
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE trades(out_trade_no TEXT PRIMARY KEY, seller_id TEXT NOT NULL, app_id TEXT NOT NULL, auth_app_id TEXT NOT NULL,
            notify_url TEXT, notified TEXT NOT NULL DEFAULT '');
        INSERT INTO trades VALUES ('ISV-1', '2088000000000001', '2021000000000001', '2021000000000009', 'http://x/notify', 'TRADE_SUCCESS');
        INSERT INTO trades VALUES ('OWN-1', '2088000000000000', '2021000000000000', '2021000000000000', NULL, '');""")
    old.close()
    tenants = Tenants(path)
    owner = tenants.owner("ISV-1", "2088000000000001")
    assert owner is not None and (owner.notify_url, owner.notified) == ("http://x/notify", "TRADE_SUCCESS")
    assert tenants.owner("ISV-1", "2088000000000002") is None
    assert tenants.trades_of_others("2088000000000000") == [("2088000000000001", "ISV-1")]
    tenants.close()
    # the ledger's Alipay orders of that time were all under the default merchant: the sandbox moves them
    store = Store(str(tmp_path / "ledger.sqlite3"))
    code = store.create_account("ALIPAY", new_code("ALIPAY"), Behaviour(Kind.SUCCESS), 5000, "b")
    assert code is not None
    store.pay("ALIPAY", "ISV-1", code.code, 100, "x", None)
    assert store.assign_merchant("ALIPAY", "ISV-1", "2088000000000001")
    assert store.order("ALIPAY", "ISV-1") is None and store.order("ALIPAY", "ISV-1", merchant="2088000000000001") is not None
    store.close()
