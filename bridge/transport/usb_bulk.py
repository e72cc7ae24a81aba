"""`usb://VID:PID[/SERIAL]`: raw USB bulk endpoints through pyusb.

Find the device by VID:PID (and iSerialNumber when given), select its configuration, claim
interface 0 and use its first bulk OUT and bulk IN endpoints. `backend` is any pyusb backend: None
means pyusb's default (libusb-1.0; on Windows the POS needs the WinUSB driver), the tests pass the
simulator's backend object (firmware_sim.usb_backend) so this very code runs against it.
"""

from __future__ import annotations

import errno

import usb.core
import usb.util

from bridge.transport.base import TransportClosed, TransportError

WRITE_TIMEOUT_S = 2.0
# Reads ask for whole packets (a short buffer would overflow on a full packet); extra bytes wait here.
READ_CHUNK = 16384


def describe(vid: int, pid: int, serial_no: str | None) -> str:
    return f"usb://{vid:04X}:{pid:04X}" + (f"/{serial_no}" if serial_no else "")


class UsbTransport:
    def __init__(self, vid: int, pid: int, serial_no: str | None = None, *, backend: object = None,
                 interface: int = 0, write_timeout_s: float = WRITE_TIMEOUT_S) -> None:
        self.vid, self.pid, self.serial_no = vid, pid, serial_no
        self.url = describe(vid, pid, serial_no)
        self.backend = backend
        self.interface = interface
        self.write_timeout_s = write_timeout_s
        self._dev: usb.core.Device | None = None
        self._ep_out: usb.core.Endpoint | None = None
        self._ep_in: usb.core.Endpoint | None = None
        self._pending = b""

    def _find(self) -> usb.core.Device:
        try:
            found = list(usb.core.find(find_all=True, idVendor=self.vid, idProduct=self.pid, backend=self.backend))
        except usb.core.NoBackendError:
            raise TransportError(
                "pyusb found no USB library: install libusb-1.0 (Windows: libusb-1.0.dll beside python.exe, "
                "and the WinUSB driver for the POS, e.g. with Zadig)"
            ) from None
        serials = []
        for dev in found:
            if self.serial_no is None:
                return dev
            try:
                serial_no = dev.serial_number
            except (usb.core.USBError, ValueError) as exc:
                serials.append(f"? ({exc})")
                continue
            if serial_no == self.serial_no:
                return dev
            serials.append(str(serial_no))
        seen = f" (found serial numbers: {', '.join(serials)})" if serials else ""
        raise TransportError(f"no USB device {self.url}{seen}; is the POS plugged in and switched on?")

    def open(self) -> None:
        self.close()
        dev = self._find()
        try:
            try:
                if dev.is_kernel_driver_active(self.interface):
                    dev.detach_kernel_driver(self.interface)
            except (NotImplementedError, usb.core.USBError):
                pass  # not supported on this OS / backend: nothing to detach
            self._configure(dev)
            usb.util.claim_interface(dev, self.interface)
            intf = dev.get_active_configuration()[(self.interface, 0)]
            ep_out = usb.util.find_descriptor(intf, custom_match=lambda e: _is_bulk(e, usb.util.ENDPOINT_OUT))
            ep_in = usb.util.find_descriptor(intf, custom_match=lambda e: _is_bulk(e, usb.util.ENDPOINT_IN))
        except usb.core.USBError as exc:
            usb.util.dispose_resources(dev)
            hint = " (access denied: add a udev rule or run as the bridge service user)" if exc.errno == errno.EACCES else ""
            raise TransportError(f"cannot claim {self.url}: {exc}{hint}; is another program using the POS?") from None
        if ep_out is None or ep_in is None:
            usb.util.dispose_resources(dev)
            raise TransportError(f"{self.url}: interface {self.interface} has no bulk IN and OUT endpoints; wrong VID:PID?")
        self._dev, self._ep_out, self._ep_in, self._pending = dev, ep_out, ep_in, b""

    def _configure(self, dev: usb.core.Device) -> None:
        dev.set_configuration()

    def read(self, max_bytes: int, timeout: float) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
            return data
        if self._dev is None or self._ep_in is None:
            raise TransportClosed(f"{self.url} is not open")
        packet = max(1, int(self._ep_in.wMaxPacketSize))
        size = -(-max(max_bytes, READ_CHUNK) // packet) * packet
        # libusb treats a timeout of 0 as "forever": never pass 0.
        timeout_ms = max(1, int(timeout * 1000))
        try:
            data = bytes(self._dev.read(self._ep_in.bEndpointAddress, size, timeout_ms))
        except usb.core.USBTimeoutError:
            return b""
        except usb.core.USBError as exc:
            if exc.errno == errno.ETIMEDOUT:
                return b""
            raise TransportClosed(f"{self.url}: read failed ({exc}); cable unplugged?") from None
        data, self._pending = data[:max_bytes], data[max_bytes:]
        return data

    def write(self, data: bytes) -> None:
        if self._dev is None or self._ep_out is None:
            raise TransportClosed(f"{self.url} is not open")
        view = memoryview(data)
        timeout_ms = max(1, int(self.write_timeout_s * 1000))
        try:
            while view:
                written = self._dev.write(self._ep_out.bEndpointAddress, view, timeout_ms)
                view = view[written:]
        except usb.core.USBTimeoutError:
            raise TransportClosed(f"{self.url}: the device stopped reading (write timed out)") from None
        except usb.core.USBError as exc:
            raise TransportClosed(f"{self.url}: write failed ({exc}); cable unplugged?") from None

    def close(self) -> None:
        dev, self._dev = self._dev, None
        self._ep_in = self._ep_out = None
        self._pending = b""
        if dev is not None:
            try:
                usb.util.release_interface(dev, self.interface)
            except usb.core.USBError:
                pass
            try:
                usb.util.dispose_resources(dev)
            except usb.core.USBError:
                pass


def _is_bulk(endpoint: usb.core.Endpoint, direction: int) -> bool:
    return (usb.util.endpoint_type(endpoint.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
            and usb.util.endpoint_direction(endpoint.bEndpointAddress) == direction)
