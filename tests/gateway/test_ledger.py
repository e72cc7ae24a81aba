"""The money rules, each run against SQLite and against a real PostgreSQL server (`db` fixture)."""

from __future__ import annotations

import datetime
import threading

import pytest

from gateway.db import UniqueViolation
from gateway.errors import GatewayCode, GatewayError
from gateway.ledger import BUSINESS_TZ, PaymentState, RefundState, Unbatched, business_day
from protocol.messages import PayChannel
from tests.gateway.fleet import make_fleet

# 2026-12-01 15:59:59 UTC is 23:59:59 in Shanghai: the next second is a new business day.
LAST_SECOND = datetime.datetime(2026, 12, 1, 23, 59, 59, tzinfo=BUSINESS_TZ).timestamp()


class Clock:
    def __init__(self, now: float = LAST_SECOND - 3600) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pay(fleet, order_no: str, fen: int, *, trade_no: str, terminal: str = "T0001", device: str = "H001-POS1",
        channel: PayChannel = PayChannel.WECHAT, hospital: str = "H001"):
    return fleet.ledger.start_payment(hospital_id=hospital, terminal_id=terminal, device_id=device, order_no=order_no,
                                      out_trade_no=trade_no, channel=channel, amount_fen=fen)


def paid(fleet, order_no: str, fen: int, *, trade_no: str, **kw):
    payment = pay(fleet, order_no, fen, trade_no=trade_no, **kw)
    return fleet.ledger.settle_payment(trade_no, hospital_id="H001", state=PaymentState.SUCCEEDED, channel_txn_id="4200" + trade_no)


def refuse(code: GatewayCode, fn, *args, **kwargs) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        fn(*args, **kwargs)
    assert info.value.code is code, info.value
    return info.value


# --- one order, one payment ---------------------------------------------------------------------


def test_a_second_window_cannot_collect_an_order_already_under_way(db) -> None:
    fleet = make_fleet(db)
    pay(fleet, "MZ0001", 1250, trade_no="A1")
    err = refuse(GatewayCode.DUPLICATE_ORDER, pay, fleet, "MZ0001", 1250, trade_no="B1", terminal="T0002", device="H001-POS2")
    assert "MZ0001" in err.message
    fleet.ledger.settle_payment("A1", hospital_id="H001", state=PaymentState.SUCCEEDED)
    refuse(GatewayCode.DUPLICATE_ORDER, pay, fleet, "MZ0001", 1250, trade_no="B2", terminal="T0002", device="H001-POS2")


@pytest.mark.parametrize("ending", [PaymentState.FAILED, PaymentState.CLOSED])
def test_a_declined_or_closed_attempt_can_be_followed_by_another(db, ending) -> None:
    fleet = make_fleet(db)
    pay(fleet, "MZ0001", 1250, trade_no="A1")
    fleet.ledger.settle_payment("A1", hospital_id="H001", state=ending, result_code="insufficient_funds")
    second = pay(fleet, "MZ0001", 1250, trade_no="A2", terminal="T0002", device="H001-POS2")
    assert second.state is PaymentState.PAYING
    assert fleet.ledger.payment_for_order("MZ0001", hospital_id="H001").out_trade_no == "A2"


def test_the_database_itself_refuses_a_second_active_collection(db) -> None:
    """The rule is the unique index, not the ledger's code: a raw INSERT that skips the ledger fails."""
    fleet = make_fleet(db)
    pay(fleet, "MZ0001", 1250, trade_no="A1")
    with pytest.raises(UniqueViolation):
        with db.transaction() as tx:
            tx.execute(
                "INSERT INTO payments (hospital_id, terminal_id, device_id, order_no, out_trade_no, channel, amount_fen, state, "
                "local_day, created_at, updated_at) VALUES ('H001', 'T0002', 'H001-POS2', 'MZ0001', 'RAW1', 'ALIPAY', 1250, "
                "'succeeded', '2026-12-01', 0, 0)")


def test_the_same_order_at_two_hospitals_is_two_orders(db) -> None:
    fleet = make_fleet(db)
    other = make_fleet(db, hospital_id="H002", vault=fleet.directory.vault)
    pay(fleet, "MZ0001", 1250, trade_no="A1")
    assert pay(other, "MZ0001", 1250, trade_no="A1", hospital="H002", terminal="T0001", device="H002-POS1").state is PaymentState.PAYING


def test_concurrent_collections_of_one_order_from_every_window_charge_once(db) -> None:
    fleet = make_fleet(db, devices=6)
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def window(i: int) -> None:
        barrier.wait()
        try:
            pay(fleet, "MZ0009", 5000, trade_no=f"W{i}", terminal=f"T{i:04d}", device=f"H001-POS{i}")
            outcomes.append("paying")
        except GatewayError as exc:
            outcomes.append(exc.code.value)

    threads = [threading.Thread(target=window, args=(i,)) for i in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["duplicate_order"] * 5 + ["paying"]


def test_concurrent_collections_never_slip_past_the_daily_limit_together(db) -> None:
    """With a daily limit the starts of one hospital are serialised (its row locked on PostgreSQL):
    six windows paying 10.00 at once against a 30.00 day get three through, three refused."""
    fleet = make_fleet(db, devices=6, daily_limit_fen=30_00)
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def window(i: int) -> None:
        barrier.wait()
        try:
            pay(fleet, f"MZL{i}", 10_00, trade_no=f"L{i}", terminal=f"T{i:04d}", device=f"H001-POS{i}")
            outcomes.append("paying")
        except GatewayError as exc:
            outcomes.append(exc.code.value)

    threads = [threading.Thread(target=window, args=(i,)) for i in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["over_hospital_daily_limit"] * 3 + ["paying"] * 3


# --- refunds --------------------------------------------------------------------------------------


def test_refunds_never_exceed_what_was_collected(db) -> None:
    fleet = make_fleet(db)
    paid(fleet, "MZ0001", 10000, trade_no="A1")
    fleet.ledger.start_refund(hospital_id="H001", order_no="MZ0001", out_refund_no="R1", amount_fen=6000, device_id="H001-POS1")
    # The in-flight refund counts: 40.00 remain, not 100.00.
    err = refuse(GatewayCode.REFUND_EXCEEDS_COLLECTED, fleet.ledger.start_refund, hospital_id="H001", order_no="MZ0001",
                 out_refund_no="R2", amount_fen=4001, device_id="H001-POS1")
    assert "40.00" in err.message
    fleet.ledger.start_refund(hospital_id="H001", order_no="MZ0001", out_refund_no="R2", amount_fen=4000, device_id="H001-POS1")
    assert fleet.ledger.refundable_fen("MZ0001", hospital_id="H001") == 0
    # A refund the channel declined gives its reservation back.
    fleet.ledger.settle_refund("R2", hospital_id="H001", state=RefundState.FAILED)
    assert fleet.ledger.refundable_fen("MZ0001", hospital_id="H001") == 4000
    fleet.ledger.settle_refund("R1", hospital_id="H001", state=RefundState.SUCCEEDED, channel_refund_id="5030R1")
    refuse(GatewayCode.REFUND_EXCEEDS_COLLECTED, fleet.ledger.start_refund, hospital_id="H001", order_no="MZ0001",
           out_refund_no="R3", amount_fen=4001, device_id="H001-POS2")


def test_a_refund_needs_a_paid_collection(db) -> None:
    fleet = make_fleet(db)
    refuse(GatewayCode.UNKNOWN_PAYMENT, fleet.ledger.start_refund, hospital_id="H001", order_no="MZ0404",
           out_refund_no="R1", amount_fen=1, device_id="H001-POS1")
    pay(fleet, "MZ0001", 1000, trade_no="A1")
    refuse(GatewayCode.NOT_PAID, fleet.ledger.start_refund, hospital_id="H001", order_no="MZ0001",
           out_refund_no="R1", amount_fen=1, device_id="H001-POS1")


def test_a_refund_number_is_used_once(db) -> None:
    fleet = make_fleet(db)
    paid(fleet, "MZ0001", 1000, trade_no="A1")
    fleet.ledger.start_refund(hospital_id="H001", order_no="MZ0001", out_refund_no="R1", amount_fen=100, device_id="H001-POS1")
    refuse(GatewayCode.DUPLICATE_REFUND, fleet.ledger.start_refund, hospital_id="H001", order_no="MZ0001",
           out_refund_no="R1", amount_fen=100, device_id="H001-POS1")


def test_concurrent_refunds_never_exceed_the_collection(db) -> None:
    """Eight refunds of 30.00 fired at once against 100.00 paid: exactly three fit."""
    fleet = make_fleet(db)
    paid(fleet, "MZ0001", 10000, trade_no="A1")
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def refund(i: int) -> None:
        barrier.wait()
        try:
            fleet.ledger.start_refund(hospital_id="H001", order_no="MZ0001", out_refund_no=f"R{i}", amount_fen=3000,
                                      device_id="H001-POS1")
            result = "reserved"
        except GatewayError as exc:
            result = exc.code.value
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=refund, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refund_exceeds_collected"] * 5 + ["reserved"] * 3
    with db.transaction(write=False) as tx:
        assert tx.scalar("SELECT SUM(amount_fen) FROM refunds") == 9000
    assert fleet.ledger.refundable_fen("MZ0001", hospital_id="H001") == 1000


def test_a_refunded_collection_cannot_be_reversed(db) -> None:
    fleet = make_fleet(db)
    paid(fleet, "MZ0001", 1000, trade_no="A1")
    fleet.ledger.start_refund(hospital_id="H001", order_no="MZ0001", out_refund_no="R1", amount_fen=100, device_id="H001-POS1")
    refuse(GatewayCode.BAD_TRANSITION, fleet.ledger.settle_payment, "A1", hospital_id="H001", state=PaymentState.REVERSING)


def test_final_states_stay_final(db) -> None:
    fleet = make_fleet(db)
    pay(fleet, "MZ0001", 1000, trade_no="A1")
    fleet.ledger.settle_payment("A1", hospital_id="H001", state=PaymentState.FAILED)
    refuse(GatewayCode.BAD_TRANSITION, fleet.ledger.settle_payment, "A1", hospital_id="H001", state=PaymentState.SUCCEEDED)
    # The same report again is harmless (a query and a notification may both say it).
    assert fleet.ledger.settle_payment("A1", hospital_id="H001", state=PaymentState.FAILED).state is PaymentState.FAILED


def test_a_settlement_that_finds_its_state_already_reached_keeps_the_first_and_still_runs_its_statements(db) -> None:
    """Alipay's notification often lands between the channel's reply and the gateway's own batched
    settlement of it: the batch is then a repeat. It keeps what the first settlement wrote and still
    runs the caller's statements (the POS's stored reply), in the same one transaction."""
    fleet = make_fleet(db)
    pay(fleet, "MZ0001", 1000, trade_no="A1", channel=PayChannel.ALIPAY)
    first = fleet.ledger.settle_payment("A1", hospital_id="H001", state=PaymentState.SUCCEEDED, channel_txn_id="2026A1",
                                        result_code="TRADE_SUCCESS")
    with db.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS probe (n INTEGER)")
    payment, (probe,) = fleet.ledger.settle_payment_with("A1", hospital_id="H001", state=PaymentState.SUCCEEDED, channel_txn_id="2026A1",
                                                         result_code="SUCCESS", after=[("INSERT INTO probe (n) VALUES (?)", (1,))])
    assert probe.rowcount == 1
    assert (payment.state, payment.channel_txn_id, payment.result_code) == (PaymentState.SUCCEEDED, "2026A1", "TRADE_SUCCESS")
    assert fleet.ledger.payment("A1", hospital_id="H001") == first
    # A contradiction is not a repeat: nothing of the batch stays, and the checked path says why.
    pay(fleet, "MZ0002", 1000, trade_no="A2", channel=PayChannel.ALIPAY)
    fleet.ledger.settle_payment("A2", hospital_id="H001", state=PaymentState.FAILED)
    with pytest.raises(Unbatched):
        fleet.ledger.settle_payment_with("A2", hospital_id="H001", state=PaymentState.SUCCEEDED, channel_txn_id="2026A2",
                                         after=[("INSERT INTO probe (n) VALUES (?)", (2,))])
    with db.reads() as tx:
        assert tx.all("SELECT n FROM probe ORDER BY n") == [(1,)]
    refuse(GatewayCode.BAD_TRANSITION, fleet.ledger.settle_payment, "A2", hospital_id="H001", state=PaymentState.SUCCEEDED)


# --- limits ---------------------------------------------------------------------------------------


def test_the_per_payment_limit_is_the_hospitals_setting(db) -> None:
    fleet = make_fleet(db, txn_limit_fen=200_00)
    err = refuse(GatewayCode.OVER_TRANSACTION_LIMIT, pay, fleet, "MZ0001", 200_01, trade_no="A1")
    assert "200.00" in err.message
    assert pay(fleet, "MZ0001", 200_00, trade_no="A2").amount_fen == 200_00


def test_daily_limits_count_by_the_shanghai_day(db) -> None:
    clock = Clock(LAST_SECOND)
    fleet = make_fleet(db, clock=clock, terminal_daily_limit_fen=100_00, daily_limit_fen=150_00)
    paid(fleet, "MZ0001", 60_00, trade_no="A1")
    pay(fleet, "MZ0002", 40_00, trade_no="A2")  # under way counts too
    refuse(GatewayCode.OVER_TERMINAL_DAILY_LIMIT, pay, fleet, "MZ0003", 1, trade_no="A3")
    paid(fleet, "MZ0004", 50_00, trade_no="B1", terminal="T0002", device="H001-POS2")
    refuse(GatewayCode.OVER_HOSPITAL_DAILY_LIMIT, pay, fleet, "MZ0005", 1, trade_no="B2", terminal="T0002", device="H001-POS2")
    # A declined attempt gives its share back.
    fleet.ledger.settle_payment("A2", hospital_id="H001", state=PaymentState.FAILED)
    assert pay(fleet, "MZ0003", 1, trade_no="A4").local_day == "2026-12-01"
    # Midnight in Shanghai (16:00 UTC): a new day, fresh limits.
    clock.now = LAST_SECOND + 1
    assert business_day(clock.now) == "2026-12-02"
    assert datetime.datetime.fromtimestamp(clock.now, datetime.timezone.utc).hour == 16
    assert pay(fleet, "MZ0006", 100_00, trade_no="A5").local_day == "2026-12-02"


def test_amounts_and_numbers_are_checked(db) -> None:
    fleet = make_fleet(db)
    refuse(GatewayCode.BAD_INPUT, pay, fleet, "MZ0001", 0, trade_no="A1")
    refuse(GatewayCode.BAD_INPUT, pay, fleet, "MZ0001", 12.5, trade_no="A1")
    refuse(GatewayCode.BAD_INPUT, pay, fleet, "MZ0001", 100, trade_no="A" * 33)
    pay(fleet, "MZ0001", 100, trade_no="A1")
    fleet.ledger.settle_payment("A1", hospital_id="H001", state=PaymentState.FAILED)
    err = refuse(GatewayCode.BAD_INPUT, pay, fleet, "MZ0001", 100, trade_no="A1")
    assert "used before" in err.message
