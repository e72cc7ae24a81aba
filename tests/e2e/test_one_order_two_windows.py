"""Issue 13's finding, end to end: the same order sent to two windows of one hospital was charged twice
(each POS enforced "one order, one payment" only in its own journal, and two cashier PCs cannot see each
other). Now the gateway holds the rule for the hospital: whichever window reaches it first collects,
the other is refused before its channel is called, and HIS hears it as `duplicate_order`.

Real wires as a hospital has them: two POS (T0001, T0002) on one cashier PC's bridge, or each on its own,
one gateway, the channel sandbox; HIS posts the instruction to both windows at once and a patient scans a
code at each.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest

from bridge import hisclient
from firmware_sim.device import LinkKind
from protocol.crypto import KeyRing
from protocol.messages import PayStatus, ResultCode
from protocol.registry import TerminalRecord
from tests.e2e.world import Rig, SimWorld, new_order

HOSPITAL = "H-TWO-WINDOWS"
WINDOW_1 = TerminalRecord("T0001", "门诊收费1号窗口")
WINDOW_2 = TerminalRecord("T0002", "门诊收费2号窗口")


def _one_bridge(world: SimWorld) -> list[Rig]:
    """Both POS on one cashier PC's bridge (the finding: charged twice)."""
    devices = [world.configured_device(LinkKind.TCP, terminal=t, hospital=HOSPITAL) for t in (WINDOW_1, WINDOW_2)]
    bridge = world.start_shared_bridge([(device, t) for (device, _), t in zip(devices, (WINDOW_1, WINDOW_2))], "pc")
    rigs = []
    for (device, provisioned), terminal in zip(devices, (WINDOW_1, WINDOW_2)):
        assert device.wait_link_up(15), device.status()
        client = hisclient.ClientConfig(bridge.url, world.key, KeyRing([world.key]), terminal.terminal_id,
                                        {provisioned.device_id: provisioned.public_key}, http_timeout_s=10.0)
        rigs.append(Rig(world, device, bridge, client))
    return rigs


def _two_bridges(world: SimWorld) -> list[Rig]:
    """Each POS on its own cashier PC's bridge: they cannot see each other."""
    return [world.rig(LinkKind.TCP, terminal=WINDOW_1, hospital=HOSPITAL, bridge_name="pc-1"),
            world.rig(LinkKind.TCP, terminal=WINDOW_2, hospital=HOSPITAL, bridge_name="pc-2")]


@pytest.mark.parametrize("setup", [_one_bridge, _two_bridges], ids=["one_bridge", "two_bridges"])
def test_the_same_order_at_two_windows_is_charged_once(world: SimWorld, setup) -> None:
    windows = setup(world)
    codes = [windows[0].issue("WECHAT", "100.00"), windows[1].issue("ALIPAY", "100.00")]
    order = new_order()

    pending = [rig.pay(order, "+12.50") for rig in windows]
    for rig in windows:
        rig.screen_is("awaiting_scan")
    scans = [threading.Thread(target=rig.device.scan, args=(code,)) for rig, code in zip(windows, codes)]
    for scan in scans:  # both patients scan at the same moment
        scan.start()
    for scan in scans:
        scan.join(30)
    results = [p.result() for p in pending]

    collected = [i for i, r in enumerate(results) if r.pay_status is PayStatus.SUCCESS]
    assert len(collected) == 1, [(r.pay_status, r.error_code) for r in results]
    (winner,) = collected
    loser = 1 - winner
    assert results[loser].error_code == ResultCode.DUPLICATE_ORDER.value, results[loser]
    # The money: one patient paid 12.50 once, the other nothing; the channel has one order for it.
    assert windows[winner].balance_fen(codes[winner]) == 100_00 - 12_50
    assert windows[loser].balance_fen(codes[loser]) == 100_00 and windows[loser].orders(codes[loser]) == []
    assert len(windows[winner].orders(codes[winner])) == 1
    # The gateway's ledger: one succeeded collection of the order, from the winning window.
    with sqlite3.connect(world.root / "gateway" / "gateway.db") as db:
        rows = db.execute("SELECT state, terminal_id FROM payments WHERE hospital_id = ? AND order_no = ?", (HOSPITAL, order)).fetchall()
    assert [r for r in rows if r[0] == "succeeded"] == [("succeeded", windows[winner].client.terminal_id)]
