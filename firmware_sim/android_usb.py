"""A simulated Android smart POS on USB that speaks the Android Open Accessory protocol.

`VirtualAndroidDevice` is a `VirtualUsbDevice` (firmware_sim.usb_backend: the same pyusb backend
serves it) that behaves as an Android phone does:

- plugged in, it is a phone at its own VID:PID with an MTP interface (and ADB when `adb`), and no
  bulk pair for us;
- it answers ACCESSORY_GET_PROTOCOL (51) with `aoa_version` (1 or 2), or stalls every vendor request
  when `aoa_version` is 0 (an Android build without accessory support, or not Android at all);
- it keeps the identifying strings (52); after ACCESSORY_START (53) it leaves the bus and comes back
  `reenumerate_s` later as 18D1:2D01 (18D1:2D00 without ADB), interface 0 holding the accessory's
  bulk pair, with the same serial number;
- "Android" starts the app whose accessory filter matches the strings: `open_accessory()` is what the
  app's `UsbManager.openAccessory` does (None until the accessory is there and matches, or while
  another opener holds it); it returns the two streams of the accessory's file descriptor
  (`AccessoryStreams`), whose reads block and fail once the cable is pulled;
- a pulled cable (`unplug`) brings it back as a phone at the next `replug`: the host switches again.

Faults: `cut_cable_mid_write(min_size)` delivers half of the next write toward the host of at least
`min_size` bytes (a frame) and pulls the cable once the host has read that half.
"""

from __future__ import annotations

import enum
import errno
import time
from typing import Callable

import usb.core

from protocol.aoa import (
    ACCESSORY_ADB_PID, ACCESSORY_PID, BRIDGE_ACCESSORY, GOOGLE_VID, AccessoryIdentity, AoaRequest, StringIndex,
    is_vendor_request,
)

from firmware_sim.usb_backend import LIBUSB_ERROR_PIPE, Interface, VirtualUsbDevice, _no_device

ANDROID_VID = 0x1209  # the simulated POS model's own USB ID (pid.codes test range), before the switch
ANDROID_PID = 0x7D02
ACC_EP_OUT, ACC_EP_IN = 0x01, 0x81  # the accessory's bulk pair (interface 0 in accessory mode)
REENUMERATE_S = 0.3  # a real device takes 1-3 s; the simulator is quicker so tests stay short


class AndroidMode(str, enum.Enum):
    PHONE = "phone"  # as plugged in: MTP (and ADB)
    SWITCHING = "switching"  # off the bus after ACCESSORY_START
    ACCESSORY = "accessory"  # 18D1:2D00/2D01


def _stall() -> usb.core.USBError:
    return usb.core.USBError("Pipe error (request not supported)", LIBUSB_ERROR_PIPE, errno.EPIPE)


class VirtualAndroidDevice(VirtualUsbDevice):
    def __init__(self, *, vid: int = ANDROID_VID, pid: int = ANDROID_PID, serial_no: str = "AP-0001",
                 aoa_version: int = 2, adb: bool = True, reenumerate_s: float = REENUMERATE_S,
                 app_filter: AccessoryIdentity | None = BRIDGE_ACCESSORY, clock: Callable[[], float] = time.monotonic,
                 manufacturer: str = "Simulated POS maker", product: str = "Android smart POS (simulated)",
                 **kwargs: object) -> None:
        super().__init__(vid=vid, pid=pid, serial_no=serial_no, manufacturer=manufacturer, product=product,
                         **kwargs)  # type: ignore[arg-type]  # the remaining VirtualUsbDevice keywords pass through unchanged
        self.aoa_version = aoa_version
        self.adb = adb
        self.reenumerate_s = reenumerate_s
        self.app_filter = app_filter  # None: no app installed for any accessory
        self.clock = clock
        self.mode = AndroidMode.PHONE
        self.accessory_strings: dict[StringIndex, str] = {}
        self.switches = 0
        self._back_at = 0.0
        self._session: AccessoryStreams | None = None  # the app's open accessory
        self._cut_min: int | None = None  # armed mid-write cable cut
        self._cut_pending = False
        self.last_cut: tuple[int, int] | None = None  # (bytes delivered, bytes written) of the cut write
        self._accessory_generations: set[int] = set()  # the attachments that were in accessory mode

    # ------------------------------------------------------------ the bus

    def _advance(self) -> None:
        """Lazily finish a re-enumeration whose time has come (called with or without the lock)."""
        if self.mode is AndroidMode.SWITCHING and self.clock() >= self._back_at:
            with self._cond:
                if self.mode is AndroidMode.SWITCHING:
                    self.mode = AndroidMode.ACCESSORY
                    self.generation += 1
                    self._accessory_generations.add(self.generation)
                    self._plugged = True
                    self._cond.notify_all()

    @property
    def plugged(self) -> bool:
        self._advance()
        return self._plugged

    def usb_ids(self) -> tuple[int, int]:
        if self.mode is AndroidMode.ACCESSORY:
            return GOOGLE_VID, ACCESSORY_ADB_PID if self.adb else ACCESSORY_PID
        return self.vid, self.pid

    def interfaces(self, generation: int | None = None) -> list[Interface]:
        adb = [Interface(0xFF, 0x42, 0x01, (0x03, 0x83))] if self.adb else []
        if (self.generation if generation is None else generation) in self._accessory_generations:
            return [Interface(0xFF, 0xFF, 0x00, (ACC_EP_OUT, ACC_EP_IN)), *adb]
        return [Interface(0x06, 0x01, 0x01, (0x02, 0x82)), *adb]  # MTP (still image class), then ADB

    def data_endpoints(self) -> tuple[int, int] | None:
        return (ACC_EP_OUT, ACC_EP_IN) if self.mode is AndroidMode.ACCESSORY else None

    def control(self, request_type: int, request: int, value: int, index: int, data: bytes, length: int) -> bytes:
        if not is_vendor_request(request_type):
            return super().control(request_type, request, value, index, data, length)
        self.control_log.append((request_type, request, value, index))
        if self.aoa_version < 1 or self.mode is not AndroidMode.PHONE:
            raise _stall()
        if request == AoaRequest.GET_PROTOCOL and request_type & 0x80:
            return self.aoa_version.to_bytes(2, "little")[:length]
        if request == AoaRequest.SEND_STRING and not request_type & 0x80 and index in tuple(StringIndex):
            self.accessory_strings[StringIndex(index)] = data.rstrip(b"\0").decode("utf-8", "replace")
            return b""
        if request == AoaRequest.START and not request_type & 0x80:
            with self._cond:
                self.mode = AndroidMode.SWITCHING
                self.switches += 1
                self._back_at = self.clock() + self.reenumerate_s
                self._plugged = False
                self.generation += 1  # the phone's handles die with it
                self._to_device.clear()
                self._to_host.clear()
                self._cond.notify_all()
            return b""
        raise _stall()

    def unplug(self) -> None:
        with self._cond:
            self.mode = AndroidMode.PHONE  # pulled out, the device leaves accessory mode
            self.accessory_strings.clear()
            self._cut_pending = False
        super().unplug()

    def replug(self) -> None:
        with self._cond:
            self.mode = AndroidMode.PHONE
        super().replug()

    # ------------------------------------------------------------ faults

    def cut_cable_mid_write(self, min_size: int = 32) -> None:
        """Arm: the next write toward the host of >= min_size bytes arrives half; then the cable is
        pulled as soon as the host has read that half (its next transfer fails: no device)."""
        with self._cond:
            self._cut_min = min_size

    def device_write(self, data: bytes) -> None:
        with self._cond:
            if self._cut_min is not None and len(data) >= self._cut_min and self._plugged:
                self._cut_min = None
                self._cut_pending = True
                self.last_cut = (len(data) // 2, len(data))
                data = data[: len(data) // 2]
        super().device_write(data)

    def host_read(self, generation: int, size: int, timeout_s: float) -> bytes:
        with self._cond:
            if self._cut_pending and not self._to_host:
                self._cut_pending = False
                cut = True
            else:
                cut = False
        if cut:
            self.unplug()
            raise _no_device()
        return super().host_read(generation, size, timeout_s)

    # ------------------------------------------------------------ the app's side (UsbManager)

    def accessory_attached(self) -> bool:
        """An accessory this device's app is filtered for is attached (USB_ACCESSORY_ATTACHED)."""
        self._advance()
        if self.mode is not AndroidMode.ACCESSORY or not self._plugged or self.app_filter is None:
            return False
        return self.app_filter.matches(self.accessory_strings.get(StringIndex.MANUFACTURER),
                                       self.accessory_strings.get(StringIndex.MODEL))

    def open_accessory(self) -> "AccessoryStreams | None":
        """UsbManager.openAccessory for the app: the streams, or None (no accessory, no match, busy)."""
        if not self.accessory_attached():
            return None
        with self._cond:
            if self._session is not None and not self._session.closed:
                return None  # one opener at a time (the driver says EBUSY)
            self._session = AccessoryStreams(self, self.generation)
            return self._session


class AccessoryStreams:
    """The accessory's file descriptor as the app sees it: `input.read(n)` blocks until bytes arrive
    and fails (OSError ENODEV) once the accessory is gone; `output.write(b)` likewise."""

    def __init__(self, device: VirtualAndroidDevice, generation: int) -> None:
        self.device = device
        self.generation = generation
        self.closed = False
        self.input = _AccessoryInput(self)
        self.output = _AccessoryOutput(self)

    def _check(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed accessory")
        device = self.device
        if not device._plugged or device.generation != self.generation:
            raise OSError(errno.ENODEV, "No such device (the accessory was detached)")

    def close(self) -> None:
        with self.device._cond:
            self.closed = True
            self.device._cond.notify_all()


class _AccessoryInput:
    def __init__(self, streams: AccessoryStreams) -> None:
        self._streams = streams

    def read(self, size: int) -> bytes:
        device = self._streams.device
        with device._cond:
            while True:
                self._streams._check()
                if device._to_device:
                    data = bytes(device._to_device[:size])
                    del device._to_device[:size]
                    return data
                device._cond.wait(0.5)

    def close(self) -> None:
        self._streams.close()


class _AccessoryOutput:
    def __init__(self, streams: AccessoryStreams) -> None:
        self._streams = streams

    def write(self, data: bytes | memoryview) -> int:
        with self._streams.device._cond:
            self._streams._check()
        self._streams.device.device_write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._streams.close()
