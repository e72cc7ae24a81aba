"""Step 2 registries: the device and terminal CSV files (protocol/registry.py)."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.registry import (
    DeviceRecord, RegistryError, TerminalRecord, format_device_csv, format_terminal_csv, parse_device_csv,
    parse_terminal_csv,
)

PUB = bytes(range(32))


def test_device_csv_round_trip_and_his_copy_with_base64_keys():
    devices = [DeviceRecord("D-SN-000123", "HP-POS-1", "SN000123", PUB), DeviceRecord("D-SN-000124", "HP-POS-1", "SN000124")]
    assert parse_device_csv(format_device_csv(devices)) == devices
    his = format_device_csv(devices[:1], for_his=True)
    # his-interface 1.1 A: device_id,model,serial_no,public_key with the key in padded base64.
    assert his.splitlines() == ["device_id,model,serial_no,public_key", f"D-SN-000123,HP-POS-1,SN000123,{base64.b64encode(PUB).decode()}"]
    assert parse_device_csv(his) == devices[:1]
    with pytest.raises(ValueError, match="no public_key for D-SN-000124"):
        format_device_csv(devices, for_his=True)


def test_device_csv_still_reads_the_older_hex_keys():
    assert parse_device_csv(f"device_id,model,serial_no,public_key\nD1,m,s,{PUB.hex()}\n")[0].public_key == PUB


def test_terminal_csv_from_excel_with_bom_and_optional_binding():
    text = "\ufeffterminal_id,description,device_id\r\nT0001,门诊收费1号窗口,D-SN-000123\r\nT0002,住院收费,\r\n"
    assert parse_terminal_csv(text) == [
        TerminalRecord("T0001", "门诊收费1号窗口", "D-SN-000123"),
        TerminalRecord("T0002", "住院收费", None),
    ]
    assert parse_terminal_csv(format_terminal_csv(parse_terminal_csv(text))) == parse_terminal_csv(text)


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        ("", 1, "empty file"),
        ("id,desc\n", 1, "header must be terminal_id,description"),
        ("terminal_id,description\nT 1,x\n", 2, "terminal_id 'T 1'"),
        ("terminal_id,description\nT1,x\nT1,y\n", 3, "appears twice"),
        ("terminal_id,description\nT1\n", 2, "expected 2 fields"),
        ("terminal_id,description,device_id\nT1,x,D 1\n", 2, "device_id"),
    ],
)
def test_terminal_csv_errors_name_the_line(text, line, why):
    with pytest.raises(RegistryError) as info:
        parse_terminal_csv(text, "terminals.csv")
    assert info.value.line == line and why in str(info.value) and "terminals.csv" in str(info.value)


def test_device_csv_refuses_bad_keys():
    with pytest.raises(RegistryError, match="line 2: public_key must be 32 bytes"):
        parse_device_csv("device_id,model,serial_no,public_key\nD1,m,s,abcd\n")
    with pytest.raises(RegistryError, match="base64"):
        parse_device_csv("device_id,model,serial_no,public_key\nD1,m,s,zz\n")
    with pytest.raises(RegistryError, match="base64"):
        parse_device_csv("device_id,model,serial_no,public_key\nD1,m,s," + "z" * 64 + "\n")


@given(st.text(max_size=300))
def test_arbitrary_text_gives_a_registry_error_or_records(text):
    for parse in (parse_device_csv, parse_terminal_csv):
        try:
            parse(text)
        except RegistryError:
            pass
