"""Issue 17 end to end: HIS -> bridge -> POS -> gateway -> sandbox, where the channel's replies cannot
be verified. The POS neither loops nor ends the payment: HIS's 202 carries `last_event`
`needs_person` while the money sits at the channel; a person's recheck then settles it."""

from __future__ import annotations

import requests

from firmware_sim.device import LinkKind
from protocol.messages import PayStatus
from tests.e2e.world import SimWorld, new_order, wait_until


def test_his_sees_needs_person_while_the_channel_replies_cannot_be_verified(world: SimWorld) -> None:
    rig = world.rig(LinkKind.TCP, control=True)
    assert rig.control is not None  # asked for with control=True
    api = rig.control.url
    code = rig.issue("ALIPAY", "100.00")
    pending = rig.pay(new_order(), "+12.50", wait_s=60)
    rig.screen_is("awaiting_scan")
    world.sandbox.control("POST", "/faults", {"channel": "ALIPAY", "reply_signature": "tamper"})
    try:
        assert requests.post(api + "/v1/scan", json={"code": code}, timeout=10).status_code == 200
        screen = wait_until(lambda: (s := requests.get(api + "/v1/screen", timeout=10).json())["needs_person"] and s,
                            20, "the POS hands the payment to a person")
        assert "需人工处理" in screen["message"]["zh"]

        def told() -> dict | None:
            body = requests.get(f"{rig.client.bridge_url}/v1/results/{pending.msg_id}", timeout=10).json()
            return body if (body.get("last_event") or {}).get("code") == "needs_person" else None
        body = wait_until(told, 20, "HIS's last_event needs_person")
        assert body is not None and body["state"] == "paying" and "unverified_reply" in body["last_event"]["message"]
        assert rig.balance_fen(code) == 100_00 - 12_50  # the channel took it: "failed" would have been a lie
    finally:
        world.sandbox.control("POST", "/faults", {"channel": "ALL", "reply_signature": "ok"})
    assert requests.post(api + "/v1/recheck", timeout=10).status_code == 200
    result = pending.result(60)
    assert result.pay_status is PayStatus.SUCCESS and str(result.amount) == "+12.50"
