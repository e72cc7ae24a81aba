"""Issue 14, finding 1: clock steps of 300 s or more, on the POS or on the cashier PC, while the link
is up, never lose a result, and a stale offset never refuses instructions until the next link-up.

The POS's clock is stepped with the simulator's clock fault (its wall clock; its monotonic clock
runs on, as on a real device), the PC's by stepping the bridge's wall clock (SteppedClock). Each
step strikes in the middle of a payment, after the instruction reached the POS.
"""

from __future__ import annotations

import dataclasses

import pytest

from bridge import hisclient
from firmware_sim.device import LinkKind
from firmware_sim.faults import parse_fault
from protocol.messages import PayStatus
from tests.e2e.test_faults_e2e import assert_money_agrees
from tests.e2e.world import Rig, SimWorld, new_order, wait_until


def step_pos(rig: Rig, seconds: float) -> None:
    rig.device.inject(parse_fault({"fault": "clock_skew", "seconds": seconds}))


@pytest.mark.parametrize("side, seconds", [("pos", 3600), ("pos", -3600), ("pos", 400), ("pc", 3600), ("pc", -3600), ("pc", -400)],
                         ids=lambda v: str(v))
def test_a_clock_step_during_a_payment_loses_no_result(world: SimWorld, side: str, seconds: int) -> None:
    rig = world.rig(LinkKind.TCP)
    code = rig.issue("WECHAT")
    pending = rig.pay(new_order(), "+7.00", wait_s=5)
    rig.screen_is("awaiting_scan")
    if side == "pos":
        step_pos(rig, seconds)
    else:
        world.pc_clock.offset_s = seconds
    rig.device.scan(code)
    wait_until(lambda: rig.device.history() and rig.device.history()[0].delivered, what="the bridge to take the result")
    health = rig.bridge.health()
    if side == "pc" and seconds < -300:
        # Stamped with the bridge's clock as the POS last heard it, the result is now in this PC's
        # future: the bridge holds it (not dropped, though the frame was ACKed), says so, waits.
        held = health["journal"]["held_results"]
        assert held["count"] == 1 and held["oldest"][0]["code"] == "clock_skew" and health["status"] == "degraded"
        assert rig.bridge_result_count(pending.msg_id) == 0
        world.pc_clock.offset_s = 0  # IT sets the clock right: the held result goes through by itself
    outcome = pending.outcome(timeout=30)
    if outcome.result is None:  # the long poll ended first (the PC case): HIS asks again, as it does
        wait_until(lambda: rig.bridge_result_count(pending.msg_id), what="the held result to be accepted")
        outcome = hisclient.query(rig.client, pending.msg_id, wait_s=5)
    result = outcome.result
    assert result is not None and result.pay_status is PayStatus.SUCCESS
    assert_money_agrees(rig, code, result, 7_00)
    assert rig.bridge.health()["journal"]["held_results"]["count"] == 0


def test_a_stale_offset_does_not_refuse_instructions_after_the_clock_is_put_right(world: SimWorld) -> None:
    rig = world.rig(LinkKind.TCP)
    step_pos(rig, 2 * 86400)  # two days ahead: beyond the POS's own instruction window
    rig.device.inject(parse_fault({"fault": "unplug"}))
    rig.device.inject(parse_fault({"fault": "replug"}))  # the offset is measured at this link-up
    assert rig.device.wait_link_up(10)
    refused = rig.pay(new_order(), "+1.00").result()
    assert (refused.pay_status, refused.error_code) == (PayStatus.FAILED, "clock_skew")
    step_pos(rig, 0)  # network time puts the POS right; the link stays up
    code = rig.issue("WECHAT")
    retry = rig.pay(new_order(), "+2.00")
    rig.screen_is("awaiting_scan")  # not refused with the offset of the last link-up
    rig.device.scan(code)
    assert retry.result().pay_status is PayStatus.SUCCESS


def test_a_held_result_survives_a_bridge_restart_and_is_accepted_once_the_clock_is_right(world: SimWorld) -> None:
    rig = world.rig(LinkKind.TCP)
    code = rig.issue("ALIPAY")
    pending = rig.pay(new_order(), "+5.00", wait_s=2)
    rig.screen_is("awaiting_scan")
    world.pc_clock.offset_s = -3600
    rig.device.scan(code)
    wait_until(lambda: rig.bridge.health()["journal"]["held_results"]["count"] == 1, what="the result to be held")
    wait_until(lambda: rig.device.history()[0].delivered, what="the POS to see its frame acknowledged")
    rig.bridge.stop(grace_s=0.5)  # the frame was ACKed: only the bridge's journal has the result now
    world.pc_clock.offset_s = 0
    rig.bridge = world.start_bridge(rig.device)
    rig.client = dataclasses.replace(rig.client, bridge_url=rig.bridge.url)
    outcome = hisclient.query(rig.client, pending.msg_id, wait_s=20)
    assert outcome.result is not None and outcome.result.pay_status is PayStatus.SUCCESS
    assert_money_agrees(rig, code, outcome.result, 5_00)
