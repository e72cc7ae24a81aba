"""What one payment costs the database, and the refusals of its one-transaction path.

A payment's usual case is one durable transaction (nonce, last contact, idempotency claim, the
collection `paying`, its job) and one more for its settlement and stored reply (gateway.service,
"Commits per payment"). The counts below are `Database.counters`: statements sent, and round trips
(PostgreSQL's pipeline sends a batch in one). They keep the count from growing back unnoticed; the
bench reports them beside the CPU they cost. The refusals check that leaving the one-transaction
path loses nothing: the general path refuses with the same codes and stores the refusal.
"""

from __future__ import annotations

from gateway.db import Dialect
from gateway.jobs import JobKind, JobQueue
from gateway.ledger import PaymentState
from tests.gateway.test_api import error_code, gw, order, pay_body, sandbox  # noqa: F401 - the fixtures

# The usual payment, device and credentials read outside any transaction:
#   SQLite: 1 read (the device with its credentials versions) + BEGIN, nonce, idempotency claim, limits, collection, job, COMMIT + the
#   settlement's relaxed commit (PRAGMA synchronous=NORMAL, BEGIN, settlement, job delete, stored reply, COMMIT, PRAGMA synchronous=FULL)
#   = 15 statements.
#   PostgreSQL: 1 read + BEGIN and one batch, COMMIT + BEGIN and one batch, COMMIT = 5 round trips.
SQLITE_STATEMENTS = 15
POSTGRES_ROUND_TRIPS = 5


def _paid_once(gw, body: dict) -> tuple[int, int]:
    counters = gw.fleet.directory.db.counters
    before = counters.snapshot()
    status, reply = gw.pos().post("/v1/pay", body)
    after = counters.snapshot()
    assert (status, reply["state"]) == (200, "success"), reply
    return after[0] - before[0], after[1] - before[1]


def test_a_payment_costs_two_transactions_and_a_bounded_count_of_statements(gw) -> None:
    pos = gw.pos()
    assert pos.post("/v1/pay", pay_body(order(), gw.code()))[0] == 200  # first contact, credentials loaded
    body = pay_body(order(), gw.code(), 1250)
    statements, round_trips = _paid_once(gw, body)
    db = gw.fleet.directory.db
    if db.dialect is Dialect.SQLITE:
        assert statements <= SQLITE_STATEMENTS, f"a payment now takes {statements} statements"
    else:
        assert round_trips <= POSTGRES_ROUND_TRIPS, f"a payment now takes {round_trips} round trips ({statements} statements)"
    # And it did everything it did before: settled, its job gone, its reply stored for a retry.
    assert gw.fleet.ledger.payment(body["out_trade_no"], hospital_id="H001").state is PaymentState.SUCCEEDED
    assert JobQueue(db, owner="test").get(JobKind.PAYMENT, "H001", body["out_trade_no"]) is None
    status, again = pos.post("/v1/pay", body)
    assert (status, again["state"], again["out_trade_no"]) == (200, "success", body["out_trade_no"])


def test_a_payment_over_the_per_payment_limit_is_refused_and_its_refusal_kept(gw) -> None:
    pos = gw.pos()
    body = pay_body(order(), gw.code(balance="100000.00"), 10**9)
    status, reply = pos.post("/v1/pay", body)
    assert (status, error_code(reply)) == (422, "over_transaction_limit")
    assert pos.post("/v1/pay", body) == (status, reply)  # the retry gets the stored refusal
    assert gw.fleet.ledger.payment_for_order(body["order_no"], hospital_id="H001") is None


def test_a_daily_limit_set_between_two_payments_is_enforced_from_the_next(gw) -> None:
    """The one-transaction path inserts the collection before it reads the hospital's limits; a
    daily limit (which needs the hospital row locked first) turns it back to the checked way."""
    pos = gw.pos()
    assert pos.post("/v1/pay", pay_body(order(), gw.code(), 1250))[1]["state"] == "success"
    with gw.fleet.directory.db.transaction() as tx:  # as an operator's change of the hospital's settings would
        tx.execute("UPDATE hospitals SET daily_limit_fen = ? WHERE hospital_id = ?", (3000, "H001"))
    assert pos.post("/v1/pay", pay_body(order(), gw.code(), 1500))[1]["state"] == "success"  # 12.50 + 15.00 <= 30.00
    body = pay_body(order(), gw.code(), 1000)
    status, reply = pos.post("/v1/pay", body)
    assert (status, error_code(reply)) == (422, "over_hospital_daily_limit"), reply
    assert gw.fleet.ledger.payment_for_order(body["order_no"], hospital_id="H001") is None
    status, reply = pos.post("/v1/pay", pay_body(order(), gw.code(), 500))  # 27.50 + 5.00 > 30.00 as well
    assert (status, error_code(reply)) == (422, "over_hospital_daily_limit")
    status, reply = pos.post("/v1/pay", pay_body(order(), gw.code(), 250))  # exactly 30.00: allowed
    assert (status, reply["state"]) == (200, "success")


def test_an_order_already_paid_is_refused_on_the_one_transaction_path_too(gw) -> None:
    pos = gw.pos()
    order_no = order()
    assert pos.post("/v1/pay", pay_body(order_no, gw.code()))[1]["state"] == "success"
    body = pay_body(order_no, gw.code())
    status, reply = gw.pos(2).post("/v1/pay", dict(body, terminal_id="T0002"))
    assert (status, error_code(reply)) == (409, "duplicate_order")
