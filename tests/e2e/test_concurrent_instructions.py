"""Issue 14, finding 9: a WeChat refund settles through a query 5 s after WeChat accepted it; the
next patient must not wait for that. The screen still shows one instruction at a time."""

from __future__ import annotations

from firmware_sim.device import LinkKind
from protocol.messages import PayStatus
from tests.e2e.world import FAST_POLLING, PIN, SimWorld, new_order, wait_until


def test_a_wechat_refund_waiting_for_its_query_does_not_hold_the_next_patient(world: SimWorld) -> None:
    world.polling = {"WECHAT": {"query_interval_s": 5.0, "pay_deadline_s": 3.0}, "ALIPAY": dict(FAST_POLLING)}
    rig = world.rig(LinkKind.TCP)
    code = rig.issue("WECHAT")
    order = new_order()
    first = rig.pay(order, "+10.00")
    rig.screen_is("awaiting_scan")
    rig.device.scan(code)
    assert first.result().pay_status is PayStatus.SUCCESS
    refund = rig.pay(order, "-4.00", wait_s=40)
    rig.screen_is("awaiting_supervisor")
    rig.device.confirm_refund(PIN)  # WeChat accepts it; its query comes 5 s later
    after = new_order()
    following = rig.pay(after, "+2.00", wait_s=40)
    wait_until(lambda: rig.device.screen().order_no == after, timeout=15, what="the next patient on the screen")
    assert rig.device.screen().screen.value == "awaiting_scan"
    assert rig.bridge_result_count(refund.msg_id) == 0  # the refund is still waiting for its query
    rig.device.scan(rig.issue("ALIPAY"))
    assert following.result().pay_status is PayStatus.SUCCESS
    refunded = refund.result()
    assert refunded.pay_status is PayStatus.REFUNDED and str(refunded.amount) == "-4.00"
    assert rig.balance_fen(code) == 100_00 - 10_00 + 4_00
