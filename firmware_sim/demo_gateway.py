"""The provider's gateway on this machine, set up for the simulator the way an operator would.

    gw = DemoGateway(workdir / "gateway")                        # SQLite + a 0600 master key in there
    gw.onboard(sandbox_credentials, keys_text)                   # gateway-admin hospital add / merchant set / his-keys set
    gw.enroll(device.record(), demo_setup.DEMO_TERMINAL)         # devices import / terminals import / device bind
    url = gw.serve_in_thread()          # tests; the headless system runs `payment-gateway` as a child instead

Everything goes through `gateway.tenancy.Directory`, the library under `gateway-admin`, so the demo
onboarding is audited like a real one. WeChat Pay is taken one of four ways (`WECHAT_SETUPS`, `make run
WECHAT=...`): the sandbox's direct merchant or a sub-merchant of its service provider, over v2 or APIv3. Re-running is safe: what exists is kept, the sandbox's
credentials are rotated in when they changed, the HIS keys are replaced by the bridge's current ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from protocol.keyfile import parse_keyfile
from protocol.messages import PayChannel
from protocol.registry import DeviceRecord, TerminalRecord, format_device_csv, format_terminal_csv

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
    return {"api_version": "v3", "base_url": section["base_url"], "appid": section["appid"], "merchant_serial_no": section["merchant_serial_no"],
            "private_key_pem": pem(section["private_key_pem"]), "apiv3_key": section["apiv3_key"],
            "platform_public_key_pem": pem(section["platform_public_key_pem"]), "platform_public_key_id": section["platform_public_key_id"]}


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

    def onboard(self, sandbox_credentials: Path, keys_text: str, *, hospital_id: str | None = None, wechat: str = "v2") -> None:
        d = self.tenancy
        hospital_id = hospital_id or self.hospital_id
        if hospital_id not in {h.hospital_id for h in d.hospitals()}:
            d.add_hospital(hospital_id, "示例市人民医院 (demo)", mode=Mode.DIRECT, actor=ACTOR)
        credentials = json.loads(Path(sandbox_credentials).read_text(encoding="utf-8"))
        settings = merchant_settings(credentials)
        wechat_id, wechat_secrets, provider = wechat_settings(credentials, wechat)
        settings[PayChannel.WECHAT] = (wechat_id, wechat_secrets)
        if provider is not None:
            current_provider = None
            try:
                current_provider = d.provider_key(PayChannel.WECHAT)
            except GatewayError as exc:
                if exc.code is not GatewayCode.NO_MERCHANT:
                    raise
            if current_provider is None or (current_provider.merchant_id, dict(current_provider.secrets)) != provider:
                d.set_provider_key(PayChannel.WECHAT, provider[0], provider[1], actor=ACTOR)
        # The demo hospital's mode follows WeChat's setup; in the provider setups Alipay is not onboarded
        # (its third-party mode needs the hospital's app_auth_token: docs/gateway.md).
        mode = Mode.SERVICE_PROVIDER if provider is not None else Mode.DIRECT
        if d.hospital(hospital_id).mode is not mode:
            d.set_mode(hospital_id, mode, actor=ACTOR)
        for channel, (merchant_id, secrets) in settings.items():
            if channel is PayChannel.ALIPAY and mode is Mode.SERVICE_PROVIDER:
                continue
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
