"""The bridge's `aoa://` and `auto?aoa=` transports against simulated Android devices on the pyusb
backend: the switch, who gets a vendor request, protocol versions 1 and 2, a device without AOA, a
device that never comes back, and an accessory already switched."""

from __future__ import annotations

import pytest

from bridge.transport import AoaNotSupported, AoaTransport, TransportError, make_transport
from firmware_sim.android_usb import AndroidMode, VirtualAndroidDevice
from firmware_sim.usb_backend import VirtualUsbBackend, VirtualUsbDevice
from protocol.aoa import BRIDGE_ACCESSORY, AoaRequest, StringIndex, is_vendor_request

SCANNER = dict(vid=0x0C2E, pid=0x0B61, serial_no="SCAN-01", manufacturer="Honeywell", product="Barcode scanner")
CARD_READER = dict(vid=0x163C, pid=0x0A01, serial_no="CR-77", manufacturer="Card", product="Insurance card reader")


def vendor_requests(device: VirtualUsbDevice) -> list[tuple[int, int, int, int]]:
    return [r for r in device.control_log if is_vendor_request(r[0])]


def opened(url: str, backend: VirtualUsbBackend) -> AoaTransport:
    transport = make_transport(url, usb_backend=backend)
    transport.open()
    return transport  # type: ignore[return-value]  # an aoa:// URL makes an AoaTransport


def round_trip(transport: object, pos: VirtualAndroidDevice) -> None:
    """Bytes both ways through the accessory, as the POS app would move them."""
    app = pos.open_accessory()
    assert app is not None, "the app could not open the accessory"
    transport.write(b"instruction")  # type: ignore[attr-defined]  # an aoa:// URL makes an AoaTransport
    assert app.input.read(16384) == b"instruction"
    app.output.write(b"result")
    assert transport.read(100, 2.0) == b"result"  # type: ignore[attr-defined]  # an aoa:// URL makes an AoaTransport
    app.close()


@pytest.mark.parametrize("version", [1, 2])
def test_a_listed_android_pos_is_switched_to_accessory_mode(version: int) -> None:
    pos = VirtualAndroidDevice(serial_no="AP-7", aoa_version=version)
    backend = VirtualUsbBackend(pos)
    transport = opened("aoa://1209:7D02", backend)
    try:
        assert transport.protocol_version == version and transport.switches == 1
        assert pos.mode is AndroidMode.ACCESSORY and pos.usb_ids() == (0x18D1, 0x2D01)
        assert [r[1] for r in vendor_requests(pos)] == [AoaRequest.GET_PROTOCOL] + [AoaRequest.SEND_STRING] * 6 + [AoaRequest.START]
        assert pos.accessory_strings[StringIndex.MANUFACTURER] == BRIDGE_ACCESSORY.manufacturer
        assert pos.accessory_strings[StringIndex.MODEL] == BRIDGE_ACCESSORY.model
        assert pos.accessory_strings[StringIndex.VERSION] == BRIDGE_ACCESSORY.version
        round_trip(transport, pos)
    finally:
        transport.close()


def test_without_adb_the_accessory_is_2d00() -> None:
    pos = VirtualAndroidDevice(adb=False)
    transport = opened("aoa://1209:7D02", VirtualUsbBackend(pos))
    try:
        assert pos.usb_ids() == (0x18D1, 0x2D00)
        round_trip(transport, pos)
    finally:
        transport.close()


def test_auto_switches_only_a_listed_device_and_never_sends_a_vendor_request_to_anything_else() -> None:
    scanner, reader = VirtualUsbDevice(**SCANNER), VirtualUsbDevice(**CARD_READER)  # type: ignore[arg-type]  # the device descriptions are dicts of mixed keyword values
    other_phone = VirtualAndroidDevice(vid=0x2A45, pid=0x0C02, serial_no="PHONE-9")  # an Android phone, not listed
    pos = VirtualAndroidDevice(serial_no="AP-1")
    backend = VirtualUsbBackend(scanner, other_phone, reader, pos)
    transport = opened("auto:1209:7D01?aoa=1209:7D02", backend)
    try:
        assert pos.mode is AndroidMode.ACCESSORY and transport.active is transport.aoa  # type: ignore[attr-defined]  # an aoa:// URL makes an AoaTransport
        round_trip(transport, pos)
    finally:
        transport.close()
    for bystander in (scanner, reader, other_phone):
        assert vendor_requests(bystander) == []
    assert other_phone.mode is AndroidMode.PHONE


def test_by_serial_number_the_others_get_a_string_read_at_most() -> None:
    scanner = VirtualUsbDevice(**SCANNER)  # type: ignore[arg-type]  # the device descriptions are dicts of mixed keyword values
    first = VirtualAndroidDevice(serial_no="AP-1")
    second = VirtualAndroidDevice(serial_no="AP-2", address=8)
    backend = VirtualUsbBackend(scanner, first, second)
    transport = opened("aoa://*/AP-2", backend)
    try:
        assert (first.mode, second.mode) == (AndroidMode.PHONE, AndroidMode.ACCESSORY)
        round_trip(transport, second)
    finally:
        transport.close()
    assert vendor_requests(scanner) == vendor_requests(first) == []
    assert all(request[:2] == (0x80, 6) for request in scanner.control_log)  # GET_DESCRIPTOR only


def test_nothing_listed_is_plugged_in_so_nothing_is_touched() -> None:
    scanner, phone = VirtualUsbDevice(**SCANNER), VirtualAndroidDevice(vid=0x2A45, pid=0x0C02)  # type: ignore[arg-type]  # the device descriptions are dicts of mixed keyword values
    with pytest.raises(TransportError) as info:
        opened("aoa://1209:7D02", VirtualUsbBackend(scanner, phone))
    assert "no Android POS aoa://1209:7D02 on USB" in str(info.value)
    assert "0C2E:0B61" in str(info.value) and "2A45:0C02" in str(info.value)  # what the engineer can compare
    assert scanner.control_log == phone.control_log == []


def test_a_device_without_accessory_support_is_told_apart() -> None:
    old = VirtualAndroidDevice(aoa_version=0)
    with pytest.raises(AoaNotSupported) as info:
        opened("aoa://1209:7D02", VirtualUsbBackend(old))
    assert "not an Android device with accessory support" in str(info.value)
    assert [r[1] for r in vendor_requests(old)] == [AoaRequest.GET_PROTOCOL]  # asked, never told to switch
    assert old.mode is AndroidMode.PHONE


class FakeTime:
    """A clock that moves only when the transport sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_device_that_never_comes_back_is_reported_after_the_switch_timeout() -> None:
    time_ = FakeTime()
    stuck = VirtualAndroidDevice(reenumerate_s=1e9, clock=lambda: time_.now)
    transport = AoaTransport(make_transport("aoa://1209:7D02").targets, backend=VirtualUsbBackend(stuck),  # type: ignore[attr-defined]  # an aoa:// URL makes an AoaTransport, which has targets
                             switch_timeout_s=5.0, sleep=time_.sleep, clock=lambda: time_.now)
    with pytest.raises(TransportError) as info:
        transport.open()
    assert "did not come back as 18D1:2D00/2D01 within 5 s" in str(info.value)
    assert 5.0 <= time_.now < 5.2


def test_an_accessory_already_switched_is_used_without_a_new_switch() -> None:
    pos = VirtualAndroidDevice(serial_no="AP-3")
    backend = VirtualUsbBackend(pos)
    first = opened("aoa://1209:7D02/AP-3", backend)
    first.close()  # the bridge restarts; the POS stays in accessory mode
    again = opened("aoa://1209:7D02/AP-3", backend)
    try:
        assert again.switches == 0 and pos.switches == 1
        round_trip(again, pos)
    finally:
        again.close()


def test_after_the_cable_was_pulled_the_device_is_switched_again() -> None:
    pos = VirtualAndroidDevice(serial_no="AP-4")
    backend = VirtualUsbBackend(pos)
    transport = opened("aoa://1209:7D02/AP-4", backend)
    pos.unplug()
    with pytest.raises(TransportError):
        transport.read(100, 0.5)
    pos.replug()
    assert pos.mode is AndroidMode.PHONE
    transport.open()
    try:
        assert pos.switches == 2 and pos.mode is AndroidMode.ACCESSORY
        round_trip(transport, pos)
    finally:
        transport.close()


def test_an_app_with_another_filter_never_gets_the_accessory() -> None:
    from protocol.aoa import AccessoryIdentity

    pos = VirtualAndroidDevice(app_filter=AccessoryIdentity("someone-else", "their-dock", "", "1", "", ""))
    transport = opened("aoa://1209:7D02", VirtualUsbBackend(pos))
    try:
        assert pos.mode is AndroidMode.ACCESSORY and pos.open_accessory() is None
    finally:
        transport.close()


def test_the_bridge_configuration_refuses_an_unnamed_android_pos(tmp_path) -> None:
    from bridge.config import BridgeConfigError, parse_config

    with pytest.raises(BridgeConfigError) as info:
        parse_config({"link": {"ports": ["aoa"]}}, base_dir=tmp_path)
    assert "ports" in str(info.value) and "name the Android POS" in str(info.value)
    config = parse_config({"link": {"ports": ["aoa://2A45:0C02/PS1", "auto?aoa=*/PS2"]}}, base_dir=tmp_path)
    assert config.link.ports == ("aoa://2A45:0C02/PS1", "auto?aoa=*/PS2")


def test_listing_usb_devices_sends_them_nothing() -> None:
    from bridge.transport import list_usb_devices

    scanner, pos = VirtualUsbDevice(**SCANNER), VirtualAndroidDevice(address=9)  # type: ignore[arg-type]  # the device descriptions are dicts of mixed keyword values
    listed = list_usb_devices(VirtualUsbBackend(scanner, pos))
    assert [(d.usb_id, d.accessory_mode) for d in listed] == [("0C2E:0B61", False), ("1209:7D02", False)]
    assert scanner.control_log == pos.control_log == []
