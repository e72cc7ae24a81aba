"""`gateway-admin` as an operator runs it: a real process, a real database, every action audited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.admin import main
from protocol.crypto import SharedKey
from protocol.keyfile import format_keyfile
from protocol.registry import DeviceRecord, format_device_csv
from protocol.signing import public_key


@pytest.fixture
def site(tmp_path, monkeypatch):
    key = tmp_path / "master.key"
    monkeypatch.setenv("GATEWAY_DB", f"sqlite:{tmp_path}/gw.db")
    monkeypatch.setenv("GATEWAY_MASTER_KEY_FILE", str(key))
    monkeypatch.delenv("GATEWAY_MASTER_KEY", raising=False)
    assert main(["master-key", "new", str(key)]) == 0
    assert main(["migrate"]) == 0
    (tmp_path / "devices.csv").write_text(format_device_csv([
        DeviceRecord("POS-0001", "P2", "SN1", public_key(os.urandom(32))),
        DeviceRecord("POS-0002", "P2", "SN2", public_key(os.urandom(32)))]))
    (tmp_path / "terminals.csv").write_text("terminal_id,description,device_id\r\nT0001,window 1,POS-0001\r\nT0002,window 2,\r\n")
    (tmp_path / "wechat.json").write_text(json.dumps({"api_key": "S3CRET-v1-" + "x" * 22}))
    (tmp_path / "wechat2.json").write_text(json.dumps({"api_key": "S3CRET-v2-" + "y" * 22}))
    (tmp_path / "keys.json").write_text(format_keyfile([SharedKey("k1", "AES-256-GCM", os.urandom(32))]))
    return tmp_path


def test_onboarding_a_hospital_end_to_end(site, capsys) -> None:
    run = lambda *argv: main(["--actor", "alice", *argv])  # noqa: E731
    assert run("hospital", "add", "H001", "--name", "City Hospital", "--mode", "direct", "--txn-limit", "2000.00",
               "--daily-limit", "100000.00") == 0
    assert run("merchant", "set", "H001", "wechat", "--merchant-id", "1900000109", "--credentials", str(site / "wechat.json")) == 0
    assert run("merchant", "rotate", "H001", "wechat", "--credentials", str(site / "wechat2.json")) == 0
    assert run("his-keys", "set", "H001", str(site / "keys.json")) == 0
    assert run("devices", "import", "H001", str(site / "devices.csv")) == 0
    assert run("terminals", "import", "H001", str(site / "terminals.csv")) == 0
    assert run("device", "bind", "POS-0002", "T0002") == 0
    assert run("device", "disable", "POS-0001", "--reason", "stolen from the hall") == 0
    capsys.readouterr()
    assert run("hospital", "his-signature", "H001", "--require") == 1  # no HIS key registered yet
    assert "needs the HIS public key" in capsys.readouterr().err
    assert run("hospital", "his-signature", "H001", "--require", "--his-public-key", public_key(bytes(32)).hex()) == 0
    assert "his_sig required" in capsys.readouterr().out
    assert run("hospital", "list") == 0
    assert "his_sig required" in capsys.readouterr().out
    assert run("device", "show", "POS-0001") == 0
    shown = capsys.readouterr().out
    assert "disabled (stolen from the hall)" in shown and "last contact never" in shown and "firmware unknown" in shown
    assert run("audit") == 0
    audit = capsys.readouterr().out
    for action in ("hospital.add", "merchant_key.set", "merchant_key.rotate", "his_keys.set", "devices.import",
                   "terminals.import", "device.bind", "device.disable", "hospital.his_signature"):
        assert f"alice  {action}" in audit
    assert "S3CRET" not in audit
    assert b"S3CRET" not in (site / "gw.db").read_bytes()


def test_refusals_are_one_line_with_the_reason(site, capsys) -> None:
    assert main(["device", "disable", "POS-9", "--reason", "x"]) == 1
    assert "unknown_device" in capsys.readouterr().err
    assert main(["hospital", "add", "H001", "--name", "x", "--mode", "direct", "--txn-limit", "12.5"]) == 1
    assert "exactly two decimals" in capsys.readouterr().err
    os.chmod(site / "master.key", 0o644)
    assert main(["hospital", "list"]) == 1
    assert "chmod 600" in capsys.readouterr().err


def test_an_unmigrated_database_is_named(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("GATEWAY_MASTER_KEY", "00" * 32)
    assert main(["--db", f"sqlite:{tmp_path}/new.db", "hospital", "list"]) == 1
    assert "gateway-admin --db" in capsys.readouterr().err


def test_the_console_script_runs(site) -> None:
    exe = Path(sys.executable).with_name("gateway-admin")
    proc = subprocess.run([str(exe), "hospital", "add", "H9", "--name", "N", "--mode", "service_provider"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "added hospital H9 (service_provider)" in proc.stdout


def test_rotating_the_master_key(site, capsys, monkeypatch) -> None:
    """master-key new, then vault rewrap with the previous key: the database opens with the new key alone."""
    assert main(["hospital", "add", "H001", "--name", "City", "--mode", "direct"]) == 0
    assert main(["merchant", "set", "H001", "wechat", "--merchant-id", "1900000109", "--credentials", str(site / "wechat.json")]) == 0
    assert main(["his-keys", "set", "H001", str(site / "keys.json")]) == 0
    old, new = site / "master.key", site / "master-2027.key"
    assert main(["master-key", "new", str(new)]) == 0
    monkeypatch.setenv("GATEWAY_MASTER_KEY_FILE", str(new))
    assert main(["hospital", "list"]) == 0  # reading tenancy needs no secret
    capsys.readouterr()
    assert main(["merchant", "rotate", "H001", "wechat", "--credentials", str(site / "wechat2.json")]) == 0  # sealed under the new key
    assert main(["vault", "rewrap"]) == 1  # v1 and the HIS keys are under the old key: it must be given
    assert "GATEWAY_PREVIOUS_MASTER_KEY_FILE" in capsys.readouterr().err
    assert main(["--previous-master-key-file", str(old), "vault", "rewrap"]) == 0
    assert "1 merchant credential(s), 1 HIS key(s), 0 provider credential(s)" in capsys.readouterr().out
    from gateway.db import open_database
    from gateway.tenancy import Directory
    from gateway.vault import Vault, read_master_key_file
    from protocol.messages import PayChannel

    directory = Directory(open_database(f"sqlite:{site}/gw.db"), Vault(read_master_key_file(new)))
    assert directory.merchant_key("H001", PayChannel.WECHAT).secrets["api_key"].startswith("S3CRET-v2")
    assert len(list(directory.his_keyring("H001"))) == 1
    assert main(["audit"]) == 0 and "vault.rewrap" in capsys.readouterr().out


def test_onboarding_a_sub_merchant_of_our_provider_account(site, capsys) -> None:
    """WeChat Pay service-provider mode: our own keys once (`provider set wechat`), then each hospital's
    sub-merchant id, with no secret of its own; the provider's secrets are sealed and never printed."""
    run = lambda *argv: main(["--actor", "alice", *argv])  # noqa: E731
    (site / "sp.json").write_text(json.dumps({"appid": "wx1", "api_key": "SPSECRET" + "z" * 24}))
    (site / "sub.json").write_text(json.dumps({"sub_appid": "wx2"}))
    assert run("hospital", "add", "H002", "--name", "Town Hospital", "--mode", "direct") == 0
    assert run("merchant", "set", "H002", "wechat", "--merchant-id", "1900000109") == 1
    assert "--credentials" in capsys.readouterr().err  # a direct merchant has keys of its own
    assert run("hospital", "set", "H002", "--mode", "service_provider") == 0
    assert run("provider", "set", "wechat", "--merchant-id", "1900000100", "--credentials", str(site / "sp.json")) == 0
    assert run("merchant", "set", "H002", "wechat", "--merchant-id", "1900000109") == 0
    assert "merchant 1900000109: credentials version 1" in capsys.readouterr().out
    assert run("merchant", "rotate", "H002", "wechat", "--merchant-id", "1900000111", "--credentials", str(site / "sub.json")) == 0
    assert "credentials version 2" in capsys.readouterr().out
    assert run("provider", "set", "wechat", "--merchant-id", "1900000100", "--credentials", str(site / "sp.json")) == 0
    assert "version 2 is current" in capsys.readouterr().out
    assert run("audit") == 0
    audit = capsys.readouterr().out
    for action in ("provider_key.set", "provider_key.rotate", "hospital.mode", "merchant_key.rotate"):
        assert f"alice  {action}" in audit
    assert "SPSECRET" not in audit and b"SPSECRET" not in (site / "gw.db").read_bytes()


def test_the_hospital_limit_is_the_one_source_for_the_bridge_and_the_pos(site, capsys) -> None:
    """Issue 11 item 2: the per-transaction limit is set once, in the gateway; the file it exports
    provisions the bridge ([security] limits_file) and the POS (pos-flash provision config --limits)."""
    from bridge.config import load_config
    from posflash import provision

    assert main(["--actor", "alice", "hospital", "add", "H001", "--name", "City", "--mode", "direct", "--txn-limit", "2000.00"]) == 0
    assert main(["hospital", "limits", "H001", "--out", str(site / "limits.json")]) == 0
    assert "per-payment limit 2000.00" in capsys.readouterr().out
    assert main(["hospital", "limits", "H001"]) == 0
    assert json.loads(capsys.readouterr().out)["per_transaction"] == "2000.00"
    (site / "config.toml").write_text('[security]\nlimits_file = "limits.json"\n', encoding="utf-8")
    assert load_config(site / "config.toml").security.amount_limit_fen == 2000_00
    assert provision.limit_from_file(site / "limits.json") == "2000.00"
    assert main(["hospital", "limits", "H404"]) == 1
    assert "no hospital 'H404'" in capsys.readouterr().err
