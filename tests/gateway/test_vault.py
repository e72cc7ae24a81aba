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
