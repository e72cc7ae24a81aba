"""The provider's gateway on this machine, set up for the simulator the way an operator would.

    gw = DemoGateway(workdir / "gateway")                        # SQLite + a 0600 master key in there
    gw.onboard(sandbox_credentials, keys_text)                   # gateway-admin hospital add / merchant set / his-keys set
    gw.enroll(device.record(), demo_setup.DEMO_TERMINAL)         # devices import / terminals import / device bind
    url = gw.serve_in_thread()          # tests; the headless system runs `payment-gateway` as a child instead

Everything goes through `gateway.tenancy.Directory`, the library under `gateway-admin`, so the demo
onboarding is audited like a real one. WeChat Pay is taken one of four ways (`WECHAT_SETUPS`, `make run
WECHAT=...`): the sandbox's direct merchant or a sub-merchant of its service provider, over v2 or APIv3.
Alipay one of three (`ALIPAY_SETUPS`, `make run ALIPAY=...`): the hospital's own app with the Alipay
public key or in certificate mode, or our third-party application, which the hospital authorises: the
demo asks the sandbox for the app_auth_code the merchant's authorisation page would give and exchanges
it as `gateway-admin alipay authorize` does (gateway.alipay_authorizations). A hospital is in one mode
for both channels (`resolve_setups`): third-party Alipay goes with a WeChat Pay sub-merchant, and the
other way round. Re-running is safe: what exists is kept, the sandbox's credentials are rotated in
when they changed (a valid authorisation is kept), the HIS keys are replaced by the bridge's current ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from protocol.keyfile import parse_keyfile
from protocol.messages import PayChannel
from protocol.registry import DeviceRecord, TerminalRecord, format_device_csv, format_terminal_csv

import requests

from gateway.alipay_authorizations import AlipayAuthorizations
from gateway.api import GatewayHttpServer
from gateway.channel_clients import ChannelFactory
from gateway.db import Database, SqliteDatabase
from gateway.errors import GatewayCode, GatewayError
from gateway.ledger import Ledger
from gateway.service import GatewayService
from gateway.tenancy import Directory, Mode
from gateway.vault import read_master_key_file, Vault, write_master_key_file

DEMO_HOSPITAL = "H-DEMO"
# How the demo hospital takes WeChat Pay: (API version, service-provider mode).
WECHAT_SETUPS = {"v2": ("v2", False), "v3": ("v3", False), "v2-provider": ("v2", True), "v3-provider": ("v3", True)}
# How it takes Alipay: its own app (Alipay public key, or certificate mode), or our third-party application.
ALIPAY_SETUPS = ("public-key", "cert", "third-party")
_PEM_FIELDS = {"private_key_pem", "alipay_public_key_pem", "app_cert_pem", "alipay_cert_pem", "alipay_root_cert_pem"}
ACTOR = "demo-setup"
DB_FILE = "gateway.db"
MASTER_KEY_FILE = "master.key"


def merchant_settings(credentials: dict) -> dict[PayChannel, tuple[str, dict[str, str]]]:
    """(merchant id, sealed settings) per channel from the sandbox's sandbox.json, keys inline as PEM."""
    channels = credentials["channels"]
    wechat, alipay = channels["wechat"], channels["alipay"]
    return {
        PayChannel.WECHAT: (wechat["mch_id"], {"appid": wechat["appid"], "api_key": wechat["api_key"], "base_url": wechat["base_url"]}),
        PayChannel.ALIPAY: (alipay["app_id"], {
            "gateway": alipay["gateway"],
            "private_key_pem": Path(alipay["private_key_pem"]).read_text(encoding="ascii"),
            "alipay_public_key_pem": Path(alipay["alipay_public_key_pem"]).read_text(encoding="ascii")}),
    }


def _v3_settings(section: dict) -> dict[str, str]:
    def pem(path: str) -> str:
        return Path(path).read_text(encoding="ascii")
    # No platform key pasted: the gateway downloads the platform certificates (`onboard` pins the first).
    return {"api_version": "v3", "base_url": section["base_url"], "appid": section["appid"], "merchant_serial_no": section["merchant_serial_no"],
            "private_key_pem": pem(section["private_key_pem"]), "apiv3_key": section["apiv3_key"]}


def wechat_settings(credentials: dict, setup: str) -> tuple[str, dict[str, str], tuple[str, dict[str, str]] | None]:
    """(merchant id, sealed settings, (provider's merchant id, provider's settings) or None) for a WeChat setup."""
    version, provider = WECHAT_SETUPS[setup]
    if not provider:
        if version == "v2":
            return merchant_settings(credentials)[PayChannel.WECHAT] + (None,)
        direct = credentials["wechat_v3"]["direct"]
        return direct["mchid"], _v3_settings(direct), None
    if version == "v2":
        sp = credentials["wechat_service_provider"]
        return sp["sub_mch_ids"][0], {}, (sp["mch_id"], {"appid": sp["appid"], "api_key": sp["api_key"], "base_url": sp["base_url"]})
    sp = credentials["wechat_v3"]["service_provider"]
    return sp["sub_mchids"][0], {}, (sp["mchid"], _v3_settings(sp))


def resolve_setups(wechat: str | None, alipay: str | None) -> tuple[str, str]:
    """(WeChat setup, Alipay setup) for the demo hospital, which is in one mode for both channels: an
    Alipay third-party hospital is a WeChat Pay sub-merchant and the other way round. What is not given
    follows what is (nothing given: v2 and public-key); a contradiction is refused, saying why."""
    if wechat is not None and wechat not in WECHAT_SETUPS:
        raise ValueError(f"WECHAT={wechat}: one of {', '.join(WECHAT_SETUPS)}")
    if alipay is not None and alipay not in ALIPAY_SETUPS:
        raise ValueError(f"ALIPAY={alipay}: one of {', '.join(ALIPAY_SETUPS)}")
    if wechat is None:
        wechat = "v2-provider" if alipay == "third-party" else "v2"
    provider = WECHAT_SETUPS[wechat][1]
    if alipay is None:
        alipay = "third-party" if provider else "public-key"
    if provider != (alipay == "third-party"):
        raise ValueError(f"WECHAT={wechat} with ALIPAY={alipay}: a hospital is either its own merchant on both channels or ours "
                         "(service provider) on both: ALIPAY=third-party goes with WECHAT=v2-provider or v3-provider, and "
                         "ALIPAY=public-key or cert with WECHAT=v2 or v3")
    return wechat, alipay


def alipay_settings(credentials: dict, setup: str) -> tuple[str, dict[str, str]]:
    """(app_id, sealed settings) of the sandbox's Alipay app for a setup: the hospital's own app (public-key,
    cert), or for third-party our provider's application (the hospital then adds only its authorisation)."""
    section = credentials["channels"]["alipay"] if setup == "public-key" else credentials["alipay_modes"][
        "cert" if setup == "cert" else "third_party"]
    return section["app_id"], {k: Path(v).read_text(encoding="ascii") if k in _PEM_FIELDS else str(v)
                               for k, v in section.items() if k != "app_id"}


def sandbox_auth_code(credentials: dict, app_id: str, user_id: str | None) -> tuple[str, str]:
    """What the merchant's authorisation page hands us (the sandbox's control API plays that page): a new
    app_auth_code for our app, and the merchant it comes from (the one on file when the sandbox knows it)."""
    body = {"app_id": app_id} | ({"user_id": user_id} if user_id else {})
    reply = requests.post(f"{credentials['control_url']}/alipay/app-auth-code", json=body, timeout=10)
    if reply.status_code == 404 and user_id:  # a sandbox started afresh knows no merchant of ours: a new one authorises
        reply = requests.post(f"{credentials['control_url']}/alipay/app-auth-code", json={"app_id": app_id}, timeout=10)
    reply.raise_for_status()
    return str(reply.json()["app_auth_code"]), str(reply.json()["user_id"])


class DemoGateway:
    def __init__(self, directory: Path, *, hospital_id: str = DEMO_HOSPITAL) -> None:
        self.directory_path = Path(directory)
        self.directory_path.mkdir(parents=True, exist_ok=True)
        self.key_file = self.directory_path / MASTER_KEY_FILE
        if not self.key_file.exists():
            write_master_key_file(self.key_file)
        self.db_url = f"sqlite:{self.directory_path / DB_FILE}"
        self.db: Database = SqliteDatabase(self.directory_path / DB_FILE)
        self.db.migrate()
        self.tenancy = Directory(self.db, Vault(read_master_key_file(self.key_file)))
        self.hospital_id = hospital_id
        self._server: GatewayHttpServer | None = None

    def onboard(self, sandbox_credentials: Path, keys_text: str, *, hospital_id: str | None = None, wechat: str | None = None,
                alipay: str | None = None) -> None:
        d = self.tenancy
        hospital_id = hospital_id or self.hospital_id
        wechat, alipay = resolve_setups(wechat, alipay)
        if hospital_id not in {h.hospital_id for h in d.hospitals()}:
            d.add_hospital(hospital_id, "示例市人民医院 (demo)", mode=Mode.DIRECT, actor=ACTOR)
        credentials = json.loads(Path(sandbox_credentials).read_text(encoding="utf-8"))
        settings = merchant_settings(credentials)
        wechat_id, wechat_secrets, provider = wechat_settings(credentials, wechat)
        settings[PayChannel.WECHAT] = (wechat_id, wechat_secrets)
        if provider is not None:
            self._set_provider(PayChannel.WECHAT, provider)
        mode = Mode.SERVICE_PROVIDER if provider is not None else Mode.DIRECT
        if d.hospital(hospital_id).mode is not mode:
            d.set_mode(hospital_id, mode, actor=ACTOR)
        settings[PayChannel.ALIPAY] = alipay_settings(credentials, alipay)
        if alipay == "third-party":
            self._set_provider(PayChannel.ALIPAY, settings.pop(PayChannel.ALIPAY))
            self._authorize_alipay(hospital_id, credentials)
        for channel, (merchant_id, secrets) in settings.items():
            try:
                current = d.merchant_key(hospital_id, channel)
                unchanged = (current.merchant_id, dict(current.secrets)) == (merchant_id, secrets)
            except GatewayError as exc:
                if exc.code is not GatewayCode.NO_MERCHANT:
                    raise
                unchanged = False
            if not unchanged:
                d.set_merchant_key(hospital_id, channel, merchant_id, secrets, actor=ACTOR)
        d.add_his_keys(hospital_id, parse_keyfile(keys_text, "bridge keys"), actor=ACTOR)
        if wechat.startswith("v3"):
            self._download_platform_certificates(hospital_id if provider is None else None, credentials)

    def _download_platform_certificates(self, hospital_id: str | None, credentials: dict) -> None:
        """`gateway-admin wechat certificates refresh` as an operator would run it once, pinning the
        certificate the sandbox made first (the operator's out-of-band check)."""
        from gateway.channels.wechat_v3_codec import certificate_serial

        client = ChannelFactory(self.tenancy).wechat_v3_client(hospital_id)
        if client.platform_serials():
            return  # held already (a re-run): the job keeps them fresh
        first = certificate_serial(Path(credentials["wechat_v3"]["direct"]["platform_certificate_pem"]).read_text(encoding="ascii"))
        client.refresh_certificates(expect_serial=first)

    def _set_provider(self, channel: PayChannel, wanted: tuple[str, dict[str, str]]) -> None:
        try:
            current = self.tenancy.provider_key(channel)
        except GatewayError as exc:
            if exc.code is not GatewayCode.NO_MERCHANT:
                raise
            current = None
        if current is None or (current.merchant_id, dict(current.secrets)) != wanted:
            self.tenancy.set_provider_key(channel, wanted[0], wanted[1], actor=ACTOR)

    def _authorize_alipay(self, hospital_id: str, credentials: dict) -> None:
        """The hospital authorises our third-party application (once; a valid authorisation is kept)."""
        auths = AlipayAuthorizations(self.tenancy, ChannelFactory(self.tenancy))
        app_id = self.tenancy.provider_key(PayChannel.ALIPAY).merchant_id
        try:
            current = auths.get(hospital_id)
            if (current.status, current.app_id, current.key_version) == ("valid", app_id, self.tenancy.merchant_key_version(
                    hospital_id, PayChannel.ALIPAY)[1]) and auths.query(hospital_id).status == "valid":
                return
        except GatewayError as exc:
            if exc.code not in (GatewayCode.ALIPAY_NOT_AUTHORIZED, GatewayCode.ALIPAY_REAUTHORIZE):
                raise
        on_file = None
        try:
            on_file = self.tenancy.merchant_id(hospital_id, PayChannel.ALIPAY)
        except GatewayError as exc:
            if exc.code is not GatewayCode.NO_MERCHANT:
                raise
        code, merchant = sandbox_auth_code(credentials, app_id, on_file)
        auths.authorize(hospital_id, code, actor=ACTOR, merchant_id=merchant)

    def enroll(self, record: DeviceRecord, terminals: TerminalRecord | Sequence[TerminalRecord], *,
               hospital_id: str | None = None) -> None:
        """The device known, its terminals known, and bound to it (a device may serve several)."""
        d = self.tenancy
        hospital_id = hospital_id or self.hospital_id
        wanted = [terminals] if isinstance(terminals, TerminalRecord) else list(terminals)
        have = {t for t, _ in d.terminals(hospital_id)}
        new = [TerminalRecord(t.terminal_id, t.description) for t in wanted if t.terminal_id not in have]
        if new:
            d.import_terminals(hospital_id, format_terminal_csv(new), actor=ACTOR)
        known = {x.device_id: x for x in d.devices(hospital_id)}
        if record.device_id not in known:
            d.import_devices(hospital_id, format_device_csv([record]), actor=ACTOR)
        elif known[record.device_id].public_key != record.public_key:
            raise GatewayError(GatewayCode.EXISTS, f"device {record.device_id} is registered with another key; start with --fresh")
        for terminal in wanted:
            for other in d.devices(hospital_id):
                if terminal.terminal_id in other.terminal_ids and other.device_id != record.device_id:
                    d.disable_device(other.device_id, reason="replaced in the demo", actor=ACTOR)
            if terminal.terminal_id not in d.device(record.device_id).terminal_ids:
                d.bind_device(record.device_id, terminal.terminal_id, actor=ACTOR)

    def service(self, channel_overrides: dict[str, object] | None = None) -> GatewayService:
        return GatewayService(self.tenancy, Ledger(self.db), ChannelFactory(self.tenancy, overrides=channel_overrides))

    def serve_in_thread(self, channel_overrides: dict[str, object] | None = None) -> str:
        self._server = GatewayHttpServer(self.service(channel_overrides)).start()  # refunds carry its notify URLs
        return self._server.url

    def command_env(self) -> dict[str, str]:
        return {"GATEWAY_MASTER_KEY_FILE": str(self.key_file)}

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.db.close()
