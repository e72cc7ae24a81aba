"""`aoa://TARGET[,TARGET...]`: an Android smart POS through the Android Open Accessory protocol.

At every open (so also after the POS app restarted or the cable was pulled):
1. an Android device already in accessory mode (18D1:2D00/2D01) that a target names is used as is
   (the bridge restarted, or the link dropped while the cable stayed in);
2. otherwise the first device a target names (USB ID before the switch, serial number) is asked for
   its AOA version (request 51), gets our identifying strings (52, protocol.aoa.BRIDGE_ACCESSORY:
   the POS app's accessory filter matches them) and the start request (53);
3. the bridge waits for the device to come back as 18D1:2D00/2D01 (the same serial number), claims
   interface 0 and uses its bulk endpoints, exactly as `usb://` does (bridge.transport.usb_bulk).

Only devices a target names ever get a vendor request: a barcode scanner or an insurance card
reader on the same PC is left alone (reading a device's serial number, for `*/SERIAL` targets, is a
standard string-descriptor read, which the OS itself does at enumeration).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import usb.core
import usb.util

from protocol.aoa import (
    ACCESSORY_ADB_PID, BRIDGE_ACCESSORY, GOOGLE_VID, REQUEST_TYPE_VENDOR_IN, REQUEST_TYPE_VENDOR_OUT,
    AccessoryIdentity, AoaRequest, AoaVersionError, is_accessory_mode, parse_protocol_version,
)
from protocol.linkurl import AoaTarget

from bridge.transport.base import TransportError
from bridge.transport.usb_bulk import UsbTransport

# Real devices come back in accessory mode 1-3 s after the start request (longer with ADB on);
# ten seconds covers slow ones without leaving a broken switch unnoticed for long.
SWITCH_TIMEOUT_S = 10.0
REENUMERATE_POLL_S = 0.1  # how often the bus is looked at while waiting for the accessory
CONTROL_TIMEOUT_MS = 1000  # one AOA control request; a device that takes longer is not switching


@dataclass(frozen=True, slots=True)
class UsbDeviceInfo:
    vid: int
    pid: int
    bus: int | None
    address: int | None

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X}"

    @property
    def accessory_mode(self) -> bool:
        return is_accessory_mode(self.vid, self.pid)


def list_usb_devices(backend: object = None) -> list[UsbDeviceInfo]:
    """The USB devices on this PC as the OS enumerated them (what `his-bridge ports` shows to find an
    Android POS's VID:PID). Sends nothing to any device: the descriptors are the OS's copies."""
    try:
        found = list(usb.core.find(find_all=True, backend=backend))
    except usb.core.NoBackendError:
        raise TransportError("pyusb found no USB library: install libusb-1.0 (docs/android-pos.md)") from None
    devices = [UsbDeviceInfo(d.idVendor, d.idProduct, d.bus, d.address) for d in found]
    return sorted(devices, key=lambda d: (d.bus or 0, d.address or 0))


class AoaNotSupported(TransportError):
    """A listed device does not speak the Android Open Accessory protocol."""

    code = "aoa_not_supported"


def _ids(dev: usb.core.Device) -> str:
    return f"{dev.idVendor:04X}:{dev.idProduct:04X}"


def _serial_of(dev: usb.core.Device) -> str | None:
    """The iSerialNumber string, or None when it cannot be read (no driver access on Windows)."""
    try:
        return dev.serial_number
    except (usb.core.USBError, ValueError, NotImplementedError):
        return None


def switch_to_accessory(dev: usb.core.Device, identity: AccessoryIdentity = BRIDGE_ACCESSORY,
                        timeout_ms: int = CONTROL_TIMEOUT_MS) -> int:
    """Requests 51, 52 x 6, 53 on `dev`; returns the device's AOA version. AoaNotSupported if it
    stalls request 51 or answers version 0; TransportError if the strings do not go through."""
    name = _ids(dev)
    try:
        answer = bytes(dev.ctrl_transfer(REQUEST_TYPE_VENDOR_IN, AoaRequest.GET_PROTOCOL, 0, 0, 2, timeout_ms))
    except usb.core.USBError as exc:
        raise AoaNotSupported(f"USB device {name} refused the accessory protocol request ({exc}): it is not an "
                              "Android device with accessory support; check the VID:PID in the bridge's ports") from None
    try:
        version = parse_protocol_version(answer)
    except AoaVersionError as exc:
        raise AoaNotSupported(f"USB device {name}: {exc}") from None
    try:
        for index, payload in identity.strings():
            dev.ctrl_transfer(REQUEST_TYPE_VENDOR_OUT, AoaRequest.SEND_STRING, 0, int(index), payload, timeout_ms)
    except usb.core.USBError as exc:
        raise TransportError(f"USB device {name} took the accessory version request but not our identifying "
                             f"strings ({exc}); unplug and plug the POS in again") from None
    try:
        dev.ctrl_transfer(REQUEST_TYPE_VENDOR_OUT, AoaRequest.START, 0, 0, None, timeout_ms)
    except usb.core.USBError:
        pass  # a device may leave the bus before it acknowledges the start: the wait below decides
    return version


class AoaTransport(UsbTransport):
    """The accessory's bulk endpoints, after switching a listed Android device when needed."""

    def __init__(self, targets: tuple[AoaTarget, ...], *, backend: object = None, url: str | None = None,
                 identity: AccessoryIdentity = BRIDGE_ACCESSORY, switch_timeout_s: float = SWITCH_TIMEOUT_S,
                 poll_s: float = REENUMERATE_POLL_S, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not targets:
            raise TransportError("aoa: name the Android POS the bridge may switch, as in aoa://2A45:0C02 or "
                                 "aoa://*/PS1234567 (bare `aoa` is the POS app's side of the cable)")
        super().__init__(GOOGLE_VID, ACCESSORY_ADB_PID, None, backend=backend)
        self.targets = targets
        self.url = url or "aoa://" + ",".join(str(t) for t in targets)
        self.identity = identity
        self.switch_timeout_s = switch_timeout_s
        self.poll_s = poll_s
        self._sleep, self._clock = sleep, clock
        self.protocol_version: int | None = None  # of the last device switched
        self.switches = 0  # how many times this transport switched a device (status, tests)

    # ------------------------------------------------------------ finding

    def _devices(self) -> list[usb.core.Device]:
        try:
            return list(usb.core.find(find_all=True, backend=self.backend))
        except usb.core.NoBackendError:
            raise TransportError(
                "pyusb found no USB library: install libusb-1.0 (Windows: libusb-1.0.dll beside python.exe; "
                "docs/android-pos.md says which drivers the POS needs)"
            ) from None

    def _accessory(self, devices: list[usb.core.Device], serial_no: str | None) -> usb.core.Device | None:
        """A device in accessory mode that is ours: with `serial_no` (the one just switched) that
        serial; otherwise one whose serial a target names, or any when a target names USB IDs only
        (the accessory's IDs are Google's, so the original ones cannot be compared)."""
        any_ids = any(t.vid is not None and t.serial_no is None for t in self.targets)
        wanted = {serial_no} if serial_no else {t.serial_no for t in self.targets if t.serial_no}
        for dev in devices:
            if not is_accessory_mode(dev.idVendor, dev.idProduct):
                continue
            if (serial_no is None and any_ids) or _serial_of(dev) in wanted:
                return dev
        return None

    def _android(self, devices: list[usb.core.Device]) -> tuple[usb.core.Device, str | None] | None:
        """The first device (not yet in accessory mode) a target names, with its serial number."""
        for dev in devices:
            if is_accessory_mode(dev.idVendor, dev.idProduct) or dev.bDeviceClass == 9:  # 9: a hub
                continue
            named = [t for t in self.targets if t.names_ids(dev.idVendor, dev.idProduct)]
            if not named:
                continue
            serial_no = _serial_of(dev)
            if any(t.serial_no is None or t.serial_no == serial_no for t in named):
                return dev, serial_no
        return None

    def _find(self) -> usb.core.Device:
        devices = self._devices()
        found = self._accessory(devices, None)
        if found is not None:
            return found
        android = self._android(devices)
        if android is None:
            seen = ", ".join(sorted({_ids(d) for d in devices})) or "none"
            raise TransportError(f"no Android POS {self.url} on USB; is it plugged in and switched on? "
                                 f"(USB devices seen: {seen})")
        phone, serial_no = android
        try:
            self.protocol_version = switch_to_accessory(phone, self.identity)
        finally:
            usb.util.dispose_resources(phone)
        self.switches += 1
        deadline = self._clock() + self.switch_timeout_s
        while True:
            self._sleep(self.poll_s)
            found = self._accessory(self._devices(), serial_no)
            if found is not None:
                return found
            if self._clock() >= deadline:
                raise TransportError(
                    f"{_ids(phone)}" + (f"/{serial_no}" if serial_no else "") + " took the accessory start request "
                    f"but did not come back as {GOOGLE_VID:04X}:2D00/2D01 within {self.switch_timeout_s:g} s; "
                    "unplug it, plug it in again and check that the POS app is installed (docs/android-pos.md)")

    def _configure(self, dev: usb.core.Device) -> None:
        # ADB may hold interface 1 of an 18D1:2D01 device: re-setting the configuration would fail
        # (busy) and is not needed when the device is configured already.
        try:
            if dev.get_active_configuration() is not None:
                return
        except usb.core.USBError:
            pass
        dev.set_configuration()
