"""The master key: where it comes from, file permissions, what a sealed value binds."""

from __future__ import annotations

import os

import pytest

from gateway.errors import GatewayCode, GatewayError
from gateway.vault import Vault, vault_from_env, write_master_key_file


def test_seal_binds_the_value_to_its_place() -> None:
    vault = Vault(os.urandom(32))
    sealed = vault.seal(b"api-key", "merchant|H001|WECHAT|1")
    assert b"api-key" not in sealed
    assert vault.open(sealed, "merchant|H001|WECHAT|1") == b"api-key"
    for where, blob in (("merchant|H002|WECHAT|1", sealed), ("merchant|H001|WECHAT|1", sealed[:-1] + bytes([sealed[-1] ^ 1]))):
        with pytest.raises(GatewayError) as info:
            vault.open(blob, where)
        assert info.value.code is GatewayCode.MASTER_KEY


def test_the_key_file_must_be_private(tmp_path) -> None:
    path = tmp_path / "master.key"
    write_master_key_file(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    vault = vault_from_env({}, key_file=path)
    assert vault_from_env({"GATEWAY_MASTER_KEY_FILE": str(path)}).key_id == vault.key_id
    with pytest.raises(GatewayError) as info:
        write_master_key_file(path)
    assert info.value.code is GatewayCode.EXISTS
    path.chmod(0o644)
    with pytest.raises(GatewayError) as info:
        vault_from_env({}, key_file=path)
    assert "chmod 600" in info.value.message


def test_the_key_from_the_environment(tmp_path) -> None:
    key = os.urandom(32)
    assert vault_from_env({"GATEWAY_MASTER_KEY": key.hex()}).key_id == Vault(key).key_id
    for env in ({}, {"GATEWAY_MASTER_KEY": "zz"}, {"GATEWAY_MASTER_KEY": "00" * 16}):
        with pytest.raises(GatewayError) as info:
            vault_from_env(env)
        assert info.value.code is GatewayCode.MASTER_KEY
        assert key.hex() not in info.value.message
    assert key.hex() not in repr(Vault(key))


def test_a_vault_opens_what_its_previous_key_sealed_and_seals_under_the_new_one() -> None:
    old, new = Vault(os.urandom(32)), os.urandom(32)
    sealed = old.seal(b"api-key", "his|H001|k1")
    both = Vault(new, previous=[old_key_bytes(old)])
    assert both.open(sealed, "his|H001|k1") == b"api-key"
    assert both.is_current(both.seal(b"x", "w")) and not both.is_current(sealed)
    with pytest.raises(GatewayError) as info:
        Vault(new).open(sealed, "his|H001|k1")
    assert info.value.code is GatewayCode.MASTER_KEY and "previous" in info.value.message


def old_key_bytes(vault: Vault) -> bytes:
    return vault._key  # the test made it; a real old key comes from its 0600 file


def test_rewrap_moves_every_sealed_value_to_the_new_master_key(db) -> None:
    """`gateway-admin vault rewrap`: every merchant credential and HIS key is sealed again under the new
    master key in one audited transaction; afterwards the new key alone opens them all."""
    from protocol.crypto import KeyRing, SharedKey
    from protocol.messages import PayChannel
    from tests.gateway.fleet import ACTOR, make_fleet

    old_key, new_key = os.urandom(32), os.urandom(32)
    fleet = make_fleet(db, vault=Vault(old_key))
    fleet.directory.set_merchant_key("H001", PayChannel.WECHAT, "1900000109", {"api_key": "K" * 32}, actor=ACTOR)
    fleet.directory.set_merchant_key("H001", PayChannel.WECHAT, "1900000109", {"api_key": "L" * 32}, actor=ACTOR)  # v1 retired
    fleet.directory.add_his_keys("H001", KeyRing([SharedKey("k1", "AES-256-GCM", bytes(32))]), actor=ACTOR)
    from gateway.tenancy import Directory

    rotating = Directory(db, Vault(new_key, previous=[old_key]))
    from gateway.channels.wechat_v3_certs import PlatformCertificate
    from gateway.wechat_certificates import DatabaseCertificateStore

    DatabaseCertificateStore(db, fleet.directory.vault, "1900000109").save([PlatformCertificate("5A", 1, 2, "-----BEGIN CERTIFICATE-----")],
                                                                            signed_by="5A")
    assert rotating.rewrap_vault(actor="alice") == {"merchant_keys": 2, "his_keys": 1, "provider_keys": 0, "wechat_platform_certs": 1}
    assert rotating.rewrap_vault(actor="alice") == {"merchant_keys": 0, "his_keys": 0, "provider_keys": 0,
                                                    "wechat_platform_certs": 0}  # nothing left under the old key
    assert [c.serial_no for c in DatabaseCertificateStore(db, Vault(new_key), "1900000109").load()] == ["5A"]
    only_new = Directory(db, Vault(new_key))
    assert only_new.merchant_key("H001", PayChannel.WECHAT).secrets == {"api_key": "L" * 32}
    assert [k.secret for k in only_new.his_keyring("H001") if k.kid == "k1"] == [bytes(32)]
    _, actor, action, _, detail = only_new.audit_log(limit=1)[0]
    assert (actor, action, detail["to_key_id"]) == ("alice", "vault.rewrap", Vault(new_key).key_id.hex())
