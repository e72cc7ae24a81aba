"""The whole chain for each way the demo hospital takes Alipay (`make run ALIPAY=...`): the POS's terminal
service collects and refunds through the gateway, which calls the channel sandbox process as the
hospital's own app in certificate mode, or as our third-party application with the app_auth_token the
demo obtained from an app_auth_code (gateway.alipay_authorizations); the money lands on the hospital's
merchant. (public-key, the default, runs in every other end-to-end test.)

Real parts: the terminal service with the clients `terminal.factory` builds (device-signed requests),
the demo gateway onboarded as `make run` does (firmware_sim.demo_gateway), SQLite."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from firmware_sim.demo_gateway import DemoGateway, resolve_setups
from gateway.alipay_authorizations import AlipayAuthorizations
from gateway.channel_clients import ChannelFactory
from protocol.keyfile import format_keyfile
from protocol.messages import PayChannel, PayStatus
from protocol.registry import DeviceRecord
from protocol.signing import public_key
from terminal.config import GatewaySettings
from terminal.factory import gateway_clients
from terminal.service import PinStatus, ScanStatus
from tests.terminal.helpers import DEVICE_ID, DEVICE_SEED, KEY, PIN, Bridge, His, make_config, open_service


def test_the_setups_go_together_or_are_refused_saying_why() -> None:
    assert resolve_setups(None, None) == ("v2", "public-key")
    assert resolve_setups(None, "third-party") == ("v2-provider", "third-party")
    assert resolve_setups("v3-provider", None) == ("v3-provider", "third-party")
    assert resolve_setups("v3", "cert") == ("v3", "cert")
    with pytest.raises(ValueError, match="ALIPAY=third-party goes with WECHAT=v2-provider or v3-provider"):
        resolve_setups("v2", "third-party")
    with pytest.raises(ValueError, match="ALIPAY=public-key or cert with WECHAT=v2 or v3"):
        resolve_setups("v2-provider", "cert")
    with pytest.raises(ValueError, match="one of public-key, cert, third-party"):
        resolve_setups(None, "rsa")


@pytest.mark.parametrize("setup", ["cert", "third-party"])
def test_collect_and_refund_through_the_gateway(tmp_path, sandbox, setup) -> None:
    config = make_config()
    gateway = DemoGateway(tmp_path / "gateway")
    gateway.onboard(Path(sandbox.credentials_path), format_keyfile([KEY]), alipay=setup)
    first = gateway.tenancy.merchant_key(gateway.hospital_id, PayChannel.ALIPAY)
    gateway.onboard(Path(sandbox.credentials_path), format_keyfile([KEY]), alipay=setup)  # re-running `make run` changes nothing
    assert gateway.tenancy.merchant_key(gateway.hospital_id, PayChannel.ALIPAY).version == first.version
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
        code = str(sandbox.issue_code(PayChannel.ALIPAY.value)["code"])
        assert service.scan(code).status is ScanStatus.ACCEPTED
        paid = bridge.result(collect.msg_id)
        assert paid.pay_status is PayStatus.SUCCESS and paid.pay_order_no
        refund = his.envelope(order_no, "-5.00")
        service.submit_instruction(refund)
        assert service.confirm_refund(PIN).status is PinStatus.ACCEPTED
        assert bridge.result(refund.msg_id).pay_status is PayStatus.REFUNDED
        assert int(sandbox.account(code)["balance_fen"]) == 100_00 - 1250 + 500
        with gateway.db.transaction(write=False) as tx:
            out_trade_no = str(tx.scalar("SELECT out_trade_no FROM payments"))
        owner = sandbox.control("GET", f"/alipay/trades/{out_trade_no}")
        merchant = first.merchant_id  # the hospital's Alipay merchant: its own app's, or the one that authorised ours
        if setup == "third-party":
            auth = AlipayAuthorizations(gateway.tenancy, ChannelFactory(gateway.tenancy)).get(gateway.hospital_id)
            assert (auth.status, auth.user_id) == ("valid", merchant)
            assert owner["seller_id"] == merchant and owner["app_id"] != merchant
            assert set(first.secrets) == {"app_auth_token", "app_refresh_token"}
        else:
            assert owner["app_id"] == merchant == sandbox.credentials["alipay_modes"]["cert"]["app_id"]
    finally:
        service.close()
        gateway.close()
