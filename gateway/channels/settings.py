"""Build the channel clients from channel settings (a hospital's merchant settings at the gateway,
`reconcile`'s settings file, the sandbox's sandbox.json):

    {"wechat": {"base_url": "https://api.mch.weixin.qq.com", "appid": "wx...", "mch_id": "...",
                "api_key": "...", "cert_path": "apiclient_cert.pem", "key_path": "apiclient_key.pem"},
     "alipay": {"gateway": "https://openapi.alipay.com/gateway.do", "app_id": "...",
                "private_key_pem": "app_private_key.pem", "alipay_public_key_pem": "alipay_public_key.pem"}}

WeChat Pay's section chooses its API with "api_version": "v2" (the default: XML, HMAC-SHA256 with
the API key) or "v3" (JSON, RSA signatures: `wechat_v3.WeChatPayV3Config`'s fields: mchid,
merchant_serial_no, private_key_pem, apiv3_key, platform_public_key_pem + platform_public_key_id or
platform_certificate_pem). Either channel may be absent (a hospital that takes only one). Every other field of the config
dataclasses may be given too (timeouts, query cadence, device_info, store_id...). Unknown fields
are refused by name, so a typo never silently falls back to a default. Key fields take a path
(relative ones are taken relative to `base_dir`) or, as the gateway stores them, the PEM text.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping

from protocol.messages import PayChannel
from gateway.channels.alipay import AlipayClient, AlipayConfig
from terminal.channels.base import ChannelClient
from gateway.channels.errors import ChannelConfigError
from gateway.channels.wechat import WeChatPayClient, WeChatPayConfig
from gateway.channels.wechat_v3 import CertificateStore, WeChatPayV3Client, WeChatPayV3Config

_PATH_FIELDS = {"cert_path", "key_path", "private_key_pem", "alipay_public_key_pem", "app_cert_pem", "alipay_cert_pem", "alipay_root_cert_pem",
                "platform_public_key_pem", "platform_certificate_pem"}


def _config(kind: type, section: str, raw: object, base_dir: str | None) -> Any:
    if not isinstance(raw, Mapping):
        raise ChannelConfigError(f"channels.{section} must be an object")
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ChannelConfigError(f"channels.{section}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = dict(raw)
    for name in _PATH_FIELDS & set(values):
        if isinstance(values[name], str) and base_dir and not os.path.isabs(values[name]):
            values[name] = os.path.join(base_dir, values[name])
    try:
        return kind(**values)
    except TypeError as exc:
        raise ChannelConfigError(f"channels.{section}: {exc}") from None


def build_clients(settings: Mapping[str, object], *, base_dir: str | None = None,
                  wechat_certificates: Callable[[str], CertificateStore] | None = None) -> dict[PayChannel, ChannelClient]:
    """{PayChannel: client} for every channel configured in `settings`. `wechat_certificates(mchid)`:
    where an APIv3 client keeps the platform certificates it downloads (the gateway's database)."""
    if not isinstance(settings, Mapping):
        raise ChannelConfigError("channels must be an object")
    unknown = sorted(set(settings) - {"wechat", "alipay"})
    if unknown:
        raise ChannelConfigError(f"channels: unknown channel(s) {', '.join(unknown)}; known: wechat, alipay")
    clients: dict[PayChannel, ChannelClient] = {}
    if "wechat" in settings:
        wechat = settings["wechat"]
        # WeChat Pay speaks two APIs over one merchant account: v2 (XML, the default) or v3 (JSON, RSA).
        if isinstance(wechat, Mapping) and wechat.get("api_version", "v2") == "v3":
            config = _config(WeChatPayV3Config, "wechat", wechat, base_dir)
            store = wechat_certificates(config.mchid) if wechat_certificates is not None else None
            clients[PayChannel.WECHAT] = WeChatPayV3Client(config, certificates=store)
        elif isinstance(wechat, Mapping) and wechat.get("api_version", "v2") != "v2":
            raise ChannelConfigError(f"channels.wechat.api_version must be v2 or v3, not {wechat.get('api_version')!r}")
        else:
            section = {k: v for k, v in wechat.items() if k != "api_version"} if isinstance(wechat, Mapping) else wechat
            clients[PayChannel.WECHAT] = WeChatPayClient(_config(WeChatPayConfig, "wechat", section, base_dir))
    if "alipay" in settings:
        clients[PayChannel.ALIPAY] = AlipayClient(_config(AlipayConfig, "alipay", settings["alipay"], base_dir))
    if not clients:
        raise ChannelConfigError("channels: configure at least one of wechat, alipay")
    return clients


def settings_from_sandbox(credentials_path: str, **overrides: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """The "channels" section that points both clients at a running channel-sandbox.

    `credentials_path` is the JSON file the sandbox writes (sandbox.json in its data dir);
    `overrides` adds fields per channel, e.g. wechat={"read_timeout_s": 1.0}.
    """
    try:
        with open(credentials_path, encoding="utf-8") as handle:
            creds = json.load(handle)
        settings = {name: dict(section) for name, section in creds["channels"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ChannelConfigError(f"cannot read sandbox credentials {credentials_path}: {exc}") from None
    for section, extra in overrides.items():
        settings.setdefault(section, {}).update(extra)
    return settings
