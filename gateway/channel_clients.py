"""The channel client of each hospital, built from its sealed merchant credentials.

The credentials stored by `gateway-admin merchant set` are the channel's settings section (the shape
of `gateway.channels.settings`), with key material inline as PEM text, never as file paths: the
gateway keeps no key on disk. The merchant id is the stored `merchant_id` (WeChat `mch_id`, Alipay
`app_id`). Clients are cached per (hospital, channel, credentials version): a rotation takes effect
on the next request.

A hospital in service_provider mode takes Alipay through our third-party application: the provider's
credentials (`gateway-admin provider set alipay`, provider_keys) plus the hospital's own
`app_auth_token` (its merchant credentials); the cached client is checked against both versions, so
a token refreshed by any gateway process (gateway.alipay_authorizations: a new credentials version)
is used from the next request on.
WeChat Pay in service_provider mode: our provider credentials (`gateway-admin provider set wechat`:
the provider's `merchant_id` is the signing `mch_id` / `mchid`, its keys sign) plus the hospital's
sub-merchant id (`sub_mch_id` / `sub_mchid`, its merchant_id) and what else is its own (`sub_appid`).
WeChat Pay's credentials choose the API with "api_version" (v2 or v3; see gateway.channels.settings).
APIv3 clients keep the platform certificates they download in the database (`certificate_store`,
gateway.wechat_certificates), so an APIv3 hospital's credentials need no platform key.

Alipay clients are given `alipay_notify_url` (the gateway's notify endpoint) so that Alipay's async
notifications reach the gateway; WeChat Pay clients a notify_url of `wechat_notify_base` + the
hospital, where its refund notifications arrive (gateway.wechat_notifications).
"""

from __future__ import annotations

from typing import Mapping

import threading

from protocol.messages import PayChannel

from gateway.errors import GatewayCode, GatewayError
from gateway.tenancy import Directory, KeyVersions, MerchantKey, Mode
from terminal.channels.base import ChannelClient
from gateway.channels.alipay import AlipayClient
from gateway.channels.errors import ChannelConfigError
from gateway.channels.settings import build_clients
from gateway.channels.wechat_v3 import WeChatPayV3Client
from gateway.wechat_certificates import DatabaseCertificateStore

# Where WeChat Pay's refund notifications arrive at the gateway: this prefix + the hospital id.
WECHAT_NOTIFY_PREFIX = "/v1/notify/wechat/"
_SECTION = {PayChannel.WECHAT: ("wechat", "mch_id"), PayChannel.ALIPAY: ("alipay", "app_id")}
# A third-party-mode hospital's sealed Alipay credentials: its token, and the refresh token when the
# token came from an app_auth_code (gateway.alipay_authorizations); only the token reaches the client.
_THIRD_PARTY_SECRETS = {"app_auth_token", "app_refresh_token"}
# WeChat Pay's id fields by API version: (the signing merchant, the sub-merchant in service-provider mode).
_WECHAT_IDS = {"v2": ("mch_id", "sub_mch_id"), "v3": ("mchid", "sub_mchid")}


def wechat_ids(secrets: Mapping[str, str]) -> tuple[str, str]:
    return _WECHAT_IDS.get(str(secrets.get("api_version", "v2")), _WECHAT_IDS["v2"])


class ChannelFactory:
    def __init__(self, directory: Directory, *, overrides: Mapping[str, object] | None = None, alipay_notify_url: str | None = None) -> None:
        self.directory = directory
        self._overrides = dict(overrides or {})  # e.g. timeouts, for every client
        self._alipay_notify_url = alipay_notify_url
        self._wechat_notify_base: str | None = None
        self._cache: dict[tuple[str, PayChannel], tuple[tuple[int, int | None], ChannelClient]] = {}
        self._provider_cache: tuple[int, AlipayClient] | None = None
        self._lock = threading.Lock()

    @property
    def alipay_notify_url(self) -> str | None:
        return self._alipay_notify_url

    def set_alipay_notify_url(self, url: str | None) -> None:
        """Where Alipay should send notifications (known once the server listens); rebuilds the clients."""
        with self._lock:
            self._alipay_notify_url = url
            self._cache.clear()

    @property
    def wechat_notify_base(self) -> str | None:
        return self._wechat_notify_base

    def set_wechat_notify_base(self, url: str | None) -> None:
        """The gateway's URL as WeChat Pay reaches it: refunds carry {url}/v1/notify/wechat/{hospital}."""
        with self._lock:
            self._wechat_notify_base = url.rstrip("/") if url else None
            self._cache.clear()

    def client(self, hospital_id: str, channel: PayChannel, keys: KeyVersions | None = None) -> ChannelClient:
        """`keys`: the hospital's credentials versions as already read for this request (the device's
        read, `Directory.device_for_request`): then no read here while the cached client is current."""
        return self._client(hospital_id, channel, keys)

    def alipay(self, hospital_id: str) -> AlipayClient:
        """The hospital's Alipay client itself (what verifies Alipay's notifications with its keys)."""
        client = self._client(hospital_id, PayChannel.ALIPAY)
        assert isinstance(client, AlipayClient)  # build_clients makes an AlipayClient for the alipay section
        return client

    def _client(self, hospital_id: str, channel: PayChannel, keys: KeyVersions | None = None) -> ChannelClient:
        provider_version: int | None = None
        if keys is not None:
            mode, version = keys.mode, keys.merchant.get(channel)
            if mode is not Mode.DIRECT:
                provider_version = keys.provider.get(channel)
        else:
            mode, version = self.directory.merchant_key_version(hospital_id, channel)  # one read per request
            if mode is not Mode.DIRECT:
                provider_version = self.directory.provider_key_version(channel)
        with self._lock:
            cached = self._cache.get((hospital_id, channel))
            if cached is not None and version is not None and cached[0] == (version, provider_version):
                return cached[1]
        key = self.directory.merchant_key(hospital_id, channel)  # no_merchant when there is none
        section, id_field = _SECTION[channel]
        settings: dict[str, object]
        if mode is Mode.DIRECT:
            if channel is PayChannel.WECHAT:
                id_field = wechat_ids(key.secrets)[0]
            settings = {**key.secrets, id_field: key.merchant_id}
        elif channel is PayChannel.WECHAT:
            settings = self._sub_merchant(key)
            provider_version = int(str(settings.pop("_provider_version")))
        else:
            settings = self._third_party(hospital_id, key)
            provider_version = int(str(settings.pop("_provider_version")))
        if channel is PayChannel.WECHAT and self._wechat_notify_base and "notify_url" not in settings:
            settings["notify_url"] = f"{self._wechat_notify_base}{WECHAT_NOTIFY_PREFIX}{hospital_id}"
        if channel is PayChannel.ALIPAY and self._alipay_notify_url:
            settings["notify_url"] = self._alipay_notify_url
        settings |= self._overrides
        try:
            client = build_clients({section: settings}, wechat_certificates=self.certificate_store)[channel]
        except ChannelConfigError as exc:
            raise GatewayError(GatewayCode.BAD_CONFIG, f"hospital {hospital_id} {channel.value} credentials v{key.version}: {exc.message}") from None
        with self._lock:
            self._cache[(hospital_id, channel)] = ((key.version, provider_version), client)
        return client

    def alipay_provider(self) -> AlipayClient:
        """Our third-party application's own client, acting for no hospital (no app_auth_token): what
        exchanges a hospital's app_auth_code and refreshes its token (gateway.alipay_authorizations)."""
        version = self.directory.provider_key_version(PayChannel.ALIPAY)
        with self._lock:
            cached = self._provider_cache
            if cached is not None and version is not None and cached[0] == version:
                return cached[1]
        provider = self.directory.provider_key(PayChannel.ALIPAY)  # no_merchant when the provider has none
        try:
            client = build_clients({"alipay": dict(provider.secrets) | {"app_id": provider.merchant_id} | self._overrides})[PayChannel.ALIPAY]
        except ChannelConfigError as exc:
            raise GatewayError(GatewayCode.BAD_CONFIG, f"service-provider alipay credentials v{provider.version}: {exc.message}") from None
        assert isinstance(client, AlipayClient)  # build_clients makes an AlipayClient for the alipay section
        with self._lock:
            self._provider_cache = (provider.version, client)
        return client

    # --- WeChat Pay APIv3 platform certificates ------------------------------------------------

    def certificate_store(self, mchid: str) -> DatabaseCertificateStore:
        """Where the platform certificates of the signing merchant `mchid` are kept."""
        return DatabaseCertificateStore(self.directory.db, self.directory.vault, mchid)

    def wechat_v3_mchid(self, hospital_id: str) -> str | None:
        """The mchid that signs the hospital's WeChat Pay APIv3 requests (ours in service_provider
        mode); None when it takes WeChat Pay through API v2 or not at all."""
        if self.directory.merchant_key_version(hospital_id, PayChannel.WECHAT)[1] is None:
            return None
        client = self._client(hospital_id, PayChannel.WECHAT)
        return client.config.mchid if isinstance(client, WeChatPayV3Client) else None

    def wechat_v3_client(self, hospital_id: str | None) -> WeChatPayV3Client:
        """The hospital's APIv3 client; None: one of our own service-provider credentials (no sub-merchant),
        which is what downloads the provider's platform certificates."""
        if hospital_id is not None:
            client = self._client(hospital_id, PayChannel.WECHAT)
            if not isinstance(client, WeChatPayV3Client):
                raise GatewayError(GatewayCode.BAD_INPUT, f"hospital {hospital_id} takes WeChat Pay through API v2: it has no platform certificates")
            return client
        provider = self.directory.provider_key(PayChannel.WECHAT)
        if wechat_ids(provider.secrets)[0] != "mchid":
            raise GatewayError(GatewayCode.BAD_INPUT, "our WeChat Pay provider credentials are API v2: there are no platform certificates")
        settings: dict[str, object] = {**provider.secrets, "mchid": provider.merchant_id, **self._overrides}
        try:
            built = build_clients({"wechat": settings}, wechat_certificates=self.certificate_store)[PayChannel.WECHAT]
        except ChannelConfigError as exc:
            raise GatewayError(GatewayCode.BAD_CONFIG, f"provider wechat credentials v{provider.version}: {exc.message}") from None
        assert isinstance(built, WeChatPayV3Client)  # api_version v3 makes one
        return built

    def _sub_merchant(self, key: MerchantKey) -> dict[str, object]:
        """Our WeChat Pay service-provider settings acting for the hospital's sub-merchant."""
        provider = self.directory.provider_key(PayChannel.WECHAT)  # no_merchant when the provider has none
        signer_field, sub_field = wechat_ids(provider.secrets)
        return {**provider.secrets, signer_field: provider.merchant_id, **key.secrets, sub_field: key.merchant_id,
                "_provider_version": provider.version}

    def _third_party(self, hospital_id: str, key: MerchantKey) -> dict[str, object]:
        """Our third-party application's settings acting for the hospital that authorised it."""
        token = key.secrets.get("app_auth_token")
        if not token or not set(key.secrets) <= _THIRD_PARTY_SECRETS:
            raise GatewayError(GatewayCode.BAD_CONFIG, f"hospital {hospital_id} is in service_provider mode: its Alipay credentials must be "
                                                       "only its app_auth_token (gateway-admin alipay authorize ... --app-auth-code, or "
                                                       "merchant set ... --app-auth-token)")
        provider = self.directory.provider_key(PayChannel.ALIPAY)  # no_merchant when the provider has none
        return dict(provider.secrets) | {"app_id": provider.merchant_id, "app_auth_token": token, "_provider_version": provider.version}
