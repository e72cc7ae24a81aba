"""The whole chain for each way a hospital takes WeChat Pay (issue 13 "Done when"): the POS's terminal
service collects and refunds through the gateway, which speaks v2 or APIv3, as the hospital's own
merchant or for its sub-merchant under the provider's keys, to the channel sandbox process; the
refund is also settled in the gateway's ledger by the sandbox's refund notification.

Real parts: the terminal service with the clients `terminal.factory` builds (device-signed requests),
the demo gateway onboarded as `make run WECHAT=...` does (firmware_sim.demo_gateway), SQLite."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from firmware_sim.demo_gateway import WECHAT_SETUPS, DemoGateway
from protocol.keyfile import format_keyfile
from protocol.messages import PayChannel, PayStatus
from protocol.registry import DeviceRecord
from protocol.signing import public_key
from terminal.config import GatewaySettings
from terminal.factory import gateway_clients
from terminal.service import PinStatus, ScanStatus
from tests.terminal.helpers import DEVICE_ID, DEVICE_SEED, KEY, PIN, Bridge, His, make_config, open_service
from tests.waiting import wait_until


# Both API versions and both modes, in two runs (tests/gateway/test_notifications.py runs all four at the gateway).
@pytest.mark.parametrize("setup", ["v2", "v3-provider"])
def test_collect_and_refund_through_the_gateway(tmp_path, sandbox, setup) -> None:
    config = make_config()
    gateway = DemoGateway(tmp_path / "gateway")
    gateway.onboard(Path(sandbox.credentials_path), format_keyfile([KEY]), wechat=setup)
    gateway.onboard(Path(sandbox.credentials_path), format_keyfile([KEY]), wechat=setup)  # re-running `make run` changes nothing
    gateway.enroll(DeviceRecord(DEVICE_ID, "HIS-POS-1", "SN000123", public_key(DEVICE_SEED)), config.terminals)
    url = gateway.serve_in_thread({"read_timeout_s": 2.0, "query_interval_s": 0.2})
    config = dataclasses.replace(config, gateway=GatewaySettings(url))
    clients = gateway_clients(config, device_key_seed=DEVICE_SEED, firmware="test", state_dir=tmp_path)
    service = open_service(tmp_path / "journal.db", config, clients)
    bridge, his = Bridge(service), His()
    try:
        order_no = "MZ" + uuid.uuid4().hex[:12]
        collect = his.envelope(order_no, "+12.50")
        service.submit_instruction(collect)
        code = str(sandbox.issue_code(PayChannel.WECHAT.value)["code"])
        assert service.scan(code).status is ScanStatus.ACCEPTED
        paid = bridge.result(collect.msg_id)
        assert paid.pay_status is PayStatus.SUCCESS and paid.pay_order_no
        refund = his.envelope(order_no, "-5.00")
        service.submit_instruction(refund)
        assert service.confirm_refund(PIN).status is PinStatus.ACCEPTED
        assert bridge.result(refund.msg_id).pay_status is PayStatus.REFUNDED
        assert int(sandbox.account(code)["balance_fen"]) == 100_00 - 1250 + 500
        with gateway.db.transaction(write=False) as tx:
            assert tx.all("SELECT amount_fen, state FROM refunds") == [(500, "succeeded")]
        delivered = wait_until(lambda: [d for d in sandbox.control("GET", "/wechat/notifications")["notifications"]
                                        if d["url"].startswith(url) and d["delivered"]], what="the refund notification")
        assert delivered[0]["kind"] == WECHAT_SETUPS[setup][0]
        mode = gateway.tenancy.hospital(gateway.hospital_id).mode.value
        assert mode == ("service_provider" if setup.endswith("provider") else "direct")
    finally:
        service.close()
        gateway.close()
