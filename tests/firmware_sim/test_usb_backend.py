"""The simulator's pyusb backend behaves as pyusb over libusb does: descriptors, strings, bulk, errors."""

from __future__ import annotations

import errno

import pytest
import usb.core
import usb.util

from bridge.transport.base import DEFAULT_PID, DEFAULT_VID
from firmware_sim.usb_backend import EP_IN, EP_OUT, VirtualUsbBackend, VirtualUsbDevice


@pytest.fixture
def usb_pos():
    device = VirtualUsbDevice(serial_no="PS-0042")
    return device, VirtualUsbBackend(device)


def test_found_by_vid_pid_with_descriptors_and_strings(usb_pos) -> None:
    device, backend = usb_pos
    dev = usb.core.find(idVendor=DEFAULT_VID, idProduct=DEFAULT_PID, backend=backend)
    assert dev is not None
    assert (dev.serial_number, dev.manufacturer, dev.product) == ("PS-0042", "his-smartpos", "Smart POS (simulated)")
    assert usb.core.find(idVendor=0x0403, backend=backend) is None
    dev.set_configuration()
    intf = dev.get_active_configuration()[(0, 0)]
    addresses = sorted(e.bEndpointAddress for e in intf)
    assert addresses == [EP_OUT, EP_IN]
    assert all(usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK for e in intf)
    usb.util.dispose_resources(dev)


def test_bulk_transfers_timeouts_unplug_and_replug(usb_pos) -> None:
    device, backend = usb_pos
    dev = usb.core.find(idVendor=DEFAULT_VID, idProduct=DEFAULT_PID, backend=backend)
    dev.set_configuration()
    assert dev.write(EP_OUT, b"instruction", 100) == 11
    assert device.device_read(100, 0.1)[1] == b"instruction"
    device.device_write(b"result")
    assert bytes(dev.read(EP_IN, 512, 100)) == b"result"
    with pytest.raises(usb.core.USBTimeoutError) as timeout:
        dev.read(EP_IN, 512, 20)
    assert timeout.value.errno == errno.ETIMEDOUT
    device.unplug()
    for call in (lambda: dev.read(EP_IN, 512, 20), lambda: dev.write(EP_OUT, b"x", 20)):
        with pytest.raises(usb.core.USBError) as gone:
            call()
        assert gone.value.errno == errno.ENODEV == 19
    assert usb.core.find(idVendor=DEFAULT_VID, backend=backend) is None
    device.replug()
    with pytest.raises(usb.core.USBError):  # the old handle belongs to the old attachment
        dev.read(EP_IN, 512, 20)
    fresh = usb.core.find(idVendor=DEFAULT_VID, backend=backend)
    fresh.set_configuration()
    device.device_write(b"back")
    assert bytes(fresh.read(EP_IN, 512, 100)) == b"back"
    usb.util.dispose_resources(fresh)


def test_an_interface_has_one_owner(usb_pos) -> None:
    _, backend = usb_pos
    first = usb.core.find(idVendor=DEFAULT_VID, backend=backend)
    second = usb.core.find(idVendor=DEFAULT_VID, backend=backend)
    usb.util.claim_interface(first, 0)
    with pytest.raises(usb.core.USBError) as busy:
        usb.util.claim_interface(second, 0)
    assert busy.value.errno == errno.EBUSY
    usb.util.dispose_resources(first)
    usb.util.claim_interface(second, 0)
    usb.util.dispose_resources(second)
