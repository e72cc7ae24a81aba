"""The whole chain for each way the demo hospital takes Alipay (`make run ALIPAY=...`): the POS's terminal
service collects and refunds through the gateway, which calls the channel sandbox process as the
hospital's own app in certificate mode, or as our third-party application with the app_auth_token the
demo obtained from an app_auth_code (gateway.alipay_authorizations); the money lands on the hospital's
merchant. (public-key, the default, runs in every other end-to-end test.)

Real parts: the terminal service with the clients `terminal.factory` builds (device-signed requests),
the demo gateway onboarded as `make run` does (firmware_sim.demo_gateway), SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.demo_gateway import DemoGateway, resolve_setups
from gateway.alipay_authorizations import AlipayAuthorizations
from gateway.channel_clients import ChannelFactory
from protocol.keyfile import format_keyfile
from protocol.messages import PayChannel
from tests.terminal.helpers import KEY, collect_and_refund_through_gateway


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
    gateway = DemoGateway(tmp_path / "gateway")
    gateway.onboard(Path(sandbox.credentials_path), format_keyfile([KEY]), alipay=setup)
    first = gateway.tenancy.merchant_key(gateway.hospital_id, PayChannel.ALIPAY)
    gateway.onboard(Path(sandbox.credentials_path), format_keyfile([KEY]), alipay=setup)  # re-running `make run` changes nothing
    assert gateway.tenancy.merchant_key(gateway.hospital_id, PayChannel.ALIPAY).version == first.version
    try:
        collect_and_refund_through_gateway(tmp_path, sandbox, gateway, PayChannel.ALIPAY)
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
        gateway.close()
