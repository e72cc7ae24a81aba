"""Faults on the full path: a pulled cable, a bad cable, a power cut, a wrong clock.

Whatever happens, HIS gets exactly one verified result per instruction and it agrees with the money
at the sandbox: SUCCESS means the patient paid once, anything else means nothing was taken.
"""

from __future__ import annotations

import json

import pytest

from bridge import hisclient
from firmware_sim.device import LinkKind, Power
from firmware_sim.faults import parse_fault
from firmware_sim.simerrors import SimCode, SimError
from protocol.messages import PayStatus, Result
from tests.e2e.world import PIN, Rig, SimWorld, new_order, wait_until


def fault(device, **spec):
    return device.inject(parse_fault(spec))


def assert_money_agrees(rig: Rig, code: str, result: Result, amount_fen: int, *, before_fen: int = 100_00) -> None:
    orders = [o for o in rig.orders(code) if o["state"] == "SUCCESS"]
    if result.pay_status is PayStatus.SUCCESS:
        assert rig.balance_fen(code) == before_fen - amount_fen and len(orders) == 1
        assert orders[0]["channel_txn_id"] == result.pay_order_no
    else:
        assert rig.balance_fen(code) == before_fen and not orders


@pytest.mark.parametrize("link", [LinkKind.PTY, LinkKind.USB, LinkKind.AOA], ids=lambda k: k.value)
def test_unplugged_mid_payment_the_result_arrives_after_replug_exactly_once(world: SimWorld, link: LinkKind) -> None:
    rig = world.rig(link)
    code = rig.issue("WECHAT", behaviour="userpaying:0.8")  # the patient confirms on the phone 0.8 s after the scan
    order = new_order()
    pending = rig.pay(order, "+12.50")
    rig.screen_is("awaiting_scan")
    rig.device.scan(code)
    fault(rig.device, fault="unplug")
    wait_until(lambda: rig.device.history(order_no=order), what="the payment to finish on the device", timeout=60)
    (entry,) = rig.device.history(order_no=order)
    assert entry.pay_status is PayStatus.SUCCESS and not entry.delivered  # finished, but the cable is out
    assert rig.bridge_result_count(pending.msg_id) == 0
    fault(rig.device, fault="replug")
    result = pending.result()
    assert result.pay_status is PayStatus.SUCCESS and str(result.amount) == "+12.50"
    assert_money_agrees(rig, code, result, 12_50)
    wait_until(lambda: rig.device.history(order_no=order)[0].delivered, what="the bridge's ACK")
    stored = [e for e in world_log(rig) if e.get("event") == "result_stored" and e.get("msg_id") == pending.msg_id]
    assert len(stored) == 1


def world_log(rig: Rig) -> list[dict[str, object]]:
    path = rig.world.root / "bridge" / "bridge.log"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_a_bad_cable_still_gives_exactly_one_result(world: SimWorld) -> None:
    rig = world.rig(LinkKind.TCP)
    code = rig.issue("ALIPAY")
    order = new_order()
    fault(rig.device, fault="corrupt", direction="both", probability=0.001, seed=11)  # noise all along
    fault(rig.device, fault="corrupt", direction="to_device", next_bytes=8)  # the instruction (or a ping) is hit
    fault(rig.device, fault="drop", direction="to_bridge", next_bytes=5)  # and an answer loses bytes
    pending = rig.pay(order, "+12.50")
    rig.screen_is("awaiting_scan", timeout=30)
    fault(rig.device, fault="duplicate", direction="to_bridge", next_bytes=50)
    rig.device.scan(code)
    result = pending.result(timeout=60)
    fault(rig.device, fault="drop", direction="to_device", next_bytes=30)
    refund = rig.pay(order, "-2.50")
    rig.screen_is("awaiting_supervisor", timeout=30)
    rig.device.confirm_refund(PIN)
    refunded = refund.result(timeout=60)
    assert (result.pay_status, refunded.pay_status) == (PayStatus.SUCCESS, PayStatus.REFUNDED)
    assert rig.balance_fen(code) == 100_00 - 12_50 + 2_50 and len(rig.orders(code)) == 1
    faults = rig.device.status()["faults"]
    to_bridge, to_device = faults["to_bridge"]["stats"], faults["to_device"]["stats"]
    assert to_device["corrupted"] >= 8 and to_bridge["dropped"] >= 5 and to_bridge["duplicated"] >= 50
    assert to_device["dropped"] >= 30
    assert rig.bridge_result_count(pending.msg_id) == 1 and rig.bridge_result_count(refund.msg_id) == 1
    stored = [e for e in world_log(rig) if e.get("event") == "result_stored"]
    assert sorted(str(e["msg_id"]) for e in stored) == sorted([pending.msg_id, refund.msg_id])


@pytest.mark.parametrize("at, phase", [("paying", "after"), ("finished", "before"), ("refunding", "after")])
def test_power_cut_at_a_journal_state_then_power_on(world: SimWorld, at: str, phase: str) -> None:
    rig = world.rig(LinkKind.TCP)
    code = rig.issue("WECHAT")
    order = new_order()
    refunding = at == "refunding"
    if refunding:  # a clean collection first; the cut hits the refund
        first = rig.pay(order, "+12.50")
        rig.screen_is("awaiting_scan")
        rig.device.scan(code)
        assert first.result().pay_status is PayStatus.SUCCESS
    fault(rig.device, fault="power_cut", at=at, phase=phase)
    pending = rig.pay(order, "-4.00" if refunding else "+12.50")
    rig.screen_is("awaiting_supervisor" if refunding else "awaiting_scan")
    try:
        rig.device.confirm_refund(PIN) if refunding else rig.device.scan(code)
    except SimError as exc:  # the cut hit the cashier's own action: the screen went dark under the finger
        assert exc.code is SimCode.POWERED_OFF
    wait_until(lambda: rig.device.power is Power.OFF, what="the power cut")
    assert rig.device.status()["faults"]["last_power_cut"]["why"].startswith("at the journal commit")
    with pytest.raises(SimError) as dark:
        rig.device.screen()
    assert dark.value.code is SimCode.POWERED_OFF
    assert rig.bridge_result_count(pending.msg_id) == 0
    fault(rig.device, fault="power_on")  # recovery runs from the journal
    result = pending.result()
    if refunding:
        assert result.pay_status is PayStatus.REFUNDED and str(result.amount) == "-4.00"
        assert rig.balance_fen(code) == 100_00 - 12_50 + 4_00
    else:
        assert_money_agrees(rig, code, result, 12_50)
        if at == "finished":  # the channel took the money before the cut: recovery must find it
            assert result.pay_status is PayStatus.SUCCESS
    assert rig.device.status()["boot"]["slot"] == "a"


def test_power_cut_while_an_instruction_arrives_comes_back_by_itself(world: SimWorld) -> None:
    rig = world.rig(LinkKind.PTY)
    code = rig.issue("WECHAT")
    order = new_order()
    # The instruction frame is ~400 bytes: the power goes while it is on the wire, before the device
    # journals it (so it never ACKs it); the device comes back 0.3 s later and the bridge sends it again.
    fault(rig.device, fault="power_cut", after_bytes=100, direction="to_device", off_for_s=0.3)
    pending = rig.pay(order, "+12.50")
    wait_until(lambda: rig.device.status()["faults"]["last_power_cut"], what="the power cut")
    rig.screen_is("awaiting_scan")
    rig.device.scan(code)
    result = pending.result()
    assert result.pay_status is PayStatus.SUCCESS
    assert_money_agrees(rig, code, result, 12_50)
    cut = rig.device.status()["faults"]["last_power_cut"]
    assert "after 100 bytes on the link (to_device)" in cut["why"]
    assert rig.device.power is Power.ON and rig.bridge_result_count(pending.msg_id) == 1


def test_a_device_clock_beyond_its_window_refuses_instructions(world: SimWorld) -> None:
    rig = world.rig(LinkKind.TCP)
    fault(rig.device, fault="clock_skew", seconds=2 * 86400)  # the window is the msg_id memory: 24 h
    pending = rig.pay(new_order(), "+12.50")
    refused = pending.result()  # 1.1 A: a refusal by the POS is a result signed by it, verified by his-client
    assert (refused.pay_status, refused.error_code) == (PayStatus.FAILED, "clock_skew")
    assert "synchronise the clocks" in str(refused.error_message) or "set the POS clock" in str(refused.error_message)
    assert rig.device.screen().screen.value == "idle"  # nothing was shown, nothing can be charged
    fault(rig.device, fault="clock_skew", seconds=0)
    code = rig.issue("WECHAT")
    retry = rig.pay(new_order(), "+1.00")
    rig.screen_is("awaiting_scan")
    rig.device.scan(code)
    assert retry.result().pay_status is PayStatus.SUCCESS


def test_a_device_clock_ten_minutes_ahead_still_delivers_the_result(world: SimWorld) -> None:
    rig = world.rig(LinkKind.TCP)
    fault(rig.device, fault="clock_skew", seconds=600)
    rig.device.inject(parse_fault({"fault": "unplug"}))
    rig.device.inject(parse_fault({"fault": "replug"}))  # a new link: the device compares clocks at link up
    assert rig.device.wait_link_up(10)
    code = rig.issue("WECHAT")
    pending = rig.pay(new_order(), "+3.00", wait_s=3)
    rig.screen_is("awaiting_scan")
    rig.device.scan(code)
    assert abs(rig.device.status()["link"]["bridge_clock_offset_s"] - 600) < 5
    assert pending.result(timeout=20).pay_status is PayStatus.SUCCESS
