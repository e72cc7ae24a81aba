"""A pyusb backend presenting one virtual POS on USB: what the simulator plugs into the bridge.

`VirtualUsbDevice` is the device: VID:PID (bridge.transport.base.DEFAULT_VID/PID unless given),
manufacturer/product/serial-number strings, one configuration with one vendor-specific interface
holding a bulk OUT endpoint (0x01) and a bulk IN endpoint (0x81). Bytes the host writes to bulk OUT
are read by the device side (`device_read`); what the device side writes (`device_write`) is what
the host reads from bulk IN.

`VirtualUsbBackend` is a `usb.backend.IBackend`: pass it as `backend=` to `usb.core.find` (the
bridge's `usb://` transport takes it as `usb_backend`) and pyusb's own Device/Endpoint code runs
against it exactly as against libusb. Failures look as libusb makes them look: a transfer that
times out raises `usb.core.USBTimeoutError` (errno ETIMEDOUT); after `unplug()` every transfer,
open and claim raises `usb.core.USBError` with errno ENODEV (19) and the device is not enumerated;
`replug()` presents it again as a new attachment (handles from before stay dead, as after a real
re-enumeration).
"""

from __future__ import annotations

import array
import errno
import threading
import time
from dataclasses import dataclass, field

import usb.backend
import usb.core

from bridge.transport.base import DEFAULT_PID, DEFAULT_VID

EP_OUT = 0x01
EP_IN = 0x81
LANGID_EN_US = 0x0409
# libusb's error numbers, which pyusb reports as USBError.backend_error_code.
LIBUSB_ERROR_NO_DEVICE = -4
LIBUSB_ERROR_BUSY = -6
LIBUSB_ERROR_TIMEOUT = -7
LIBUSB_ERROR_PIPE = -9


def _no_device() -> usb.core.USBError:
    return usb.core.USBError("No such device (it may have been disconnected)", LIBUSB_ERROR_NO_DEVICE, errno.ENODEV)


@dataclass
class _Descriptor:
    """Field bag: pyusb copies descriptor fields by attribute name."""

    fields: dict[str, object] = field(default_factory=dict)

    def __getattr__(self, name: str) -> object:
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None


class VirtualUsbDevice:
    def __init__(self, *, vid: int = DEFAULT_VID, pid: int = DEFAULT_PID, serial_no: str = "PS-0001",
                 manufacturer: str = "his-smartpos", product: str = "Smart POS (simulated)",
                 packet_size: int = 512, bus: int = 1, address: int = 7) -> None:
        self.vid, self.pid, self.serial_no = vid, pid, serial_no
        self.strings = {1: manufacturer, 2: product, 3: serial_no}
        self.packet_size = packet_size
        self.bus, self.address = bus, address
        self._cond = threading.Condition()
        self._to_device = bytearray()
        self._to_host = bytearray()
        self._plugged = True
        self.generation = 1  # bumped at every replug: an attachment's identity
        # Every control request the host sent: (bmRequestType, bRequest, wValue, wIndex). Tests read
        # it to prove who got a vendor request (protocol.aoa.is_vendor_request).
        self.control_log: list[tuple[int, int, int, int]] = []

    # ------------------------------------------------------------ plugging

    @property
    def plugged(self) -> bool:
        return self._plugged

    def unplug(self) -> None:
        with self._cond:
            self._plugged = False
            self._to_device.clear()
            self._to_host.clear()
            self._cond.notify_all()

    def replug(self) -> None:
        with self._cond:
            self._plugged = True
            self.generation += 1
            self._cond.notify_all()

    # ------------------------------------------------------------ host side (the backend)

    def _check(self, generation: int) -> None:
        if not self._plugged or generation != self.generation:
            raise _no_device()

    def host_write(self, generation: int, data: bytes) -> int:
        with self._cond:
            self._check(generation)
            self._to_device += data
            self._cond.notify_all()
            return len(data)

    def host_read(self, generation: int, size: int, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                self._check(generation)
                if self._to_host:
                    data = bytes(self._to_host[:size])
                    del self._to_host[:size]
                    return data
                left = deadline - time.monotonic()
                if left <= 0:
                    raise usb.core.USBTimeoutError("Operation timed out", LIBUSB_ERROR_TIMEOUT, errno.ETIMEDOUT)
                self._cond.wait(left)

    # ------------------------------------------------------------ device side (the endpoint)

    def device_read(self, max_bytes: int, timeout_s: float) -> tuple[int, bytes]:
        """(generation, bytes the host wrote); b"" after timeout_s or while unplugged."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._plugged and not self._to_device:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            data = b""
            if self._plugged and self._to_device:
                data = bytes(self._to_device[:max_bytes])
                del self._to_device[:max_bytes]
            return self.generation, data

    def device_write(self, data: bytes) -> None:
        """Queue bytes for bulk IN; dropped while unplugged (nobody is listening)."""
        with self._cond:
            if self._plugged:
                self._to_host += data
                self._cond.notify_all()

    # ------------------------------------------------------------ descriptors and requests

    def usb_ids(self) -> tuple[int, int]:
        return self.vid, self.pid

    def device_descriptor(self) -> _Descriptor:
        vid, pid = self.usb_ids()
        return _Descriptor(dict(
            bLength=18, bDescriptorType=1, bcdUSB=0x0200, bDeviceClass=0, bDeviceSubClass=0, bDeviceProtocol=0,
            bMaxPacketSize0=64, idVendor=vid, idProduct=pid, bcdDevice=0x0100, iManufacturer=1,
            iProduct=2, iSerialNumber=3, bNumConfigurations=1, address=self.address, bus=self.bus,
            port_number=1, port_numbers=(1,), speed=3,
        ))

    def interfaces(self, generation: int | None = None) -> list[Interface]:
        """The interfaces of configuration 1 as presented by attachment `generation` (None: the
        current one): one vendor-specific bulk pair."""
        return [Interface(0xFF, 0, 0, (EP_OUT, EP_IN))]

    def data_endpoints(self) -> tuple[int, int] | None:
        """(bulk OUT, bulk IN) carrying the link's bytes now; None: no such endpoints (stall)."""
        return EP_OUT, EP_IN

    def control(self, request_type: int, request: int, value: int, index: int, data: bytes, length: int) -> bytes:
        """One control request (logged first). OUT: `data` is what the host sends, answer b"". IN:
        answer at most `length` bytes. Anything not understood stalls, as a device does."""
        self.control_log.append((request_type, request, value, index))
        if request_type == 0x80 and request == 0x06 and value >> 8 == 3:  # GET_DESCRIPTOR(STRING)
            string_index = value & 0xFF
            if string_index == 0:
                return (bytes([4, 3]) + LANGID_EN_US.to_bytes(2, "little"))[:length]
            if string_index in self.strings:
                text = self.strings[string_index].encode("utf-16-le")
                return (bytes([2 + len(text), 3]) + text)[:length]
        raise usb.core.USBError("Pipe error (request not supported)", LIBUSB_ERROR_PIPE, errno.EPIPE)


@dataclass(frozen=True)
class Interface:
    cls: int
    subclass: int
    protocol: int
    endpoints: tuple[int, ...]  # addresses; bit 7 set: IN
    kind: int = 0x02  # bmAttributes of the endpoints: 0x02 bulk, 0x03 interrupt


def _configuration(interfaces: list[Interface]) -> _Descriptor:
    total = 9 + sum(9 + 7 * len(i.endpoints) for i in interfaces)
    return _Descriptor(dict(bLength=9, bDescriptorType=2, wTotalLength=total, bNumInterfaces=len(interfaces),
                            bConfigurationValue=1, iConfiguration=0, bmAttributes=0x80, bMaxPower=250,
                            extra_descriptors=[]))


def _interface(number: int, intf: Interface) -> _Descriptor:
    return _Descriptor(dict(bLength=9, bDescriptorType=4, bInterfaceNumber=number, bAlternateSetting=0,
                            bNumEndpoints=len(intf.endpoints), bInterfaceClass=intf.cls,
                            bInterfaceSubClass=intf.subclass, bInterfaceProtocol=intf.protocol, iInterface=0,
                            extra_descriptors=[]))


def _endpoint(address: int, packet_size: int, kind: int = 0x02) -> _Descriptor:
    return _Descriptor(dict(bLength=7, bDescriptorType=5, bEndpointAddress=address, bmAttributes=kind,
                            wMaxPacketSize=packet_size if kind == 0x02 else 64, bInterval=0 if kind == 0x02 else 6,
                            bRefresh=0, bSynchAddress=0, extra_descriptors=[]))


@dataclass(frozen=True)
class _DeviceRef:
    device: VirtualUsbDevice
    generation: int


@dataclass
class _Handle:
    ref: _DeviceRef
    configuration: int = 0
    claimed: set[int] = field(default_factory=set)
    closed: bool = False


class VirtualUsbBackend(usb.backend.IBackend):
    def __init__(self, *devices: VirtualUsbDevice) -> None:
        self.devices = list(devices)
        self._lock = threading.Lock()
        self._claims: dict[tuple[int, int], _Handle] = {}  # (id(device), interface) -> claiming handle

    def enumerate_devices(self):
        return [_DeviceRef(d, d.generation) for d in self.devices if d.plugged]

    def get_device_descriptor(self, dev: _DeviceRef) -> _Descriptor:
        return dev.device.device_descriptor()

    def get_configuration_descriptor(self, dev: _DeviceRef, config: int) -> _Descriptor:
        if config != 0:
            raise IndexError(config)
        return _configuration(dev.device.interfaces(dev.generation))

    def get_interface_descriptor(self, dev: _DeviceRef, intf: int, alt: int, config: int) -> _Descriptor:
        interfaces = dev.device.interfaces(dev.generation)
        if alt != 0 or config != 0 or not 0 <= intf < len(interfaces):
            raise IndexError(intf)
        return _interface(intf, interfaces[intf])

    def get_endpoint_descriptor(self, dev: _DeviceRef, ep: int, intf: int, alt: int, config: int) -> _Descriptor:
        interfaces = dev.device.interfaces(dev.generation)
        if alt != 0 or config != 0 or not 0 <= intf < len(interfaces) or not 0 <= ep < len(interfaces[intf].endpoints):
            raise IndexError(ep)
        return _endpoint(interfaces[intf].endpoints[ep], dev.device.packet_size, interfaces[intf].kind)

    def open_device(self, dev: _DeviceRef) -> _Handle:
        dev.device._check(dev.generation)
        return _Handle(dev)

    def close_device(self, dev_handle: _Handle) -> None:
        with self._lock:
            for intf in list(dev_handle.claimed):
                self._claims.pop((id(dev_handle.ref.device), intf), None)
            dev_handle.claimed.clear()
            dev_handle.closed = True

    def _live(self, handle: _Handle) -> VirtualUsbDevice:
        if handle.closed:
            raise usb.core.USBError("Invalid handle (closed)", -2, errno.EINVAL)
        handle.ref.device._check(handle.ref.generation)
        return handle.ref.device

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        self._live(dev_handle)
        if config_value not in (0, 1):
            raise usb.core.USBError("Invalid configuration", LIBUSB_ERROR_PIPE, errno.EPIPE)
        dev_handle.configuration = config_value

    def get_configuration(self, dev_handle: _Handle) -> int:
        self._live(dev_handle)
        return dev_handle.configuration or 1

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        device = self._live(dev_handle)
        if altsetting != 0 or not 0 <= intf < len(device.interfaces(dev_handle.ref.generation)):
            raise usb.core.USBError("Invalid altsetting", LIBUSB_ERROR_PIPE, errno.EPIPE)

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        device = self._live(dev_handle)
        with self._lock:
            key = (id(device), intf)
            holder = self._claims.get(key)
            if holder is not None and holder is not dev_handle and not holder.closed \
                    and holder.ref.generation == device.generation:
                raise usb.core.USBError("Resource busy", LIBUSB_ERROR_BUSY, errno.EBUSY)
            self._claims[key] = dev_handle
            dev_handle.claimed.add(intf)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        with self._lock:
            if self._claims.get((id(dev_handle.ref.device), intf)) is dev_handle:
                del self._claims[(id(dev_handle.ref.device), intf)]
            dev_handle.claimed.discard(intf)

    def bulk_write(self, dev_handle: _Handle, ep: int, intf: int, data: array.array, timeout: int) -> int:
        device = self._live(dev_handle)
        pair = device.data_endpoints()
        if pair is None or ep != pair[0]:
            raise usb.core.USBError("Pipe error", LIBUSB_ERROR_PIPE, errno.EPIPE)
        return device.host_write(dev_handle.ref.generation, data.tobytes())

    def bulk_read(self, dev_handle: _Handle, ep: int, intf: int, buff: array.array, timeout: int) -> int:
        device = self._live(dev_handle)
        pair = device.data_endpoints()
        if pair is None or ep != pair[1]:
            raise usb.core.USBError("Pipe error", LIBUSB_ERROR_PIPE, errno.EPIPE)
        # libusb's timeout 0 means "wait forever"; a virtual device caps it so tests cannot hang.
        timeout_s = timeout / 1000 if timeout > 0 else 3600.0
        data = device.host_read(dev_handle.ref.generation, len(buff) * buff.itemsize, timeout_s)
        buff[: len(data)] = array.array("B", data)
        return len(data)

    def ctrl_transfer(self, dev_handle: _Handle, bmRequestType: int, bRequest: int, wValue: int, wIndex: int,
                      data: array.array, timeout: int) -> int:
        device = self._live(dev_handle)
        if bmRequestType & 0x80:  # IN: pyusb hands a buffer to fill
            payload = device.control(bmRequestType, bRequest, wValue, wIndex, b"", len(data))
            data[: len(payload)] = array.array("B", payload)
            return len(payload)
        sent = data.tobytes() if data is not None else b""
        device.control(bmRequestType, bRequest, wValue, wIndex, sent, 0)
        return len(sent)

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        self._live(dev_handle)

    def reset_device(self, dev_handle: _Handle) -> None:
        self._live(dev_handle)

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        self._live(dev_handle)
        return False

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        self._live(dev_handle)

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        self._live(dev_handle)
