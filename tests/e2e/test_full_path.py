"""HIS -> bridge -> device -> sandbox -> result, over each wire a POS can hang on: pty, TCP, USB and an Android POS (aoa).

The device is provisioned and configured by flashing a signed image over its own link; HIS is the
reference client (bridge.hisclient); the cashier's hands are the control API over HTTP. A collection
of +12.50 and a partial refund of -5.00 (the supervisor's PIN), then the money at the sandbox.
"""

from __future__ import annotations

import pytest
import requests

from bridge import hisclient
from firmware_sim.device import LinkKind
from protocol.messages import PayChannel, PayStatus
from tests.e2e.world import PIN, SimWorld, new_order


@pytest.mark.parametrize("link", [LinkKind.PTY, LinkKind.TCP, LinkKind.USB, LinkKind.AOA], ids=lambda k: k.value)
def test_collect_and_partial_refund(world: SimWorld, link: LinkKind) -> None:
    rig = world.rig(link, control=True)
    api = rig.control.url  # type: ignore[union-attr]  # the rig was made with control=True, so it has a control server
    channel = "ALIPAY" if link in (LinkKind.USB, LinkKind.AOA) else "WECHAT"
    code = rig.issue(channel, "100.00")
    order = new_order()

    pending = rig.pay(order, "+12.50")
    rig.screen_is("awaiting_scan")
    screen = requests.get(api + "/v1/screen", timeout=10).json()
    assert (screen["amount"], screen["order_no"], screen["can_scan"]) == ("+12.50", order, True)
    scanned = requests.post(api + "/v1/scan", json={"code": code}, timeout=10)
    assert scanned.status_code == 200 and scanned.json()["channel"] == channel
    paid = pending.result()
    assert paid.pay_status is PayStatus.SUCCESS and paid.pay_channel is PayChannel(channel)
    assert str(paid.amount) == "+12.50" and paid.device_id == rig.device.identity.device_id and paid.pay_order_no
    assert rig.balance_fen(code) == 100_00 - 12_50

    refund = rig.pay(order, "-5.00")
    rig.screen_is("awaiting_supervisor")
    assert requests.get(api + "/v1/screen", timeout=10).json()["amount"] == "-5.00"
    confirmed = requests.post(api + "/v1/refund/confirm", json={"pin": PIN}, timeout=10)
    assert confirmed.status_code == 200, confirmed.text
    refunded = refund.result()
    assert refunded.pay_status is PayStatus.REFUNDED and str(refunded.amount) == "-5.00"
    assert rig.balance_fen(code) == 100_00 - 12_50 + 5_00
    (only,) = rig.orders(code)
    assert only["state"] == "SUCCESS" and only["refunded_fen"] == 5_00

    history = requests.get(api + "/v1/history", params={"order_no": order}, timeout=10).json()["entries"]
    assert [(e["amount"], e["pay_status"], e["delivered"]) for e in history] == [("-5.00", "REFUNDED", True),
                                                                                 ("+12.50", "SUCCESS", True)]


def test_a_retry_of_the_same_envelope_never_charges_twice(world: SimWorld) -> None:
    rig = world.rig(LinkKind.TCP)
    code = rig.issue("WECHAT", "50.00")
    order = new_order()
    first = rig.pay(order, "+20.00")
    rig.screen_is("awaiting_scan")
    rig.device.scan(code)
    result = first.result()
    again = rig.pay(order, "+20.00", msg_id=first.msg_id)  # a new envelope under the same msg_id: refused
    with pytest.raises(hisclient.ClientError) as refused:
        again.outcome()
    assert refused.value.code == "msg_id_conflict"
    second = rig.pay(order, "+20.00")  # a new msg_id for an order already paid: the original result, nothing charged
    duplicate = second.result()
    assert duplicate.error_code == "duplicate_order" and duplicate.pay_order_no == result.pay_order_no
    assert rig.balance_fen(code) == 30_00 and len(rig.orders(code)) == 1
