"""Provisioning on the engineer's PC: device records (from the device's own public record), the CSV
for HIS, configuration images; and the whole field-engineer flow through `pos-sim init` and the
`pos-flash` CLI onto a device served over loopback TCP. The device's side (its identity and key,
made on the device) is tests/terminal/test_identity.py."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
from pathlib import Path

import pytest

from protocol.crypto import KeyRing, SharedKey
from protocol.flash import FlashCode, FlashError
from protocol.keyfile import format_keyfile
from protocol.registry import DeviceRecord, parse_device_csv
from terminal import pin as pins
from terminal.config import parse_config

from firmware_sim import cli as sim_cli
from firmware_sim.demo_setup import provision_device
from posflash import cli as flash_cli
from posflash import provision
from terminal.identity import ProvisionedDevice, load_identity
from firmware_sim.bootloader import Bootloader
from firmware_sim.bootservice import BootService, config_checker, default_self_test, run_boot_sequence
from terminal.link.endpoint import DeviceEndpoint
from terminal.link.tcp_wire import TcpWire
from protocol.image import PartKind, parse_image
from firmware_sim.responder import Responder
from protocol.trust import TrustStore
from protocol.sealed_config import open_config
from posflash.signing_keys import format_private
from firmware_sim.storage import DeviceStorage
from tests.protocol.test_image import MODEL, RELEASE, TRUST

KEYS = format_keyfile([SharedKey("k2026a", "AES-256-GCM", bytes(range(32)))])
TERMINALS = ("terminal_id,description,device_id\r\nT0001,门诊收费1号窗口,D-SN0001\r\n"
             "T0002,门诊收费2号窗口,D-SN0002\r\nT0003,住院结算窗口,\r\n")


def _new(tmp_path: Path, serial: str = "SN0001", **kwargs) -> ProvisionedDevice:
    """The device makes its identity (pos-sim init), the engineer adds its public record."""
    return provision_device(tmp_path / serial, tmp_path / "devices.csv", model=MODEL, serial_no=serial, trust=TRUST,
                            **kwargs)


def test_a_new_device_is_recorded_with_its_own_public_key(tmp_path):
    device = _new(tmp_path)
    assert device.device_id == "D-SN0001"
    second = _new(tmp_path, "SN0002", device_id="CASHIER-2", usb_pid="7d02")
    records = parse_device_csv((tmp_path / "devices.csv").read_text())
    assert [r.device_id for r in records] == ["D-SN0001", "CASHIER-2"]
    assert records[0].public_key == device.public_key and records[1].public_key == second.public_key
    assert load_identity(second.directory).usb_pid == 0x7D02
    # The records hold public keys only: no seed of either device is anywhere in them.
    text = (tmp_path / "devices.csv").read_text()
    assert device.device_key_seed.hex() not in text and second.device_key_seed.hex() not in text


def test_the_records_never_replace_an_identity(tmp_path):
    _new(tmp_path)
    with pytest.raises(FlashError) as info:
        _new(tmp_path)  # same directory
    assert info.value.code is FlashCode.EXISTS
    with pytest.raises(FlashError) as info:
        _new(tmp_path, "SN0001x", device_id="D-SN0001")  # another device claiming a listed device_id
    assert info.value.code is FlashCode.EXISTS and "already lists" in info.value.message
    assert not (tmp_path / "SN0001x" / "device_key").exists()  # nothing half-enrolled stays behind
    other = DeviceRecord("D-OTHER", MODEL, "SN0001", bytes(32))  # a listed serial number
    with pytest.raises(FlashError) as info:
        provision.add_device(tmp_path / "devices.csv", other)
    assert info.value.code is FlashCode.EXISTS and "already lists" in info.value.message
    with pytest.raises(FlashError) as info:
        provision.add_device(tmp_path / "devices.csv", DeviceRecord("D-NOKEY", MODEL, "SN0099"))
    assert info.value.code is FlashCode.BAD_INPUT and "public_key" in info.value.message


def test_export_for_his_carries_the_device_public_key_in_base64(tmp_path):
    device = _new(tmp_path)
    text = provision.export_his(tmp_path / "devices.csv")
    key = base64.b64encode(device.public_key).decode()
    assert text == f"device_id,model,serial_no,public_key\r\nD-SN0001,HP-S1,SN0001,{key}\r\n"
    with pytest.raises(FlashError):
        provision.export_his(tmp_path / "none.csv")


def test_config_document_from_the_his_terminal_csv():
    record = DeviceRecord("D-SN0001", MODEL, "SN0001")
    pin_hash = provision.hash_supervisor_pin("246810")
    doc = provision.build_config_document(device=record, merchant_name="示例市人民医院", terminals_csv=TERMINALS,
                                          keys_text=KEYS, gateway={"url": "http://127.0.0.1:8443"}, pin_hash=pin_hash, limit_yuan="5000.00")
    config = parse_config(doc)
    # T0002 is bound to another device; T0003 to none (any device may serve it).
    assert [t.terminal_id for t in config.terminals] == ["T0001", "T0003"]
    assert config.limit_fen == 500_000 and config.device.device_id == "D-SN0001"
    assert b"246810" not in doc and pins.verify_pin("246810", config.supervisor.pin_hash)
    assert list(config.keys)[0].kid == "k2026a"


@pytest.mark.parametrize("change, fragment", [
    ({"terminals_csv": "terminal_id,description,device_id\r\nT0002,x,D-OTHER\r\n"}, "no terminal for device"),
    ({"terminals_csv": "terminal,description\r\n"}, "header must be"),
    ({"keys_text": '{"format": "his-keys-v1", "keys": [{"kid": "k", "suite": "AES-256-GCM", "key_hex": "00"}]}'}, "key_hex"),
    ({"limit_yuan": "5000"}, "per_transaction"),
])
def test_config_document_refusals_name_the_input(change, fragment):
    args = dict(device=DeviceRecord("D-SN0001", MODEL, "SN0001"), merchant_name="医院", terminals_csv=TERMINALS,
                keys_text=KEYS, gateway={"url": "http://127.0.0.1:8443"}, pin_hash=provision.hash_supervisor_pin("246810"))
    args.update(change)
    with pytest.raises(FlashError) as info:
        provision.build_config_document(**args)
    assert info.value.code is FlashCode.BAD_INPUT and fragment in info.value.message


def test_supervisor_pin_must_be_digits():
    with pytest.raises(FlashError) as info:
        provision.hash_supervisor_pin("12ab")
    assert info.value.code is FlashCode.BAD_INPUT


def test_field_engineer_flow_through_the_cli(tmp_path, monkeypatch, capsys):
    """keygen, host-key new -> pos-sim init (on the device) -> provision add-device -> export-his -> provision config
    -> flash -> info."""
    monkeypatch.chdir(tmp_path)
    assert flash_cli.main(["host-key", "new", "--name", "kit-07", "--out", "keys/pos-flash"]) == 0
    if os.name == "posix":
        assert stat.S_IMODE(Path("keys/pos-flash.key").stat().st_mode) == 0o600
        assert stat.S_IMODE(Path("keys").stat().st_mode) == 0o700  # made for a private key: nobody else's
    assert flash_cli.main(["keygen", "--role", "release", "--key-id", "rel-2026", "--out", "keys/release"]) == 0
    assert flash_cli.main(["keygen", "--role", "override", "--key-id", "eng-2026", "--out", "keys/override"]) == 0
    assert flash_cli.main(["keygen", "--role", "release", "--key-id", "again", "--out", "keys/release"]) == flash_cli.EXIT_FAIL
    assert "exists" in capsys.readouterr().err
    assert sim_cli.main(["init", "--storage", "dev1", "--model", MODEL, "--serial", "SN0001", "--trust", "keys/release.pub",
                         "--trust", "keys/override.pub", "--host-key", "keys/pos-flash.pub", "--record-out", "dev1.csv"]) == 0
    assert "dev1/device_key" not in Path("dev1.csv").read_text() and "PRIVATE" not in Path("dev1.csv").read_text()
    assert flash_cli.main(["provision", "add-device", "--records", "devices.csv", "--record", "dev1.csv"]) == 0
    assert flash_cli.main(["provision", "add-device", "--records", "devices.csv", "--record", "dev1.csv"]) == flash_cli.EXIT_FAIL
    assert "already lists" in capsys.readouterr().err
    assert flash_cli.main(["provision", "export-his", "--records", "devices.csv", "-o", "his-devices.csv"]) == 0
    assert Path("his-devices.csv").read_text().splitlines()[0] == "device_id,model,serial_no,public_key"
    Path("terminals.csv").write_text(TERMINALS, encoding="utf-8")
    Path("keys.json").write_text(KEYS)
    monkeypatch.setattr("sys.stdin", io.StringIO("246810\n"))
    assert flash_cli.main(["provision", "config", "--records", "devices.csv", "--device-id", "D-SN0001",
                           "--terminals", "terminals.csv", "--keys", "keys.json", "--gateway-url", "http://127.0.0.1:8443",
                           "--merchant-name", "示例市人民医院", "--limit", "5000.00", "--pin-stdin",
                           "--key", "keys/release.key", "--version", "cfg-2026.11.23", "--counter", "1", "-o", "dev1.cfg.img"]) == 0
    out = capsys.readouterr().out
    assert "2 terminals (T0001, T0003)" in out and "246810" not in Path("dev1.cfg.img").read_text("latin-1")
    # Finding 1: the shared key was in every configuration image in hex; now it is sealed to the device.
    image_text = Path("dev1.cfg.img").read_text("latin-1")
    assert bytes(range(32)).hex() not in image_text and "k2026a" not in image_text
    if os.name == "posix":
        assert stat.S_IMODE(Path("dev1.cfg.img").stat().st_mode) == 0o600
    image = parse_image(Path("dev1.cfg.img").read_bytes())
    assert image.manifest.device_id == "D-SN0001" and image.manifest.kinds == (PartKind.CONFIG,)
    assert flash_cli.main(["inspect-image", "dev1.cfg.img", "--trust", "keys/release.pub"]) == 0
    assert "signature: valid (release key rel-2026)" in capsys.readouterr().out

    device = load_identity(Path("dev1"))
    boot = Bootloader(DeviceStorage(device.directory), model=device.model, device_id=device.device_id,
                      check_config=config_checker(device.model, device.device_id, device.config_key))
    test = default_self_test(device.device_id, device.model, device.config_key)
    state = {"running": run_boot_sequence(boot, test)}
    endpoint = DeviceEndpoint(TcpWire(), Responder(KeyRing([]), device.device_id, device_key_seed=device.device_key_seed), identity=device.identity("boot"),
                              device_key_seed=device.device_key_seed, host_trust=device.host_trust,
                              boot_handler=BootService(boot, reboot=lambda why: state.update(running=run_boot_sequence(boot, test))))
    endpoint.start()
    try:
        port = ["--port", endpoint.bridge_url, "--devices", "devices.csv", "--host-key", "keys/pos-flash.key"]
        assert flash_cli.main(["flash", *port, "dev1.cfg.img"]) == 0
        assert "confirmed healthy" in capsys.readouterr().out
        assert state["running"].config_version == "cfg-2026.11.23"
        assert b"k2026a" not in state["running"].config  # the keys are sealed to the device, in the slot too
        plain = open_config(state["running"].config, device_id=device.device_id, device_private=device.config_key)
        assert parse_config(plain).merchant_name == "示例市人民医院"
        assert flash_cli.main(["info", *port]) == 0
        assert "config cfg-2026.11.23 (counter 1, key rel-2026)" in capsys.readouterr().out
    finally:
        endpoint.stop()


def test_build_zips_an_app_directory_deterministically(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    app = tmp_path / "app"
    (app / "pkg").mkdir(parents=True)
    (app / "pkg" / "__init__.py").write_text("VERSION = '1.0.0'\n")
    (app / "main.py").write_text("print('hello')\n")
    key = tmp_path / "release.key"
    key.write_text(format_private(RELEASE))
    key.chmod(0o600)
    common = ["build", "--key", str(key), "--model", MODEL, "--version", "1.0.0", "--counter", "1", "--app", str(app)]
    assert flash_cli.main([*common, "-o", "a.img"]) == 0 and flash_cli.main([*common, "-o", "b.img"]) == 0
    assert flash_cli.main([*common, "-o", "a.img"]) == flash_cli.EXIT_FAIL  # never overwrites without --force
    apps = [parse_image(Path(n).read_bytes()).part(PartKind.APP) for n in ("a.img", "b.img")]
    assert apps[0] == apps[1] and apps[0].startswith(b"PK")
    assert flash_cli.main([*common, "-o", "a.img", "--force"]) == 0
    capsys.readouterr()


def test_config_document_with_an_admin_pin_opens_the_settings():
    """Finding 3 of issue 16: the settings (and English) could never be opened, because nothing could
    put an admin PIN into a configuration."""
    supervisor, admin = provision.hash_pins("246810", "135790")
    doc = provision.build_config_document(device=DeviceRecord("D-SN0001", MODEL, "SN0001"), merchant_name="医院",
                                          terminals_csv=TERMINALS, keys_text=KEYS, gateway={"url": "http://127.0.0.1:8443"}, pin_hash=supervisor,
                                          admin_pin_hash=admin)
    config = parse_config(doc)
    assert config.admin_pin_hash is not None and pins.verify_pin("135790", config.admin_pin_hash)
    assert not pins.verify_pin("246810", config.admin_pin_hash) and b"135790" not in doc
    without = parse_config(provision.build_config_document(device=DeviceRecord("D-SN0001", MODEL, "SN0001"), merchant_name="医院",
                                                           terminals_csv=TERMINALS, keys_text=KEYS, gateway={"url": "http://127.0.0.1:8443"}, pin_hash=supervisor))
    assert without.admin_pin_hash is None


@pytest.mark.parametrize("admin, fragment", [("246810", "must differ from the supervisor PIN"), ("12", "admin PIN")])
def test_a_bad_admin_pin_is_refused_with_its_name(admin, fragment):
    with pytest.raises(FlashError) as info:
        provision.hash_pins("246810", admin)
    assert info.value.code is FlashCode.BAD_INPUT and fragment in info.value.message


def test_the_demo_configuration_has_an_admin_pin(tmp_path):
    from firmware_sim import demo_setup

    signing = demo_setup.ensure_signing_key(tmp_path / "signing")
    hosts = demo_setup.ensure_host_keys(tmp_path / "hosts")
    device = demo_setup.ensure_device(tmp_path / "device", tmp_path / "records.csv", signing, hosts=hosts.pins())
    image = demo_setup.configuration_image(device, tmp_path / "records.csv", signing, keys_text=KEYS, gateway={"url": "http://127.0.0.1:8443"},
                                           terminals_csv=demo_setup.terminals_csv((demo_setup.DEMO_TERMINAL,), device.device_id))
    sealed = parse_image(image).part(PartKind.CONFIG)
    config = parse_config(open_config(sealed, device_id=device.device_id, device_private=device.config_key))
    assert pins.verify_pin(demo_setup.DEMO_ADMIN_PIN, config.admin_pin_hash)
    assert pins.verify_pin(demo_setup.DEMO_PIN, config.supervisor.pin_hash)


def test_the_cli_sets_an_admin_pin_and_hashes_a_pin(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert flash_cli.main(["keygen", "--role", "release", "--key-id", "rel-2026", "--out", "release"]) == 0
    assert sim_cli.main(["init", "--storage", "dev1", "--model", MODEL, "--serial", "SN0001", "--trust", "release.pub",
                         "--record-out", "dev1.csv"]) == 0
    assert flash_cli.main(["provision", "add-device", "--records", "devices.csv", "--record", "dev1.csv"]) == 0
    Path("terminals.csv").write_text(TERMINALS, encoding="utf-8")
    Path("keys.json").write_text(KEYS)
    config = ["provision", "config", "--records", "devices.csv", "--device-id", "D-SN0001", "--terminals", "terminals.csv",
              "--keys", "keys.json", "--gateway-url", "http://127.0.0.1:8443", "--merchant-name", "医院", "--pin-stdin", "--admin-pin", "--key", "release.key",
              "--version", "cfg-1", "--counter", "1", "-o", "dev1.cfg.img"]
    monkeypatch.setattr("sys.stdin", io.StringIO("246810\n246810\n"))  # the same PIN twice: refused
    assert flash_cli.main(config) == flash_cli.EXIT_FAIL
    assert "must differ from the supervisor PIN" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("246810\n135790\n"))  # supervisor, then admin
    assert flash_cli.main(config) == 0
    out = capsys.readouterr().out
    assert "admin PIN set" in out and "135790" not in out
    sealed = parse_image(Path("dev1.cfg.img").read_bytes()).part(PartKind.CONFIG)
    device = load_identity(Path("dev1"))
    document = open_config(sealed, device_id=device.device_id, device_private=device.config_key)
    assert pins.verify_pin("135790", parse_config(document).admin_pin_hash)

    monkeypatch.setattr("sys.stdin", io.StringIO("135790\n"))
    assert flash_cli.main(["provision", "hash-pin", "--stdin"]) == 0
    line = capsys.readouterr().out.strip()
    assert pins.verify_pin("135790", pins.parse_pin_hash(line)) and "135790" not in line


def test_the_device_limit_comes_from_the_hospitals_limits_file(tmp_path):
    """Issue 11 item 2: `--limits` takes the hospital's limit from the file the gateway exports."""
    (tmp_path / "limits.json").write_text('{"format": "hospital-limits-v1", "hospital_id": "H001", "per_transaction": "2000.00"}')
    doc = provision.build_config_document(device=DeviceRecord("D-SN0001", MODEL, "SN0001"), merchant_name="医院", terminals_csv=TERMINALS,
                                          keys_text=KEYS, gateway={"url": "http://127.0.0.1:8443"},
                                          pin_hash=provision.hash_supervisor_pin("246810"),
                                          limit_yuan=provision.limit_from_file(tmp_path / "limits.json"))
    assert parse_config(doc).limit_fen == 2000_00
    (tmp_path / "bad.json").write_text('{"format": "his-device-config-v1"}')
    for name, fragment in (("bad.json", "gateway-admin hospital limits"), ("none.json", "cannot read limits file")):
        with pytest.raises(FlashError) as info:
            provision.limit_from_file(tmp_path / name)
        assert info.value.code is FlashCode.BAD_INPUT and fragment in str(info.value)
