"""The whole chain for each way a hospital takes WeChat Pay (issue 13 "Done when"): the POS's terminal
service collects and refunds through the gateway, which speaks v2 or APIv3, as the hospital's own
merchant or for its sub-merchant under the provider's keys, to the channel sandbox process; the
refund is also settled in the gateway's ledger by the sandbox's refund notification.

Real parts: the terminal service with the clients `terminal.factory` builds (device-signed requests),
the demo gateway onboarded as `make run WECHAT=...` does (firmware_sim.demo_gateway), SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.demo_gateway import WECHAT_SETUPS, DemoGateway
from protocol.keyfile import format_keyfile
from protocol.messages import PayChannel
from tests.terminal.helpers import KEY, collect_and_refund_through_gateway
from tests.waiting import wait_until


# Both API versions and both modes, in two runs (tests/gateway/test_notifications.py runs all four at the gateway).
@pytest.mark.parametrize("setup", ["v2", "v3-provider"])
def test_collect_and_refund_through_the_gateway(tmp_path, sandbox, setup) -> None:
    gateway = DemoGateway(tmp_path / "gateway")
    gateway.onboard(Path(sandbox.credentials_path), format_keyfile([KEY]), wechat=setup)
    gateway.onboard(Path(sandbox.credentials_path), format_keyfile([KEY]), wechat=setup)  # re-running `make run` changes nothing
    try:
        _, url = collect_and_refund_through_gateway(tmp_path, sandbox, gateway, PayChannel.WECHAT)
        with gateway.db.transaction(write=False) as tx:
            assert tx.all("SELECT amount_fen, state FROM refunds") == [(500, "succeeded")]
        delivered = wait_until(lambda: [d for d in sandbox.control("GET", "/wechat/notifications")["notifications"]
                                        if d["url"].startswith(url) and d["delivered"]], what="the refund notification")
        assert delivered[0]["kind"] == WECHAT_SETUPS[setup][0]
        mode = gateway.tenancy.hospital(gateway.hospital_id).mode.value
        assert mode == ("service_provider" if setup.endswith("provider") else "direct")
    finally:
        gateway.close()
