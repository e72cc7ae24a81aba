"""Hospitals -> terminals -> devices, sealed credentials and the audit trail, on both databases."""

from __future__ import annotations

import os

import pytest

from gateway.errors import GatewayCode, GatewayError
from gateway.tenancy import DeviceStatus, Directory, Mode
from gateway.vault import Vault
from protocol.crypto import KeyRing, SharedKey
from protocol.messages import PayChannel
from protocol.registry import DeviceRecord, format_device_csv, parse_device_csv
from tests.gateway.fleet import ACTOR, make_fleet

WECHAT_SECRETS = {"api_key": "a" * 32, "cert_pem": "-----BEGIN CERTIFICATE-----x", "key_pem": "-----BEGIN PRIVATE KEY-----y"}


def test_devices_and_terminals_import_and_bind(db) -> None:
    fleet = make_fleet(db, devices=2)
    d = fleet.directory.device("H001-POS1")
    assert (d.hospital_id, d.terminal_ids, d.status) == ("H001", ("T0001",), DeviceStatus.ACTIVE)
    assert d.public_key == parse_device_csv(format_device_csv([DeviceRecord("x", "m", "s", d.public_key)]))[0].public_key
    # One device per terminal.
    with pytest.raises(GatewayError) as info:
        fleet.directory.bind_device("H001-POS2", "T0001", actor=ACTOR)
    assert info.value.code is GatewayCode.EXISTS and "H001-POS1" in info.value.message
    with pytest.raises(GatewayError) as info:
        fleet.directory.bind_device("H001-POS2", "T0404", actor=ACTOR)
    assert info.value.code is GatewayCode.UNKNOWN_TERMINAL


def test_a_device_cannot_be_bound_to_another_hospitals_terminal(db) -> None:
    fleet = make_fleet(db)
    make_fleet(db, hospital_id="H002", vault=fleet.directory.vault, devices=1)
    fleet.directory.disable_device("H002-POS1", reason="test", actor=ACTOR)
    # H002's T0001 is free now; H001's device still cannot take it: binding stays within a hospital.
    fleet.directory.disable_device("H001-POS1", reason="test", actor=ACTOR)
    d = fleet.directory.bind_device("H001-POS2", "T0001", actor=ACTOR)
    assert (d.hospital_id, d.terminal_ids) == ("H001", ("T0001", "T0002"))


def test_a_device_may_serve_several_terminals_a_terminal_has_one_device(db) -> None:
    fleet = make_fleet(db, devices=2)
    directory = fleet.directory
    directory.import_terminals("H001", "terminal_id,description,device_id\r\nT0003,window 1 (inpatient),H001-POS1\r\n", actor=ACTOR)
    assert directory.device("H001-POS1").terminal_ids == ("T0001", "T0003")
    assert {d.device_id: d.terminal_ids for d in directory.devices("H001")} == {"H001-POS1": ("T0001", "T0003"), "H001-POS2": ("T0002",)}
    with pytest.raises(GatewayError) as info:
        directory.bind_device("H001-POS2", "T0003", actor=ACTOR)
    assert info.value.code is GatewayCode.EXISTS and "H001-POS1" in info.value.message
    assert directory.unbind_device("H001-POS1", "T0003", actor=ACTOR).terminal_ids == ("T0001",)
    assert directory.bind_device("H001-POS2", "T0003", actor=ACTOR).terminal_ids == ("T0002", "T0003")
    with pytest.raises(GatewayError) as info:
        directory.unbind_device("H001-POS1", "T0003", actor=ACTOR)
    assert info.value.code is GatewayCode.WRONG_TERMINAL
    assert [e[2] for e in directory.audit_log(limit=3)] == ["device.bind", "device.unbind", "device.bind"]


def test_migration_4_keeps_the_bindings_made_before_it(raw_db) -> None:
    from gateway.migrations import LATEST, migrate

    migrate(raw_db, upto=2)
    with raw_db.transaction() as tx:  # a version-2 database: the binding was the device's terminal_id
        tx.execute("INSERT INTO hospitals (hospital_id, name, mode, txn_limit_fen, created_at) VALUES ('H1', 'x', 'direct', 100, 0)")
        tx.execute("INSERT INTO terminals (hospital_id, terminal_id, description, created_at) VALUES ('H1', 'T1', 'w', 0)")
        tx.execute("INSERT INTO terminals (hospital_id, terminal_id, description, created_at) VALUES ('H1', 'T2', 'w', 0)")
        tx.execute("INSERT INTO devices (device_id, hospital_id, model, serial_no, public_key, terminal_id, status, created_at) "
                   "VALUES ('D1', 'H1', 'P2', 'S1', ?, 'T1', 'active', 0)", (bytes(32),))
    assert migrate(raw_db) == LATEST
    directory = Directory(raw_db, Vault(os.urandom(32)))
    assert directory.device("D1").terminal_ids == ("T1",)
    assert directory.bind_device("D1", "T2", actor=ACTOR).terminal_ids == ("T1", "T2")


def test_device_csv_without_public_keys_is_refused(db) -> None:
    fleet = make_fleet(db, devices=0)
    without_key = format_device_csv([DeviceRecord("POS9", "P2", "SN9", None)])
    with pytest.raises(GatewayError) as info:
        fleet.directory.import_devices("H001", without_key, actor=ACTOR)
    assert info.value.code is GatewayCode.BAD_INPUT and "POS9" in info.value.message
    with pytest.raises(GatewayError) as info:
        fleet.directory.import_devices("H001", "device_id,model\nX,Y\n", actor=ACTOR)
    assert info.value.code is GatewayCode.BAD_INPUT and "line 1" in info.value.message


def test_disabling_a_device_frees_its_terminal_and_is_audited(db) -> None:
    fleet = make_fleet(db)
    d = fleet.directory.disable_device("H001-POS1", reason="stolen from the hall", actor="alice")
    assert (d.status, d.terminal_ids, d.disabled_reason) == (DeviceStatus.DISABLED, (), "stolen from the hall")
    fleet.directory.bind_device("H001-POS2", "T0001", actor=ACTOR)
    at, actor, action, subject, detail = [e for e in fleet.directory.audit_log() if e[2] == "device.disable"][0]
    assert (actor, subject, detail["terminal_ids"], detail["reason"]) == ("alice", "H001-POS1", ["T0001"], "stolen from the hall")


def test_merchant_credentials_are_sealed_and_rotate(db) -> None:
    fleet = make_fleet(db)
    directory = fleet.directory
    assert directory.set_merchant_key("H001", PayChannel.WECHAT, "1900000109", WECHAT_SECRETS, actor="alice") == 1
    new = dict(WECHAT_SECRETS, api_key="b" * 32)
    assert directory.set_merchant_key("H001", PayChannel.WECHAT, "1900000109", new, actor="bob") == 2
    key = directory.merchant_key("H001", PayChannel.WECHAT)
    assert (key.version, key.merchant_id, key.secrets["api_key"]) == (2, "1900000109", "b" * 32)
    assert "b" * 32 not in repr(key)
    with db.transaction(write=False) as tx:
        rows = tx.all("SELECT version, sealed, retired_at IS NULL FROM merchant_keys ORDER BY version")
        dump = repr(tx.all("SELECT * FROM merchant_keys")) + repr(tx.all("SELECT * FROM audit"))
    assert [(v, current) for v, _, current in rows] == [(1, False), (2, True)]
    for secret in ("a" * 32, "b" * 32, "BEGIN PRIVATE KEY"):
        assert secret not in dump and secret.encode() not in b"".join(bytes(r[1]) for r in rows)
    actions = [(e[1], e[2], e[4]["version"]) for e in directory.audit_log() if e[2].startswith("merchant_key")]
    assert actions == [("bob", "merchant_key.rotate", 2), ("alice", "merchant_key.set", 1)]
    # Another master key cannot open them, and says so.
    with pytest.raises(GatewayError) as info:
        Directory(db, Vault(os.urandom(32))).merchant_key("H001", PayChannel.WECHAT)
    assert info.value.code is GatewayCode.MASTER_KEY and "another master key" in info.value.message
    with pytest.raises(GatewayError) as info:
        directory.merchant_key("H001", PayChannel.ALIPAY)
    assert info.value.code is GatewayCode.NO_MERCHANT


def test_a_sealed_credential_moved_to_another_row_does_not_open(db) -> None:
    fleet = make_fleet(db)
    fleet.directory.set_merchant_key("H001", PayChannel.WECHAT, "1900000109", WECHAT_SECRETS, actor=ACTOR)
    fleet.directory.set_merchant_key("H001", PayChannel.ALIPAY, "2021000000000001", {"private_key_pem": "k"}, actor=ACTOR)
    with db.transaction() as tx:
        sealed = tx.scalar("SELECT sealed FROM merchant_keys WHERE channel = 'WECHAT'")
        tx.execute("UPDATE merchant_keys SET sealed = ? WHERE channel = 'ALIPAY'", (bytes(sealed),))
    with pytest.raises(GatewayError) as info:
        fleet.directory.merchant_key("H001", PayChannel.ALIPAY)
    assert info.value.code is GatewayCode.MASTER_KEY and "moved" in info.value.message


def test_his_keys_are_sealed_and_come_back_as_a_keyring(db) -> None:
    fleet = make_fleet(db)
    secret = os.urandom(32)
    fleet.directory.add_his_keys("H001", KeyRing([SharedKey("k2026a", "AES-256-GCM", secret)]), actor=ACTOR)
    ring = fleet.directory.his_keyring("H001")
    assert ring.key_for("k2026a", "AES-256-GCM").secret == secret
    with db.transaction(write=False) as tx:
        assert secret not in bytes(tx.scalar("SELECT sealed FROM his_keys"))


def test_hospital_settings_are_checked(db) -> None:
    directory = Directory(db, Vault(os.urandom(32)))
    for kwargs, code in (
        (dict(hospital_id="H 1"), GatewayCode.BAD_INPUT),
        (dict(txn_limit_fen=0), GatewayCode.BAD_INPUT),
        (dict(require_his_signature=True), GatewayCode.BAD_INPUT),
    ):
        args = dict(hospital_id="H001", name="x", mode=Mode.DIRECT, actor=ACTOR) | kwargs
        with pytest.raises(GatewayError) as info:
            directory.add_hospital(args.pop("hospital_id"), args.pop("name"), **args)
        assert info.value.code is code
    directory.add_hospital("H001", "x", mode=Mode.SERVICE_PROVIDER, actor=ACTOR)
    with pytest.raises(GatewayError) as info:
        directory.add_hospital("H001", "x", mode=Mode.DIRECT, actor=ACTOR)
    assert info.value.code is GatewayCode.EXISTS
    assert [e[2] for e in directory.audit_log()] == ["hospital.add"]


def test_last_contact_and_firmware_are_recorded(db) -> None:
    fleet = make_fleet(db)
    fleet.directory.record_contact("H001-POS1", firmware_version="1.4.2", at=1_780_000_000)
    fleet.directory.record_contact("H001-POS1", firmware_version=None, at=1_780_000_060)
    d = fleet.directory.device("H001-POS1")
    assert (d.last_seen_at, d.firmware_version) == (1_780_000_060, "1.4.2")


def test_a_requests_device_read_carries_its_hospitals_credentials_versions(db) -> None:
    """What a request's one read gives the channel clients' cache: every change of credentials, mode
    or device status shows in the next read (no read is kept between requests)."""
    fleet = make_fleet(db)
    directory = fleet.directory
    first = directory.device_for_request("H001-POS1")
    assert first == directory.device("H001-POS1") and first.terminal_ids == directory.device("H001-POS1").terminal_ids
    assert first.keys is not None and first.keys.mode is Mode.DIRECT
    assert all(v is None for v in (*first.keys.merchant.values(), *first.keys.provider.values()))
    directory.set_merchant_key("H001", PayChannel.WECHAT, "1900000109", WECHAT_SECRETS, actor="alice")
    directory.set_merchant_key("H001", PayChannel.WECHAT, "1900000109", dict(WECHAT_SECRETS, api_key="b" * 32), actor="alice")
    directory.set_provider_key(PayChannel.ALIPAY, "2088000000000001", {"app_id": "2021000000000001"}, actor="alice")
    directory.set_mode("H001", Mode.SERVICE_PROVIDER, actor="alice")
    keys = directory.device_for_request("H001-POS1").keys
    assert keys is not None and keys.mode is Mode.SERVICE_PROVIDER
    assert (keys.merchant[PayChannel.WECHAT], keys.merchant[PayChannel.ALIPAY], keys.provider[PayChannel.ALIPAY]) == (2, None, 1)
    directory.disable_device("H001-POS1", reason="stolen", actor="alice")
    assert directory.device_for_request("H001-POS1").status is DeviceStatus.DISABLED
    with pytest.raises(GatewayError) as info:
        directory.device_for_request("H001-POS9")
    assert info.value.code is GatewayCode.UNKNOWN_DEVICE
