"""Who may pay for whom: hospitals -> terminals (the HIS terminal IDs) -> devices, the hospitals'
merchant credentials and HIS keys (sealed by the vault), and the audit trail of every admin action.

Each admin action and its audit row commit in one transaction: an action that is not audited did not
happen. Audit details never hold a secret (credentials are recorded by merchant id and version).
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from protocol.amount import DEFAULT_LIMIT_FEN
from protocol.limits import HospitalLimits
from protocol.crypto import SUITES, KeyRing, SharedKey
from protocol.ids import is_valid_id
from protocol.messages import PayChannel
from protocol.registry import RegistryError, parse_device_csv, parse_terminal_csv
from protocol.signing import PUBLIC_KEY_SIZE

from gateway.db import Database, Tx, UniqueViolation
from gateway.errors import GatewayCode, GatewayError
from gateway.vault import Vault


class Mode(enum.Enum):
    DIRECT = "direct"  # the hospital's own merchant account and keys
    SERVICE_PROVIDER = "service_provider"  # our provider keys + the hospital's sub-merchant id


class DeviceStatus(enum.Enum):
    ACTIVE = "active"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Hospital:
    hospital_id: str
    name: str
    mode: Mode
    txn_limit_fen: int
    daily_limit_fen: int | None
    terminal_daily_limit_fen: int | None
    require_his_signature: bool
    his_public_key: bytes | None


@dataclass(frozen=True, slots=True)
class KeyVersions:
    """The hospital's mode and the current versions of its credentials and of the provider's, per
    channel (None: none), as read with the device for one request (`Directory.device_for_request`):
    what `ChannelFactory` checks its cached clients against, without a read of its own."""

    mode: Mode
    merchant: Mapping[PayChannel, int | None]
    provider: Mapping[PayChannel, int | None]


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    hospital_id: str
    model: str
    serial_no: str
    public_key: bytes
    terminal_ids: tuple[str, ...]  # the HIS terminals this device serves (one window may hold several IDs)
    status: DeviceStatus
    disabled_reason: str | None
    last_seen_at: int | None
    firmware_version: str | None
    # Read in the same statement by `Directory.device_for_request` (None from every other read).
    keys: KeyVersions | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class MerchantKey:
    hospital_id: str
    channel: PayChannel
    version: int
    merchant_id: str
    secrets: Mapping[str, str]

    def __repr__(self) -> str:  # never show the secrets
        return f"MerchantKey({self.hospital_id}, {self.channel.value}, v{self.version}, {self.merchant_id})"


_HOSPITAL_COLS = "hospital_id, name, mode, txn_limit_fen, daily_limit_fen, terminal_daily_limit_fen, require_his_signature, his_public_key"
# `devices.terminal_id` is unused since migration 4: the binding lives in `terminals.device_id`.
_DEVICE_COLS = "device_id, hospital_id, model, serial_no, public_key, status, disabled_reason, last_seen_at, firmware_version"


def _hospital(row: tuple) -> Hospital:
    return Hospital(row[0], row[1], Mode(row[2]), int(row[3]), row[4], row[5], bool(row[6]), row[7])


def _device(row: tuple, terminal_ids: tuple[str, ...], keys: KeyVersions | None = None) -> Device:
    return Device(row[0], row[1], row[2], row[3], bytes(row[4]), terminal_ids, DeviceStatus(row[5]), row[6], row[7], row[8], keys)


_DEVICE_D_COLS = ", ".join("d." + c.strip() for c in _DEVICE_COLS.split(","))
_CHANNELS = tuple(PayChannel)
# A request's one read (`Directory.device_for_request`): the device, its terminals (one row each),
# its hospital's mode and the current credentials versions, the hospital's and the provider's, of
# every channel (scalar subqueries on the current-version indexes: ~5 us more than the device alone,
# against ~15 us of a statement of their own).
_REQUEST_DEVICE_SQL = (
    f"SELECT {_DEVICE_D_COLS}, h.mode, "
    + ", ".join([f"(SELECT version FROM merchant_keys WHERE hospital_id = d.hospital_id AND channel = '{c.value}' AND retired_at IS NULL)"
                 for c in _CHANNELS]
                + [f"(SELECT version FROM provider_keys WHERE channel = '{c.value}' AND retired_at IS NULL)" for c in _CHANNELS])
    + ", t.terminal_id FROM devices d LEFT JOIN hospitals h ON h.hospital_id = d.hospital_id "
    "LEFT JOIN terminals t ON t.device_id = d.device_id WHERE d.device_id = ? ORDER BY t.terminal_id")
_N_DEVICE_COLS = len(_DEVICE_COLS.split(","))
# KeyVersions are values: the same few (mode, versions...) rows give the same object (bounded).
_KEY_VERSIONS: dict[tuple, KeyVersions] = {}


def _key_versions(values: tuple) -> KeyVersions | None:
    """(mode, merchant versions per channel..., provider versions per channel...) as read by
    _REQUEST_DEVICE_SQL; None when the hospital row is missing."""
    keys = _KEY_VERSIONS.get(values)
    if keys is None:
        if values[0] is None:
            return None
        n = len(_CHANNELS)
        keys = KeyVersions(Mode(values[0]), {c: None if v is None else int(v) for c, v in zip(_CHANNELS, values[1:1 + n])},
                           {c: None if v is None else int(v) for c, v in zip(_CHANNELS, values[1 + n:])})
        if len(_KEY_VERSIONS) < 256:
            _KEY_VERSIONS[values] = keys
    return keys


def _terminals_of(tx: Tx, device_ids: list[str]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {d: [] for d in device_ids}
    if device_ids:
        rows = tx.all(f"SELECT device_id, terminal_id FROM terminals WHERE device_id IN ({', '.join('?' * len(device_ids))}) "
                      "ORDER BY terminal_id", device_ids)
        for device_id, terminal_id in rows:
            found[device_id].append(terminal_id)
    return {d: tuple(t) for d, t in found.items()}


def _check_id(field: str, value: str) -> str:
    if not isinstance(value, str) or not is_valid_id(value):
        raise GatewayError(GatewayCode.BAD_INPUT, f"{field} {value!r} must match [A-Za-z0-9_-]{{1,64}}")
    return value


def _check_limit(field: str, value: int | None) -> int | None:
    if value is not None and (type(value) is not int or value <= 0):
        raise GatewayError(GatewayCode.BAD_INPUT, f"{field} must be a positive number of fen")
    return value


class Directory:
    """Tenancy, credentials and the audit trail over one `Database`."""

    def __init__(self, db: Database, vault: Vault, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.vault = vault
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock())

    def _audit(self, tx: Tx, actor: str, action: str, subject: str, **detail: object) -> None:
        tx.execute(
            "INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
            (self._now(), actor, action, subject, json.dumps(detail, sort_keys=True, ensure_ascii=False)),
        )

    # --- hospitals ------------------------------------------------------------------------------

    def add_hospital(
        self,
        hospital_id: str,
        name: str,
        *,
        mode: Mode,
        actor: str,
        txn_limit_fen: int = DEFAULT_LIMIT_FEN,
        daily_limit_fen: int | None = None,
        terminal_daily_limit_fen: int | None = None,
        require_his_signature: bool = False,
        his_public_key: bytes | None = None,
    ) -> Hospital:
        _check_id("hospital_id", hospital_id)
        if not name or not name.isprintable() or len(name) > 128:
            raise GatewayError(GatewayCode.BAD_INPUT, "the hospital name must be printable text of 1..128 characters")
        _check_limit("txn_limit_fen", txn_limit_fen)
        _check_limit("daily_limit_fen", daily_limit_fen)
        _check_limit("terminal_daily_limit_fen", terminal_daily_limit_fen)
        if his_public_key is not None and len(his_public_key) != PUBLIC_KEY_SIZE:
            raise GatewayError(GatewayCode.BAD_INPUT, f"the HIS public key must be {PUBLIC_KEY_SIZE} bytes (Ed25519)")
        if require_his_signature and his_public_key is None:
            raise GatewayError(GatewayCode.BAD_INPUT, "require_his_signature needs the HIS public key (--his-public-key)")
        try:
            with self.db.transaction() as tx:
                tx.execute(
                    f"INSERT INTO hospitals ({_HOSPITAL_COLS}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (hospital_id, name, mode.value, txn_limit_fen, daily_limit_fen, terminal_daily_limit_fen,
                     int(require_his_signature), his_public_key, self._now()),
                )
                self._audit(tx, actor, "hospital.add", hospital_id, mode=mode.value, txn_limit_fen=txn_limit_fen,
                            daily_limit_fen=daily_limit_fen, terminal_daily_limit_fen=terminal_daily_limit_fen,
                            require_his_signature=require_his_signature)
        except UniqueViolation:
            raise GatewayError(GatewayCode.EXISTS, f"hospital {hospital_id} already exists") from None
        return self.hospital(hospital_id)

    def set_his_signature(self, hospital_id: str, *, required: bool, his_public_key: bytes | None, actor: str) -> Hospital:
        """Register HIS's Ed25519 public key (None keeps the current one) and turn `require_his_signature`
        on or off (HIS interface 1.1 B): with it on, a refund whose instruction HIS did not sign is refused."""
        if his_public_key is not None and len(his_public_key) != PUBLIC_KEY_SIZE:
            raise GatewayError(GatewayCode.BAD_INPUT, f"the HIS public key must be {PUBLIC_KEY_SIZE} bytes (Ed25519)")
        with self.db.transaction() as tx:
            current = self.hospital(hospital_id, tx)
            key = his_public_key if his_public_key is not None else current.his_public_key
            if required and key is None:
                raise GatewayError(GatewayCode.BAD_INPUT, "require_his_signature needs the HIS public key (--his-public-key)")
            tx.execute("UPDATE hospitals SET require_his_signature = ?, his_public_key = ? WHERE hospital_id = ?",
                       (int(required), key, hospital_id))
            self._audit(tx, actor, "hospital.his_signature", hospital_id, required=required,
                        his_public_key=key.hex() if key else None, previous_required=current.require_his_signature)
            return self.hospital(hospital_id, tx)

    def limits(self, hospital_id: str) -> HospitalLimits:
        """The hospital's per-transaction limit as its bridge and POS are provisioned with it
        (protocol.limits; `gateway-admin hospital limits`): this row is the limit's one source."""
        h = self.hospital(hospital_id)
        return HospitalLimits(h.hospital_id, h.txn_limit_fen)

    def hospital(self, hospital_id: str, tx: Tx | None = None) -> Hospital:
        sql = f"SELECT {_HOSPITAL_COLS} FROM hospitals WHERE hospital_id = ?"
        if tx is not None:
            row = tx.one(sql, (hospital_id,))
        else:
            with self.db.transaction(write=False) as rtx:
                row = rtx.one(sql, (hospital_id,))
        if row is None:
            raise GatewayError(GatewayCode.UNKNOWN_HOSPITAL, f"no hospital {hospital_id!r}; add it with gateway-admin hospital add")
        return _hospital(row)

    def set_mode(self, hospital_id: str, mode: Mode, *, actor: str) -> Hospital:
        """Switch a hospital between its own merchant accounts and sub-merchant of ours (service provider).
        Its channel credentials must then be set again for the new mode (`merchant set`)."""
        with self.db.transaction() as tx:
            current = self.hospital(hospital_id, tx)
            tx.execute("UPDATE hospitals SET mode = ? WHERE hospital_id = ?", (mode.value, hospital_id))
            self._audit(tx, actor, "hospital.mode", hospital_id, mode=mode.value, previous_mode=current.mode.value)
            return self.hospital(hospital_id, tx)

    def hospitals(self) -> list[Hospital]:
        with self.db.transaction(write=False) as tx:
            return [_hospital(r) for r in tx.all(f"SELECT {_HOSPITAL_COLS} FROM hospitals ORDER BY hospital_id")]

    # --- merchant credentials -------------------------------------------------------------------

    def set_merchant_key(self, hospital_id: str, channel: PayChannel, merchant_id: str, secrets: Mapping[str, str], *, actor: str) -> int:
        """Store the channel credentials of a hospital; a second call rotates them. The new version.

        In service_provider mode they are only what names the hospital to our provider credentials: its
        WeChat Pay sub-merchant id (`merchant_id`, with an optional {"sub_appid"}, else {}), its Alipay
        app_auth_token."""
        _check_id("merchant_id", merchant_id)
        if not isinstance(secrets, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()):
            raise GatewayError(GatewayCode.BAD_INPUT, "merchant credentials must be a JSON object of strings")
        with self.db.transaction() as tx:
            return self.put_merchant_key(tx, hospital_id, channel, merchant_id, secrets, actor=actor)

    def put_merchant_key(self, tx: Tx, hospital_id: str, channel: PayChannel, merchant_id: str, secrets: Mapping[str, str], *,
                         actor: str) -> int:
        """`set_merchant_key` inside the caller's transaction (gateway.alipay_authorizations stores a token
        pair and its own record together). The new version."""
        _check_id("merchant_id", merchant_id)
        hospital = self.hospital(hospital_id, tx)
        if not secrets and not (hospital.mode is Mode.SERVICE_PROVIDER and channel is PayChannel.WECHAT):
            raise GatewayError(GatewayCode.BAD_INPUT, "merchant credentials must be a non-empty JSON object of strings "
                               "(only a WeChat Pay sub-merchant of our service provider may have none)")
        current = tx.one(
            "SELECT version FROM merchant_keys WHERE hospital_id = ? AND channel = ? AND retired_at IS NULL" + tx.for_update,
            (hospital_id, channel.value),
        )
        last = tx.scalar("SELECT MAX(version) FROM merchant_keys WHERE hospital_id = ? AND channel = ?", (hospital_id, channel.value))
        version = int(last or 0) + 1
        now = self._now()
        if current is not None:
            tx.execute("UPDATE merchant_keys SET retired_at = ? WHERE hospital_id = ? AND channel = ? AND version = ?",
                       (now, hospital_id, channel.value, current[0]))
        sealed = self.vault.seal(json.dumps(dict(secrets), sort_keys=True).encode("utf-8"),
                                 f"merchant|{hospital_id}|{channel.value}|{version}")
        tx.execute(
            "INSERT INTO merchant_keys (hospital_id, channel, version, merchant_id, sealed, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (hospital_id, channel.value, version, merchant_id, sealed, now),
        )
        self._audit(tx, actor, "merchant_key.rotate" if current else "merchant_key.set", hospital_id,
                    channel=channel.value, merchant_id=merchant_id, version=version,
                    retired_version=current[0] if current else None, fields=sorted(secrets))
        return version

    def audit(self, tx: Tx, actor: str, action: str, subject: str, **detail: object) -> None:
        """Record an admin action in the caller's transaction (never a secret in `detail`)."""
        self._audit(tx, actor, action, subject, **detail)

    def merchant_key_version(self, hospital_id: str, channel: PayChannel) -> tuple[Mode, int | None]:
        """The hospital's mode and the current version of its credentials for `channel` (None: none),
        in one read: what a cached channel client is checked against on every request."""
        with self.db.reads() as tx:  # every request
            row = tx.one("SELECT h.mode, k.version FROM hospitals h LEFT JOIN merchant_keys k ON k.hospital_id = h.hospital_id "
                         "AND k.channel = ? AND k.retired_at IS NULL WHERE h.hospital_id = ?", (channel.value, hospital_id))
        if row is None:
            raise GatewayError(GatewayCode.UNKNOWN_HOSPITAL, f"no hospital {hospital_id!r}; add it with gateway-admin hospital add")
        return Mode(row[0]), None if row[1] is None else int(row[1])

    def merchant_id(self, hospital_id: str, channel: PayChannel) -> str:
        """The current credentials' merchant id (stored in the clear: nothing is opened)."""
        with self.db.transaction(write=False) as tx:
            row = tx.one("SELECT merchant_id FROM merchant_keys WHERE hospital_id = ? AND channel = ? AND retired_at IS NULL",
                         (hospital_id, channel.value))
        if row is None:
            raise GatewayError(GatewayCode.NO_MERCHANT, f"hospital {hospital_id} has no {channel.value} merchant credentials")
        return str(row[0])

    def merchant_key(self, hospital_id: str, channel: PayChannel) -> MerchantKey:
        with self.db.transaction(write=False) as tx:
            row = tx.one(
                "SELECT version, merchant_id, sealed FROM merchant_keys WHERE hospital_id = ? AND channel = ? AND retired_at IS NULL",
                (hospital_id, channel.value),
            )
        if row is None:
            raise GatewayError(GatewayCode.NO_MERCHANT, f"hospital {hospital_id} has no {channel.value} merchant credentials")
        version, merchant_id, sealed = int(row[0]), row[1], bytes(row[2])
        secrets = json.loads(self.vault.open(sealed, f"merchant|{hospital_id}|{channel.value}|{version}"))
        return MerchantKey(hospital_id, channel, version, merchant_id, secrets)

    # --- service-provider credentials --------------------------------------------------------------

    def set_provider_key(self, channel: PayChannel, merchant_id: str, secrets: Mapping[str, str], *, actor: str) -> int:
        """Store the provider's own credentials for `channel` (Alipay: the third-party application);
        a second call rotates them, for every hospital in service_provider mode at once. The new version."""
        _check_id("merchant_id", merchant_id)
        if not isinstance(secrets, Mapping) or not secrets or not all(isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()):
            raise GatewayError(GatewayCode.BAD_INPUT, "provider credentials must be a non-empty JSON object of strings")
        with self.db.transaction() as tx:
            current = tx.one("SELECT version FROM provider_keys WHERE channel = ? AND retired_at IS NULL" + tx.for_update, (channel.value,))
            version = int(tx.scalar("SELECT MAX(version) FROM provider_keys WHERE channel = ?", (channel.value,)) or 0) + 1
            now = self._now()
            if current is not None:
                tx.execute("UPDATE provider_keys SET retired_at = ? WHERE channel = ? AND version = ?", (now, channel.value, current[0]))
            sealed = self.vault.seal(json.dumps(dict(secrets), sort_keys=True).encode("utf-8"), f"provider|{channel.value}|{version}")
            tx.execute("INSERT INTO provider_keys (channel, version, merchant_id, sealed, created_at) VALUES (?, ?, ?, ?, ?)",
                       (channel.value, version, merchant_id, sealed, now))
            self._audit(tx, actor, "provider_key.rotate" if current else "provider_key.set", channel.value, merchant_id=merchant_id,
                        version=version, retired_version=current[0] if current else None, fields=sorted(secrets))
        return version

    def provider_key_version(self, channel: PayChannel) -> int | None:
        with self.db.transaction(write=False) as tx:
            row = tx.one("SELECT version FROM provider_keys WHERE channel = ? AND retired_at IS NULL", (channel.value,))
        return None if row is None else int(row[0])

    def provider_key(self, channel: PayChannel) -> MerchantKey:
        """The provider's current credentials (hospital_id "" in the record: they are no hospital's)."""
        with self.db.transaction(write=False) as tx:
            row = tx.one("SELECT version, merchant_id, sealed FROM provider_keys WHERE channel = ? AND retired_at IS NULL", (channel.value,))
        if row is None:
            raise GatewayError(GatewayCode.NO_MERCHANT, f"no service-provider {channel.value} credentials; store them with gateway-admin provider set")
        version, merchant_id, sealed = int(row[0]), row[1], bytes(row[2])
        secrets = json.loads(self.vault.open(sealed, f"provider|{channel.value}|{version}"))
        return MerchantKey("", channel, version, merchant_id, secrets)

    def rewrap_vault(self, *, actor: str) -> dict[str, int]:
        """Seal again, under the vault's current master key, every value sealed under a previous one
        (merchant credentials of every version, HIS keys): one transaction, audited. Rows rewrapped."""
        counts = {"merchant_keys": 0, "his_keys": 0, "provider_keys": 0, "wechat_platform_certs": 0}
        with self.db.transaction() as tx:
            for hospital_id, channel, version, sealed in tx.all(
                    "SELECT hospital_id, channel, version, sealed FROM merchant_keys" + tx.for_update):
                if self.vault.is_current(bytes(sealed)):
                    continue
                where = f"merchant|{hospital_id}|{channel}|{version}"
                tx.execute("UPDATE merchant_keys SET sealed = ? WHERE hospital_id = ? AND channel = ? AND version = ?",
                           (self.vault.seal(self.vault.open(bytes(sealed), where), where), hospital_id, channel, version))
                counts["merchant_keys"] += 1
            for hospital_id, kid, sealed in tx.all("SELECT hospital_id, kid, sealed FROM his_keys" + tx.for_update):
                if self.vault.is_current(bytes(sealed)):
                    continue
                where = f"his|{hospital_id}|{kid}"
                tx.execute("UPDATE his_keys SET sealed = ? WHERE hospital_id = ? AND kid = ?",
                           (self.vault.seal(self.vault.open(bytes(sealed), where), where), hospital_id, kid))
                counts["his_keys"] += 1
            for channel, version, sealed in tx.all("SELECT channel, version, sealed FROM provider_keys" + tx.for_update):
                if self.vault.is_current(bytes(sealed)):
                    continue
                where = f"provider|{channel}|{version}"
                tx.execute("UPDATE provider_keys SET sealed = ? WHERE channel = ? AND version = ?",
                           (self.vault.seal(self.vault.open(bytes(sealed), where), where), channel, version))
                counts["provider_keys"] += 1
            # WeChat Pay platform certificates the gateway downloaded
            from gateway.wechat_certificates import sealed_where  # it imports this module

            for mchid, serial, sealed in tx.all("SELECT mchid, serial_no, sealed FROM wechat_platform_certs" + tx.for_update):
                if self.vault.is_current(bytes(sealed)):
                    continue
                where = sealed_where(mchid, serial)
                tx.execute("UPDATE wechat_platform_certs SET sealed = ? WHERE mchid = ? AND serial_no = ?",
                           (self.vault.seal(self.vault.open(bytes(sealed), where), where), mchid, serial))
                counts["wechat_platform_certs"] += 1
            self._audit(tx, actor, "vault.rewrap", "master_key", to_key_id=self.vault.key_id.hex(), **counts)
        return counts

    # --- HIS envelope keys ----------------------------------------------------------------------

    def add_his_keys(self, hospital_id: str, keys: KeyRing, *, actor: str) -> list[str]:
        """Store (or replace) the hospital's HIS envelope keys, as read from its his-keys-v1 file."""
        kids = []
        with self.db.transaction() as tx:
            self.hospital(hospital_id, tx)
            for key in keys:
                sealed = self.vault.seal(key.secret, f"his|{hospital_id}|{key.kid}")
                tx.execute("DELETE FROM his_keys WHERE hospital_id = ? AND kid = ?", (hospital_id, key.kid))
                tx.execute(
                    "INSERT INTO his_keys (hospital_id, kid, suite, sealed, retired, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (hospital_id, key.kid, key.suite, sealed, int(key.retired), self._now()),
                )
                kids.append(key.kid)
            self._audit(tx, actor, "his_keys.set", hospital_id, kids=kids)
        return kids

    def his_keyring(self, hospital_id: str) -> KeyRing:
        with self.db.transaction(write=False) as tx:
            rows = tx.all("SELECT kid, suite, sealed, retired FROM his_keys WHERE hospital_id = ? ORDER BY kid", (hospital_id,))
        keys = []
        for kid, suite, sealed, retired in rows:
            if suite not in SUITES:
                raise GatewayError(GatewayCode.BAD_CONFIG, f"hospital {hospital_id}: HIS key {kid} has unknown suite {suite}")
            keys.append(SharedKey(kid, suite, self.vault.open(bytes(sealed), f"his|{hospital_id}|{kid}"), bool(retired)))
        return KeyRing(keys)

    # --- terminals and devices ------------------------------------------------------------------

    def import_terminals(self, hospital_id: str, csv_text: str, *, actor: str, source: str = "terminal CSV") -> int:
        """Add the hospital's terminal list (step 2); rows naming a device bind it. Rows imported."""
        try:
            records = parse_terminal_csv(csv_text, source)
        except RegistryError as exc:
            raise GatewayError(GatewayCode.BAD_INPUT, str(exc)) from None
        with self.db.transaction() as tx:
            self.hospital(hospital_id, tx)
            for record in records:
                try:
                    tx.execute("INSERT INTO terminals (hospital_id, terminal_id, description, created_at) VALUES (?, ?, ?, ?)",
                               (hospital_id, record.terminal_id, record.description, self._now()))
                except UniqueViolation:
                    raise GatewayError(GatewayCode.EXISTS, f"{source}: terminal {record.terminal_id} is already registered for {hospital_id}") from None
            self._audit(tx, actor, "terminals.import", hospital_id, count=len(records), terminal_ids=[r.terminal_id for r in records])
            for record in records:
                if record.device_id:
                    self._bind(tx, record.device_id, record.terminal_id, actor, hospital_id=hospital_id)
        return len(records)

    def terminals(self, hospital_id: str) -> list[tuple[str, str]]:
        """(terminal_id, description) of the hospital's terminals."""
        with self.db.transaction(write=False) as tx:
            return [(r[0], r[1]) for r in tx.all("SELECT terminal_id, description FROM terminals WHERE hospital_id = ? ORDER BY terminal_id",
                                                 (hospital_id,))]

    def import_devices(self, hospital_id: str, csv_text: str, *, actor: str, source: str = "device CSV") -> int:
        """Add devices from our device records (device_id,model,serial_no,public_key). Rows imported."""
        try:
            records = parse_device_csv(csv_text, source)
        except RegistryError as exc:
            raise GatewayError(GatewayCode.BAD_INPUT, str(exc)) from None
        missing = [r.device_id for r in records if r.public_key is None]
        if missing:
            raise GatewayError(GatewayCode.BAD_INPUT, f"{source}: no public_key for {', '.join(missing)}; the gateway checks every request with it")
        with self.db.transaction() as tx:
            self.hospital(hospital_id, tx)
            for r in records:
                try:
                    tx.execute(
                        "INSERT INTO devices (device_id, hospital_id, model, serial_no, public_key, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (r.device_id, hospital_id, r.model, r.serial_no, r.public_key, DeviceStatus.ACTIVE.value, self._now()),
                    )
                except UniqueViolation:
                    raise GatewayError(GatewayCode.EXISTS, f"{source}: device {r.device_id} is already registered") from None
            self._audit(tx, actor, "devices.import", hospital_id, count=len(records), device_ids=[r.device_id for r in records])
        return len(records)

    def _device_row(self, tx: Tx, device_id: str, *, lock: bool = False) -> Device:
        row = tx.one(f"SELECT {_DEVICE_COLS} FROM devices WHERE device_id = ?" + (tx.for_update if lock else ""), (device_id,))
        if row is None:
            raise GatewayError(GatewayCode.UNKNOWN_DEVICE, f"no device {device_id!r}; import the device records first")
        return _device(row, _terminals_of(tx, [device_id])[device_id])

    def _bind(self, tx: Tx, device_id: str, terminal_id: str, actor: str, *, hospital_id: str | None = None) -> None:
        device = self._device_row(tx, device_id, lock=True)
        if hospital_id is not None and device.hospital_id != hospital_id:
            raise GatewayError(GatewayCode.WRONG_TERMINAL, f"device {device_id} belongs to hospital {device.hospital_id}, not {hospital_id}")
        if tx.one("SELECT 1 FROM terminals WHERE hospital_id = ? AND terminal_id = ?", (device.hospital_id, terminal_id)) is None:
            raise GatewayError(GatewayCode.UNKNOWN_TERMINAL, f"hospital {device.hospital_id} has no terminal {terminal_id}; import its terminal list first")
        # The terminal row is locked: two admins binding it at once cannot both see it free.
        holder = tx.one("SELECT device_id FROM terminals WHERE hospital_id = ? AND terminal_id = ?" + tx.for_update,
                        (device.hospital_id, terminal_id))
        if holder is None:
            raise GatewayError(GatewayCode.UNKNOWN_TERMINAL, f"hospital {device.hospital_id} has no terminal {terminal_id}; import its terminal list first")
        if holder[0] == device_id:
            return
        if holder[0] is not None:
            raise GatewayError(GatewayCode.EXISTS, f"terminal {terminal_id} is bound to device {holder[0]}; unbind or disable that one first")
        tx.execute("UPDATE terminals SET device_id = ? WHERE hospital_id = ? AND terminal_id = ?", (device_id, device.hospital_id, terminal_id))
        self._audit(tx, actor, "device.bind", device_id, hospital_id=device.hospital_id, terminal_id=terminal_id,
                    terminal_ids=[*device.terminal_ids, terminal_id])

    def bind_device(self, device_id: str, terminal_id: str, *, actor: str) -> Device:
        """The device serves `terminal_id` too (a device may serve several terminals; a terminal has one device)."""
        with self.db.transaction() as tx:
            self._bind(tx, device_id, terminal_id, actor)
            return self._device_row(tx, device_id)

    def unbind_device(self, device_id: str, terminal_id: str, *, actor: str) -> Device:
        """The device no longer serves `terminal_id` (its other terminals stay)."""
        with self.db.transaction() as tx:
            device = self._device_row(tx, device_id, lock=True)
            if terminal_id not in device.terminal_ids:
                raise GatewayError(GatewayCode.WRONG_TERMINAL, f"device {device_id} does not serve terminal {terminal_id}")
            tx.execute("UPDATE terminals SET device_id = NULL WHERE hospital_id = ? AND terminal_id = ? AND device_id = ?",
                       (device.hospital_id, terminal_id, device_id))
            self._audit(tx, actor, "device.unbind", device_id, hospital_id=device.hospital_id, terminal_id=terminal_id)
            return self._device_row(tx, device_id)

    def disable_device(self, device_id: str, *, reason: str, actor: str) -> Device:
        """Refused from its next request on; the terminal it held is freed for a replacement."""
        if not reason or not reason.isprintable() or len(reason) > 200:
            raise GatewayError(GatewayCode.BAD_INPUT, "say why the device is disabled (printable text, at most 200 characters)")
        with self.db.transaction() as tx:
            device = self._device_row(tx, device_id, lock=True)
            tx.execute("UPDATE devices SET status = ?, disabled_reason = ? WHERE device_id = ?", (DeviceStatus.DISABLED.value, reason, device_id))
            tx.execute("UPDATE terminals SET device_id = NULL WHERE device_id = ?", (device_id,))
            self._audit(tx, actor, "device.disable", device_id, hospital_id=device.hospital_id, terminal_ids=list(device.terminal_ids),
                        reason=reason)
            return self._device_row(tx, device_id)

    def enable_device(self, device_id: str, *, actor: str) -> Device:
        with self.db.transaction() as tx:
            device = self._device_row(tx, device_id, lock=True)
            tx.execute("UPDATE devices SET status = ?, disabled_reason = NULL WHERE device_id = ?", (DeviceStatus.ACTIVE.value, device_id))
            self._audit(tx, actor, "device.enable", device_id, hospital_id=device.hospital_id)
            return self._device_row(tx, device_id)

    def device(self, device_id: str) -> Device:
        """The device and its terminals in one statement (every request: no BEGIN/COMMIT either)."""
        with self.db.reads() as tx:
            rows = tx.all(f"SELECT {_DEVICE_D_COLS}, t.terminal_id FROM devices d LEFT JOIN terminals t ON t.device_id = d.device_id "
                          "WHERE d.device_id = ? ORDER BY t.terminal_id", (device_id,))
        if not rows:
            raise GatewayError(GatewayCode.UNKNOWN_DEVICE, f"no device {device_id!r}; import the device records first")
        return _device(rows[0][:-1], tuple(r[-1] for r in rows if r[-1] is not None))

    def device_for_request(self, device_id: str) -> Device:
        """`device`, and in the same statement its hospital's `KeyVersions` (`Device.keys`): a
        request's reads in one (a disabled device, a new credentials version: seen from the next one)."""
        with self.db.reads() as tx:
            rows = tx.all(_REQUEST_DEVICE_SQL, (device_id,))
        if not rows:
            raise GatewayError(GatewayCode.UNKNOWN_DEVICE, f"no device {device_id!r}; import the device records first")
        first, n = rows[0], _N_DEVICE_COLS
        return _device(first, tuple(r[-1] for r in rows if r[-1] is not None), _key_versions(tuple(first[n:-1])))

    def devices(self, hospital_id: str | None = None) -> list[Device]:
        with self.db.transaction(write=False) as tx:
            if hospital_id is None:
                rows = tx.all(f"SELECT {_DEVICE_COLS} FROM devices ORDER BY device_id")
            else:
                rows = tx.all(f"SELECT {_DEVICE_COLS} FROM devices WHERE hospital_id = ? ORDER BY device_id", (hospital_id,))
            bindings: dict[str, list[str]] = {r[0]: [] for r in rows}
            sql = "SELECT device_id, terminal_id FROM terminals WHERE device_id IS NOT NULL"
            for device_id, terminal_id in tx.all(sql + (" AND hospital_id = ?" if hospital_id else "") + " ORDER BY terminal_id",
                                                 (hospital_id,) if hospital_id else ()):
                bindings.setdefault(device_id, []).append(terminal_id)
        return [_device(r, tuple(bindings[r[0]])) for r in rows]

    def record_contact(self, device_id: str, *, firmware_version: str | None, at: int | None = None) -> None:
        """What the device said about itself on its last authenticated request."""
        with self.db.transaction() as tx:
            tx.execute("UPDATE devices SET last_seen_at = ?, firmware_version = COALESCE(?, firmware_version) WHERE device_id = ?",
                       (self._now() if at is None else at, firmware_version, device_id))

    def audit_log(self, *, limit: int = 100) -> list[tuple[int, str, str, str, dict]]:
        with self.db.transaction(write=False) as tx:
            rows = tx.all("SELECT at, actor, action, subject, detail FROM audit ORDER BY audit_id DESC LIMIT ?", (limit,))
        return [(int(at), actor, action, subject, json.loads(detail)) for at, actor, action, subject, detail in rows]
