"""The channel client of each hospital, built from its sealed merchant credentials.

The credentials stored by `gateway-admin merchant set` are the channel's settings section (the shape
of `gateway.channels.settings`), with key material inline as PEM text, never as file paths: the
gateway keeps no key on disk. The merchant id is the stored `merchant_id` (WeChat `mch_id`, Alipay
`app_id`). Clients are cached per (hospital, channel, credentials version): a rotation takes effect
on the next request.

A hospital in service_provider mode takes Alipay through our third-party application: the provider's
credentials (`gateway-admin provider set alipay`, provider_keys) plus the hospital's own
`app_auth_token` (its merchant credentials); the cached client is checked against both versions.
WeChat service-provider mode is refused with `bad_config` until its client speaks it.

Alipay clients are given `alipay_notify_url` (the gateway's notify endpoint) so that Alipay's async
notifications reach the gateway.
"""

from __future__ import annotations

from typing import Mapping

import threading

from protocol.messages import PayChannel

from gateway.errors import GatewayCode, GatewayError
from gateway.tenancy import Directory, MerchantKey, Mode
from terminal.channels.base import ChannelClient
from gateway.channels.alipay import AlipayClient
from gateway.channels.errors import ChannelConfigError
from gateway.channels.settings import build_clients

_SECTION = {PayChannel.WECHAT: ("wechat", "mch_id"), PayChannel.ALIPAY: ("alipay", "app_id")}


class ChannelFactory:
    def __init__(self, directory: Directory, *, overrides: Mapping[str, object] | None = None, alipay_notify_url: str | None = None) -> None:
        self.directory = directory
        self._overrides = dict(overrides or {})  # e.g. timeouts, for every client
        self._alipay_notify_url = alipay_notify_url
        self._cache: dict[tuple[str, PayChannel], tuple[tuple[int, int | None], ChannelClient]] = {}
        self._lock = threading.Lock()

    @property
    def alipay_notify_url(self) -> str | None:
        return self._alipay_notify_url

    def set_alipay_notify_url(self, url: str | None) -> None:
        """Where Alipay should send notifications (known once the server listens); rebuilds the clients."""
        with self._lock:
            self._alipay_notify_url = url
            self._cache.clear()

    def client(self, hospital_id: str, channel: PayChannel) -> ChannelClient:
        return self._client(hospital_id, channel)

    def alipay(self, hospital_id: str) -> AlipayClient:
        """The hospital's Alipay client itself (what verifies Alipay's notifications with its keys)."""
        client = self._client(hospital_id, PayChannel.ALIPAY)
        assert isinstance(client, AlipayClient)  # build_clients makes an AlipayClient for the alipay section
        return client

    def _client(self, hospital_id: str, channel: PayChannel) -> ChannelClient:
        mode, version = self.directory.merchant_key_version(hospital_id, channel)  # one read per request
        provider_version: int | None = None
        if mode is not Mode.DIRECT:
            if channel is not PayChannel.ALIPAY:
                raise GatewayError(GatewayCode.BAD_CONFIG, f"hospital {hospital_id}: {mode.value} mode is not supported by this gateway version yet")
            provider_version = self.directory.provider_key_version(channel)
        with self._lock:
            cached = self._cache.get((hospital_id, channel))
            if cached is not None and version is not None and cached[0] == (version, provider_version):
                return cached[1]
        key = self.directory.merchant_key(hospital_id, channel)  # no_merchant when there is none
        section, id_field = _SECTION[channel]
        settings: dict[str, object]
        if mode is Mode.DIRECT:
            settings = {**key.secrets, id_field: key.merchant_id}
        else:
            settings = self._third_party(hospital_id, key)
            provider_version = int(str(settings.pop("_provider_version")))
        if channel is PayChannel.ALIPAY and self._alipay_notify_url:
            settings["notify_url"] = self._alipay_notify_url
        settings |= self._overrides
        try:
            client = build_clients({section: settings})[channel]
        except ChannelConfigError as exc:
            raise GatewayError(GatewayCode.BAD_CONFIG, f"hospital {hospital_id} {channel.value} credentials v{key.version}: {exc.message}") from None
        with self._lock:
            self._cache[(hospital_id, channel)] = ((key.version, provider_version), client)
        return client

    def _third_party(self, hospital_id: str, key: MerchantKey) -> dict[str, object]:
        """Our third-party application's settings acting for the hospital that authorised it."""
        token = key.secrets.get("app_auth_token")
        if not token or set(key.secrets) != {"app_auth_token"}:
            raise GatewayError(GatewayCode.BAD_CONFIG, f"hospital {hospital_id} is in service_provider mode: its Alipay credentials must be "
                                                       "only its app_auth_token (gateway-admin merchant set ... --app-auth-token)")
        provider = self.directory.provider_key(PayChannel.ALIPAY)  # no_merchant when the provider has none
        return dict(provider.secrets) | {"app_id": provider.merchant_id, "app_auth_token": token, "_provider_version": provider.version}
