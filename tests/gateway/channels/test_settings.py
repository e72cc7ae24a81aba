"""build_clients: the device configuration's "channels" section, and the mistakes it refuses."""

from __future__ import annotations

import json
import shutil

import pytest

from protocol.messages import PayChannel
from gateway.channels import build_clients, settings_from_sandbox
from gateway.channels.alipay import AlipayClient
from gateway.channels.errors import ChannelConfigError
from gateway.channels.wechat import WeChatPayClient


def test_builds_both_clients_with_relative_key_paths(sandbox, tmp_path):
    settings = settings_from_sandbox(sandbox.credentials_path)
    for name in ("private_key_pem", "alipay_public_key_pem"):
        target = tmp_path / f"{name}.pem"
        shutil.copy(settings["alipay"][name], target)
        settings["alipay"][name] = target.name
    (tmp_path / "device.json").write_text(json.dumps({"channels": settings}))
    clients = build_clients(settings, base_dir=str(tmp_path))
    assert isinstance(clients[PayChannel.WECHAT], WeChatPayClient) and isinstance(clients[PayChannel.ALIPAY], AlipayClient)
    assert clients[PayChannel.WECHAT].query_interval_s == 5.0 and clients[PayChannel.WECHAT].pay_deadline_s == 30.0


def test_one_channel_is_enough_and_overrides_apply(sandbox):
    settings = settings_from_sandbox(sandbox.credentials_path, wechat={"query_interval_s": 1.5})
    del settings["alipay"]
    clients = build_clients(settings)
    assert list(clients) == [PayChannel.WECHAT] and clients[PayChannel.WECHAT].query_interval_s == 1.5


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s["wechat"].update(api_kye="x"), "unknown field.*api_kye"),
    (lambda s: s.update(unionpay={}), "unknown channel"),
    (lambda s: s["wechat"].pop("mch_id"), "mch_id"),
    (lambda s: s["wechat"].update(base_url="ftp://x"), "http"),
    (lambda s: s["wechat"].update(read_timeout_s=0), "positive"),
    (lambda s: s["wechat"].update(cert_path="cert.pem"), "go together"),
    (lambda s: s["alipay"].update(private_key_pem="/nonexistent/key.pem"), "cannot read the app private key"),
    (lambda s: s["alipay"].update(private_key_pem=s["alipay"]["alipay_public_key_pem"]), "public key"),
    (lambda s: s.clear(), "at least one"),
])
def test_refuses_settings_that_cannot_work(sandbox, mutate, message):
    settings = settings_from_sandbox(sandbox.credentials_path)
    mutate(settings)
    with pytest.raises(ChannelConfigError, match=message):
        build_clients(settings)


def test_the_api_key_never_shows_in_the_config_repr(sandbox):
    client = build_clients(settings_from_sandbox(sandbox.credentials_path))[PayChannel.WECHAT]
    assert client.config.api_key not in repr(client.config)
