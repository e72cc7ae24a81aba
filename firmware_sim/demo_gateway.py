"""The provider's gateway on this machine, set up for the simulator the way an operator would.

    gw = DemoGateway(workdir / "gateway")                        # SQLite + a 0600 master key in there
    gw.onboard(sandbox_credentials, keys_text)                   # gateway-admin hospital add / merchant set / his-keys set
    gw.enroll(device.record(), demo_setup.DEMO_TERMINAL)         # devices import / terminals import / device bind
    url = gw.serve_in_thread()          # tests; the headless system runs `payment-gateway` as a child instead

Everything goes through `gateway.tenancy.Directory`, the library under `gateway-admin`, so the demo
onboarding is audited like a real one. Re-running is safe: what exists is kept, the sandbox's
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

    def onboard(self, sandbox_credentials: Path, keys_text: str, *, hospital_id: str | None = None) -> None:
        d = self.tenancy
        hospital_id = hospital_id or self.hospital_id
        if hospital_id not in {h.hospital_id for h in d.hospitals()}:
            d.add_hospital(hospital_id, "示例市人民医院 (demo)", mode=Mode.DIRECT, actor=ACTOR)
        credentials = json.loads(Path(sandbox_credentials).read_text(encoding="utf-8"))
        for channel, (merchant_id, secrets) in merchant_settings(credentials).items():
            try:
                current = d.merchant_key(hospital_id, channel)
                unchanged = current.merchant_id == merchant_id and dict(current.secrets) == secrets
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
        self._server = GatewayHttpServer(self.service(channel_overrides)).start()
        return self._server.url

    def command_env(self) -> dict[str, str]:
        return {"GATEWAY_MASTER_KEY_FILE": str(self.key_file)}

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.db.close()
