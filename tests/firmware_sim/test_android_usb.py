"""The simulated Android POS behaves on the pyusb backend as an Android phone does (firmware_sim.android_usb),
and the simulated USB cable carries the bus to another process's pyusb unchanged (firmware_sim.usb_cable)."""

from __future__ import annotations

import errno

import pytest
import usb.core
import usb.util

from bridge.transport import make_transport
from firmware_sim.android_usb import AndroidMode, VirtualAndroidDevice
from firmware_sim.usb_backend import VirtualUsbBackend
from firmware_sim.usb_cable import RemoteUsbBackend, UsbCableServer
from protocol.aoa import BRIDGE_ACCESSORY, AoaRequest
from tests.clocks import ManualClock


def switch(dev: usb.core.Device) -> None:
    assert bytes(dev.ctrl_transfer(0xC0, AoaRequest.GET_PROTOCOL, 0, 0, 2)) == b"\x02\x00"
    for index, payload in BRIDGE_ACCESSORY.strings():
        dev.ctrl_transfer(0x40, AoaRequest.SEND_STRING, 0, int(index), payload)
    dev.ctrl_transfer(0x40, AoaRequest.START, 0, 0, None)


def test_as_plugged_in_it_is_a_phone_with_mtp_and_adb_and_nothing_for_us() -> None:
    phone = VirtualAndroidDevice(serial_no="AP-9")
    dev = usb.core.find(idVendor=0x1209, idProduct=0x7D02, backend=VirtualUsbBackend(phone))
    assert dev.serial_number == "AP-9"
    dev.set_configuration()
    classes = [(i.bInterfaceClass, i.bInterfaceSubClass) for i in dev.get_active_configuration()]
    assert classes == [(0x06, 0x01), (0xFF, 0x42)]  # MTP, ADB
    with pytest.raises(usb.core.USBError) as stall:
        dev.write(0x02, b"x", 100)
    assert stall.value.errno == errno.EPIPE
    usb.util.dispose_resources(dev)


def test_the_start_request_takes_it_off_the_bus_until_it_comes_back_as_an_accessory() -> None:
    clock = ManualClock()
    phone = VirtualAndroidDevice(reenumerate_s=1.5, clock=clock)
    backend = VirtualUsbBackend(phone)
    dev = usb.core.find(idVendor=0x1209, idProduct=0x7D02, backend=backend)
    switch(dev)
    assert phone.mode is AndroidMode.SWITCHING and list(usb.core.find(find_all=True, backend=backend)) == []
    with pytest.raises(usb.core.USBError) as gone:
        dev.ctrl_transfer(0xC0, AoaRequest.GET_PROTOCOL, 0, 0, 2)
    assert gone.value.errno == errno.ENODEV
    clock.now = 1.4
    assert list(usb.core.find(find_all=True, backend=backend)) == []
    clock.now = 1.5
    accessory = usb.core.find(idVendor=0x18D1, idProduct=0x2D01, backend=backend)
    assert accessory is not None and accessory.serial_number == phone.serial_no
    intf = accessory.get_active_configuration()[(0, 0)]
    assert (intf.bInterfaceClass, intf.bInterfaceSubClass) == (0xFF, 0xFF)
    usb.util.dispose_resources(accessory)


def test_the_app_opens_the_accessory_once_and_its_streams_fail_when_the_cable_is_pulled() -> None:
    phone = VirtualAndroidDevice(reenumerate_s=0.0)
    backend = VirtualUsbBackend(phone)
    assert phone.open_accessory() is None  # a phone, no accessory yet
    switch(usb.core.find(idVendor=0x1209, idProduct=0x7D02, backend=backend))
    streams = phone.open_accessory()
    assert streams is not None and phone.open_accessory() is None  # busy: one opener
    phone.unplug()
    with pytest.raises(OSError) as gone:
        streams.input.read(16384)
    assert gone.value.errno == errno.ENODEV
    with pytest.raises(OSError):
        streams.output.write(b"x")


def test_the_cable_carries_the_bus_to_another_pyusb_with_its_errors() -> None:
    phone = VirtualAndroidDevice(reenumerate_s=0.0)
    cable = UsbCableServer(VirtualUsbBackend(phone)).start()
    try:
        remote = RemoteUsbBackend(cable.address)
        transport = make_transport(f"aoa://1209:7D02/{phone.serial_no}", usb_backend=remote)
        transport.open()
        app = phone.open_accessory()
        assert app is not None
        transport.write(b"over the cable")
        assert app.input.read(16384) == b"over the cable"
        app.output.write(b"and back")
        assert transport.read(100, 2.0) == b"and back"
        assert transport.read(100, 0.05) == b""  # a timeout crosses as a timeout
        phone.unplug()
        with pytest.raises(Exception, match="cable unplugged"):
            transport.read(100, 0.5)
        transport.close()
    finally:
        cable.stop()
    with pytest.raises(usb.core.USBError) as gone:  # the cable server is gone: no device
        list(usb.core.find(find_all=True, backend=RemoteUsbBackend(cable.address)))
    assert gone.value.errno == errno.ENODEV
