"""his-bridge: init, keys, registries, check, health, ports, and serve with a clean SIGTERM stop."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from protocol import signing
from protocol.registry import DeviceRecord, format_device_csv

from bridge.cli import main
from tests.bridge.conftest import World, wait_until


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_writes_a_working_directory_and_never_overwrites(tmp_path: Path, capsys) -> None:
    code, out, _ = run(capsys, "init", str(tmp_path / "b"), "--kid", "k2026a")
    assert code == 0 and "fingerprint" in out
    keys = json.loads((tmp_path / "b" / "keys.json").read_text())
    assert keys["keys"][0]["key_hex"] not in out  # the key itself is never printed
    assert stat.S_IMODE((tmp_path / "b" / "keys.json").stat().st_mode) == 0o600
    config = str(tmp_path / "b" / "config.toml")
    assert run(capsys, "--config", config, "check")[0] == 0
    code, _, err = run(capsys, "init", str(tmp_path / "b"))
    assert code == 1 and "never overwrites" in err


def test_keys_new_list_retire_and_the_permission_check(tmp_path: Path, capsys) -> None:
    run(capsys, "init", str(tmp_path), "--kid", "k1")
    config = str(tmp_path / "config.toml")
    code, out, _ = run(capsys, "--config", config, "keys", "new", "--kid", "k2", "--suite", "SM4-GCM")
    assert code == 0 and "fingerprint" in out and "key_hex" not in out
    code, out, _ = run(capsys, "--config", config, "keys", "new", "--kid", "k3", "--suite", "AES-256-GCM", "--show")
    secret = next(k["key_hex"] for k in json.loads((tmp_path / "keys.json").read_text())["keys"] if k["kid"] == "k3")
    assert f"key_hex {secret}" in out
    assert run(capsys, "--config", config, "keys", "new", "--kid", "k2", "--suite", "SM4-GCM")[0] == 1  # never replaced
    assert run(capsys, "--config", config, "keys", "retire", "k2")[0] == 0
    code, out, _ = run(capsys, "--config", config, "keys", "list")
    lines = {line.split()[0]: line.split()[-1] for line in out.splitlines()[1:]}
    assert lines == {"k1": "active", "k2": "retired", "k3": "active"}
    assert secret not in out
    os.chmod(tmp_path / "keys.json", 0o644)
    code, _, err = run(capsys, "--config", config, "keys", "list")
    assert code == 1 and f"chmod 600 {tmp_path / 'keys.json'}" in err


def test_device_and_terminal_registries(tmp_path: Path, capsys) -> None:
    run(capsys, "init", str(tmp_path))
    config = str(tmp_path / "config.toml")
    records = [DeviceRecord(f"D-SN-{i}", "P8", f"SN{i}", signing.public_key(os.urandom(32))) for i in range(2)]
    (tmp_path / "records.csv").write_text(format_device_csv(records))
    assert run(capsys, "--config", config, "devices", "import", str(tmp_path / "records.csv"))[1] == "devices: 2 added, 0 updated\n"
    assert run(capsys, "--config", config, "devices", "export", "--for-his", str(tmp_path / "his.csv"))[0] == 0
    # his-interface 1.1 A: HIS gets the public keys too (it verifies every result's `sig` with them).
    keys = [base64.b64encode(r.public_key).decode() for r in records]
    assert (tmp_path / "his.csv").read_text().splitlines() == ["device_id,model,serial_no,public_key",
                                                               f"D-SN-0,P8,SN0,{keys[0]}", f"D-SN-1,P8,SN1,{keys[1]}"]
    (tmp_path / "nokeys.csv").write_text("device_id,model,serial_no\nD-X,P8,SNX\n")
    code, _, err = run(capsys, "--config", config, "devices", "import", str(tmp_path / "nokeys.csv"))
    assert code == 1 and "no public_key for D-X" in err

    (tmp_path / "his-terminals.csv").write_text("terminal_id,description\nT0001,门诊一楼 1号窗口\nT0002,window 2\n", encoding="utf-8")
    assert run(capsys, "--config", config, "terminals", "import", str(tmp_path / "his-terminals.csv"))[0] == 0
    assert run(capsys, "--config", config, "terminals", "bind", "T0001", "D-SN-0")[0] == 0
    code, _, err = run(capsys, "--config", config, "terminals", "bind", "T0002", "D-NOPE")
    assert code == 1 and "not in the device registry" in err
    assert run(capsys, "--config", config, "terminals", "import", str(tmp_path / "his-terminals.csv"))[0] == 0
    code, out, _ = run(capsys, "--config", config, "terminals", "list")
    assert "T0001                D-SN-0" in out and "(not bound)" in out  # re-import kept the binding
    assert run(capsys, "--config", config, "check")[0] == 0


def test_bad_configuration_names_the_setting(tmp_path: Path, capsys) -> None:
    (tmp_path / "config.toml").write_text("[http]\nport = 99999\n")
    code, _, err = run(capsys, "--config", str(tmp_path / "config.toml"), "check")
    assert code == 1 and "config.toml: [http] port = 99999 is not a port (1-65535)" in err


def test_health_and_ports(world: World, capsys) -> None:
    responder = world.responder()
    endpoint = world.endpoint("tcp", responder)
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    code, out, _ = run(capsys, "health", "--url", bridge.url)
    assert code == 0 and json.loads(out)["devices"][0]["device_id"] == "D1"
    code, _, err = run(capsys, "health", "--url", "http://127.0.0.1:9")
    assert code == 1 and "is the service running?" in err
    assert run(capsys, "ports")[0] == 0


def test_help_everywhere(capsys) -> None:
    for argv in ([], ["keys"], ["devices"], ["terminals"], ["serve"], ["init"], ["keys", "new"]):
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0
        assert "usage: his-bridge" in capsys.readouterr().out


def test_serve_runs_until_sigterm_and_stops_cleanly(world: World, bridge_process) -> None:
    responder = world.responder()
    endpoint = world.endpoint("pty", responder)
    process = bridge_process(world.write_config([endpoint.bridge_url])).start()
    wait_until(lambda: process.health()["status"] == "ok", what="device up")
    assert process.terminate() == 0
    events = [line.get("event") for line in world.log_lines()]
    assert events.index("bridge_stopping") < events.index("bridge_stopped")
    assert all(json.dumps(line) for line in world.log_lines())  # one JSON object a line, all of them


def test_config_option_after_the_command(tmp_path: Path, capsys) -> None:
    run(capsys, "init", str(tmp_path))
    code, out, _ = run(capsys, "check", "--config", str(tmp_path / "config.toml"))
    assert code == 0 and "OK" in out
    assert run(capsys, "keys", "list", "--config", str(tmp_path / "config.toml"))[0] == 0
