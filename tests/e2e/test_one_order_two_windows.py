"""Issue 13's finding, end to end: the same order sent to two windows of one hospital was charged twice
(each POS enforced "one order, one payment" only in its own journal, and two cashier PCs cannot see each
other). Now the gateway holds the rule for the hospital: whichever window reaches it first collects,
the other is refused before its channel is called, and HIS hears it as `duplicate_order`.

Real processes and wires as a hospital has them: two POS (T0001, T0002), each on its own cashier PC's
bridge, one gateway, the channel sandbox; HIS posts the instruction to both bridges at once and a patient
scans a code at each window.
"""

from __future__ import annotations

import sqlite3
import threading

from firmware_sim.device import LinkKind
from protocol.messages import PayStatus, ResultCode
from protocol.registry import TerminalRecord
from tests.e2e.world import SimWorld, new_order

HOSPITAL = "H-TWO-WINDOWS"
WINDOW_1 = TerminalRecord("T0001", "门诊收费1号窗口")
WINDOW_2 = TerminalRecord("T0002", "门诊收费2号窗口")


def test_the_same_order_at_two_windows_on_two_bridges_is_charged_once(world: SimWorld) -> None:
    windows = [world.rig(LinkKind.TCP, terminal=WINDOW_1, hospital=HOSPITAL, bridge_name="pc-1"),
               world.rig(LinkKind.TCP, terminal=WINDOW_2, hospital=HOSPITAL, bridge_name="pc-2")]
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
