"""The device configuration document: strict, self-describing, every error names its field."""

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.keyfile import format_keyfile
from protocol.messages import PayChannel
from terminal.config import DeviceConfigError, Polling, dump_config, load_config, parse_config, parse_print_command
from tests.terminal.helpers import KEY, OLD_KEY, PIN_HASH, make_config
from tests.tlscerts import ca_pem

GATEWAY_CA = ca_pem()


def document(**changes):
    doc = {
        "format": "his-device-config-v1",
        "config_version": 3,
        "comment": "门诊收费 1 号窗口",
        "device": {"device_id": "D-SN-000123", "model": "HIS-POS-1", "serial_no": "SN000123"},
        "merchant": {"name": "示例市人民医院", "name_en": "Example City Hospital"},
        "keys": json.loads(format_keyfile([KEY, OLD_KEY])),
        "terminals": [{"terminal_id": "T0001", "description": "门诊收费1号窗口"}],
        "limits": {"per_transaction": "5000.00"},
        "freshness": {"instruction_skew_s": 86400, "msg_id_memory_s": 172800},
        "supervisor": {"pin_hash": PIN_HASH, "max_wrong_tries": 5, "lockout_s": 300},
        "gateway": {"url": "https://gw.example.cn", "pinned_cert": GATEWAY_CA},
        "polling": {"WECHAT": {"query_interval_s": 2, "pay_deadline_s": 45.5}},
        "printer": {"command": "lp -d 'thermal 58' {png}"},
    }
    for path, value in changes.items():
        target = doc
        *parents, last = path.split("__")
        for p in parents:
            target = target[p]
        if value is ...:
            del target[last]
        else:
            target[last] = value
    return json.dumps(doc, ensure_ascii=False)


def test_a_full_document_parses():
    cfg = parse_config(document())
    assert cfg.device.device_id == "D-SN-000123"
    assert cfg.limit_fen == 500000
    assert cfg.instruction_skew_s == 86400 and cfg.msg_id_memory_s == 172800
    assert cfg.has_terminal("T0001") and not cfg.has_terminal("T0002")
    assert cfg.polling[PayChannel.WECHAT] == Polling(2.0, 45.5)
    assert cfg.keys.key_for("k2026a", "AES-256-GCM").secret == KEY.secret
    assert cfg.gateway is not None and cfg.gateway.url == "https://gw.example.cn" and "BEGIN CERTIFICATE" in cfg.gateway.pinned_cert
    assert cfg.config_version == 3
    assert cfg.printer is not None and cfg.printer.command == "lp -d 'thermal 58' {png}"
    assert cfg.printer.argv == ("lp", "-d", "thermal 58", "{png}")
    assert cfg.printer.args_for("/var/pos/receipt 1.png") == ["lp", "-d", "thermal 58", "/var/pos/receipt 1.png"]


def test_defaults_skew_follows_the_msg_id_memory():
    cfg = parse_config(document(freshness=..., limits=..., polling=..., comment=..., config_version=..., printer=...))
    assert cfg.msg_id_memory_s == 86400 and cfg.instruction_skew_s == 86400
    assert cfg.limit_fen == 50_000_00
    assert cfg.polling == {}
    assert cfg.printer is None
    assert "printer" not in dump_config(cfg)


def test_round_trip_through_dump():
    cfg = parse_config(document())
    again = parse_config(dump_config(cfg))
    assert dump_config(again) == dump_config(cfg)
    assert again.printer == cfg.printer
    assert dump_config(make_config()).startswith("{")


@pytest.mark.parametrize(("changes", "names"), [
    ({"format": "his-device-config-v2"}, "format"),
    ({"device__device_id": "D 1"}, "device.device_id"),
    ({"device__serial_no": ...}, "device.serial_no is missing"),
    ({"device__colour": "red"}, "unknown field 'colour'"),
    ({"terminals": []}, "terminals"),
    ({"terminals": [{"terminal_id": "T1", "description": "a"}, {"terminal_id": "T1", "description": "b"}]}, "terminals[1].terminal_id"),
    ({"limits__per_transaction": "5000"}, "limits.per_transaction"),
    ({"limits__per_transaction": "0.00"}, "limits.per_transaction"),
    ({"freshness__instruction_skew_s": 200000}, "must not exceed msg_id_memory_s"),
    ({"freshness__msg_id_memory_s": 3600}, "freshness.msg_id_memory_s"),
    ({"freshness__msg_id_memory_s": True}, "freshness.msg_id_memory_s"),
    ({"supervisor__pin_hash": "1234"}, "supervisor.pin_hash"),
    ({"supervisor__max_wrong_tries": 0}, "supervisor.max_wrong_tries"),
    ({"polling__WECHAT__query_interval_s": 0}, "polling.WECHAT.query_interval_s"),
    ({"polling__WEIXIN": {}}, "unknown field 'WEIXIN'"),
    ({"keys": ...}, "keys"),
    ({"keys_file": "keys.json"}, "exactly one"),
    ({"keys__keys": []}, "no active"),
    ({"channels": {"wechat": {"api_key": "k"}}}, "channels: a POS holds no channel settings or secrets"),
    ({"gateway__pinned_cert": ...}, "an https gateway needs pinned_cert"),
    ({"gateway__url": "http://gw.example.cn"}, "plain http:// is only for a gateway on this machine"),
    ({"gateway__url": "ftp://gw"}, "gateway.url"),
    ({"gateway__pinned_cert": "not a certificate"}, "gateway.pinned_cert"),
    ({"gateway__pinned_cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}, "not a well-formed X.509"),
    ({"gateway__api_key": "k"}, "unknown field 'api_key'"),
    ({"merchant__name": ""}, "merchant.name"),
    ({"extra": 1}, "unknown field 'extra'"),
    ({"printer__command": "lp -d thermal"}, "printer.command 'lp -d thermal' must contain {png}"),
    ({"printer__command": ""}, "printer.command must be a command line"),
    ({"printer__command": ["lp", "{png}"]}, "printer.command must be a command line"),
    ({"printer__command": "lp -d 'thermal {png}"}, "printer.command"),
    ({"printer__command": "{png}"}, "must start with the program"),
    ({"printer__command": ...}, "printer.command is missing"),
    ({"printer__device": "/dev/usb/lp0"}, "unknown field 'device'"),
    ({"printer": "lp {png}"}, "printer must be an object"),
])
def test_errors_name_the_field(changes, names):
    with pytest.raises(DeviceConfigError) as info:
        parse_config(document(**changes), source="pos.json")
    assert names in str(info.value)
    assert str(info.value).startswith("pos.json")


def test_duplicate_keys_and_nan_are_refused():
    with pytest.raises(DeviceConfigError, match="duplicate"):
        parse_config('{"format": "his-device-config-v1", "format": "x"}')
    with pytest.raises(DeviceConfigError, match="NaN"):
        parse_config(document().replace('"pay_deadline_s": 45.5', '"pay_deadline_s": NaN'))


def test_key_material_never_appears_in_errors():
    doc = json.loads(document())
    doc["keys"]["keys"][0]["key_hex"] = KEY.secret.hex()[:-2]
    with pytest.raises(DeviceConfigError) as info:
        parse_config(json.dumps(doc))
    assert KEY.secret.hex()[:20] not in str(info.value)


@given(st.binary(max_size=200))
def test_garbage_is_a_config_error_never_a_crash(data):
    with pytest.raises(DeviceConfigError):
        parse_config(data)


@given(st.text(max_size=80))
def test_a_print_command_is_accepted_only_with_a_program_and_the_file(command):
    try:
        printer = parse_print_command(command)
    except ValueError as exc:
        assert str(exc)  # a reason an engineer can read
        return
    assert any("{png}" in part for part in printer.argv) and "{png}" not in printer.argv[0]
    assert all("{png}" not in part for part in printer.args_for("/tmp/r.png"))


def test_load_with_a_referenced_key_file_and_permissions(tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(format_keyfile([KEY]))
    conf = tmp_path / "pos.json"
    doc = json.loads(document(keys=...))
    doc["keys_file"] = "keys.json"
    conf.write_text(json.dumps(doc))
    os.chmod(keys, 0o644)
    with pytest.raises(DeviceConfigError, match="chmod 600"):
        load_config(conf)
    os.chmod(keys, 0o600)
    cfg = load_config(conf)
    assert cfg.keys_file == "keys.json" and len(cfg.keys) == 1
    (tmp_path / "embedded.json").write_text(document())
    os.chmod(tmp_path / "embedded.json", 0o640)
    with pytest.raises(DeviceConfigError, match="other users can read"):
        load_config(tmp_path / "embedded.json")
    assert load_config(tmp_path / "embedded.json", check_permissions=False).device.model == "HIS-POS-1"
    with pytest.raises(DeviceConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
