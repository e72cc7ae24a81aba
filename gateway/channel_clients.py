"""The channel client of each hospital, built from its sealed merchant credentials.

The credentials stored by `gateway-admin merchant set` are the channel's settings section (the shape
of `gateway.channels.settings`), with key material inline as PEM text, never as file paths: the
gateway keeps no key on disk. The merchant id is the stored `merchant_id` (WeChat `mch_id`, Alipay
`app_id`). Clients are cached per (hospital, channel, credentials version): a rotation takes effect
on the next request.

The clients (`gateway/channels/`) speak direct-merchant WeChat Pay v2 and Alipay; a hospital in
service-provider mode is refused with `bad_config` until they speak it too (issue 13, later slices).
"""

from __future__ import annotations

from typing import Mapping

import threading

from protocol.messages import PayChannel

from gateway.errors import GatewayCode, GatewayError
from gateway.tenancy import Directory, Mode
from terminal.channels.base import ChannelClient
from gateway.channels.errors import ChannelConfigError
from gateway.channels.settings import build_clients

_SECTION = {PayChannel.WECHAT: ("wechat", "mch_id"), PayChannel.ALIPAY: ("alipay", "app_id")}


class ChannelFactory:
    def __init__(self, directory: Directory, *, overrides: Mapping[str, object] | None = None) -> None:
        self.directory = directory
        self._overrides = dict(overrides or {})  # e.g. timeouts, for every client
        self._cache: dict[tuple[str, PayChannel], tuple[int, ChannelClient]] = {}
        self._lock = threading.Lock()

    def client(self, hospital_id: str, channel: PayChannel) -> ChannelClient:
        mode, version = self.directory.merchant_key_version(hospital_id, channel)  # one read per request
        if mode is not Mode.DIRECT:
            raise GatewayError(GatewayCode.BAD_CONFIG, f"hospital {hospital_id}: {mode.value} mode is not supported by this gateway version yet")
        with self._lock:
            cached = self._cache.get((hospital_id, channel))
            if cached is not None and version is not None and cached[0] == version:
                return cached[1]
        key = self.directory.merchant_key(hospital_id, channel)  # no_merchant when there is none
        section, id_field = _SECTION[channel]
        settings = dict(key.secrets) | {id_field: key.merchant_id} | self._overrides
        try:
            client = build_clients({section: settings})[channel]
        except ChannelConfigError as exc:
            raise GatewayError(GatewayCode.BAD_CONFIG, f"hospital {hospital_id} {channel.value} credentials v{key.version}: {exc.message}") from None
        with self._lock:
            self._cache[(hospital_id, channel)] = (key.version, client)
        return client
