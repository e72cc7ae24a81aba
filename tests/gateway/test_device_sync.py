"""Issue 14: the gateway keeps each POS's journal high-water mark and gives a POS its orders back.

A POS whose whole storage was rolled back (an old copy put back, its own mark file with it) reports a
lower mark than the gateway holds and hears the higher one back; the orders list is what the POS
re-syncs its collections and refunds from. Real HTTP, signed requests, the real sandbox."""

from __future__ import annotations

from tests.gateway.test_api import gw, order, pay_body, refund_body, sandbox  # noqa: F401 (fixtures)


def test_the_gateway_keeps_the_highest_mark_a_pos_reported_and_gives_it_back(gw) -> None:  # noqa: F811
    pos = gw.pos()
    assert pos.post("/v1/journal-mark", {"mine": 7}) == (200, {"yours": None, "held": 7})
    assert pos.post("/v1/journal-mark", {"mine": 12}) == (200, {"yours": 7, "held": 12})
    # The same POS after its storage was rolled back: it hears the higher mark; the gateway keeps it.
    assert pos.post("/v1/journal-mark", {"mine": 9}) == (200, {"yours": 12, "held": 12})
    assert pos.post("/v1/journal-mark", {"mine": 9})[1]["yours"] == 12
    # Marks are per device: the other POS starts afresh.
    assert gw.pos(2).post("/v1/journal-mark", {"mine": 3})[1] == {"yours": None, "held": 3}


def test_a_mark_that_is_not_a_whole_number_is_refused_by_name(gw) -> None:  # noqa: F811
    for bad in (-1, "5", 1.5, True):
        status, reply = gw.pos().post("/v1/journal-mark", {"mine": bad})
        assert status == 400 and reply["error"]["code"] == "bad_request" and "mine" in reply["error"]["message"]


def test_the_orders_list_holds_every_collection_of_this_device_with_its_refunds_and_pages(gw) -> None:  # noqa: F811
    pos = gw.pos()
    paid = []
    for fen in (1250, 300, 4200):
        order_no = order()
        status, reply = pos.post("/v1/pay", pay_body(order_no, gw.code(), fen))
        assert (status, reply["state"]) == (200, "success")
        paid.append((order_no, reply["out_trade_no"], fen))
    refund = refund_body(paid[0][0], 250)
    status, reply = pos.post("/v1/refund", refund)
    assert (status, reply["state"]) in ((200, "success"), (200, "processing"))  # a WeChat refund settles by its query
    other = order()
    assert gw.pos(2).post("/v1/pay", pay_body(other, gw.code(), 99, terminal="T0002"))[0] == 200

    status, first = pos.post("/v1/orders", {"limit": 2})
    assert status == 200 and len(first["orders"]) == 2 and first["next"] is not None
    status, rest = pos.post("/v1/orders", {"after": first["next"], "limit": 2})
    assert status == 200 and rest["next"] is None
    orders = first["orders"] + rest["orders"]
    assert [(o["order_no"], o["out_trade_no"], o["amount_fen"], o["state"]) for o in orders] == \
        [(n, t, f, "succeeded") for n, t, f in paid]
    assert all(o["channel"] == "WECHAT" and o["channel_txn_id"] and o["terminal_id"] == "T0001" for o in orders)
    assert [(r["out_refund_no"], r["amount_fen"]) for r in orders[0]["refunds"]] == [(refund["out_refund_no"], 250)]
    assert orders[0]["refunds"][0]["state"] in ("refunding", "succeeded") and orders[1]["refunds"] == []
    assert other not in {o["order_no"] for o in orders}  # another device's orders are not this POS's
