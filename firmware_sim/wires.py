"""The simulator's own wires for the device end of the link (terminal.link.wire.Wire):

- `PtyWire`: a pty pair; the device holds the master, the bridge opens the slave as `serial:<path>`
  (a stable symlink with `link_path`, as udev's /dev/serial/by-id names are).
- `UsbWire`: the device side of a `VirtualUsbDevice` (firmware_sim.usb_backend); the bridge opens
  `usb://VID:PID/SERIAL` with `wire.backend` as its pyusb backend.
- `AndroidUsbWire`: an Android POS (firmware_sim.android_usb.VirtualAndroidDevice) running the POS
  app's own accessory wire (terminal.link.accessory_wire); the bridge opens `aoa://VID:PID/SERIAL`
  with `wire.backend`, switches the device and talks to the accessory.
- TCP is production's `terminal.link.tcp_wire.TcpWire` (`socket://`), used as is.

Each can `unplug()` and `replug()`. Shortcuts: `pty_endpoint(handler, identity=..., device_key_seed=...,
link_path=...)`, `tcp_endpoint(...)`, `usb_endpoint(..., serial_no=...)` (call `.start()`).
"""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path
from typing import Any

from terminal.link.endpoint import DeviceEndpoint, DeviceHandler
from terminal.link.tcp_wire import TcpWire
from terminal.link.accessory_wire import AccessoryWire
from terminal.link.wire import WireReset

from firmware_sim.android_usb import VirtualAndroidDevice
from firmware_sim.usb_backend import VirtualUsbBackend, VirtualUsbDevice

__all__ = ["AndroidUsbWire", "PtyWire", "TcpWire", "UsbWire", "aoa_endpoint", "pty_endpoint", "tcp_endpoint",
           "usb_endpoint"]


class PtyWire:
    """A pty pair: the device holds the master, the bridge opens the slave as a serial port.

    With `link_path`, a symlink there always points at the current slave (as udev's
    /dev/serial/by-id names do), so the bridge's `serial:` URL survives unplug/replug.
    """

    def __init__(self, link_path: str | Path | None = None) -> None:
        self.link_path = Path(link_path) if link_path else None
        self._lock = threading.Lock()
        self._master = -1
        self._slave = -1
        self.slave_path = ""
        self._open()

    def _open(self) -> None:
        import tty  # POSIX only: imported here so TCP and USB endpoints also run on Windows

        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline, before anyone writes
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        if self.link_path is not None:
            tmp = self.link_path.with_name(self.link_path.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.slave_path)
            os.replace(tmp, self.link_path)

    @property
    def bridge_url(self) -> str:
        return f"serial:{self.link_path or self.slave_path}"

    def read(self, max_bytes: int, timeout: float) -> bytes:
        master = self._master
        if master < 0:
            time.sleep(timeout)
            return b""
        try:
            ready, _, _ = select.select([master], [], [], timeout)
            return os.read(master, max_bytes) if ready else b""
        except (BlockingIOError, InterruptedError):
            return b""
        except (OSError, ValueError):
            # The master was closed under us (unplug) or no slave is open: nothing to read.
            if self._master == master:
                time.sleep(min(timeout, 0.01))
                return b""
            raise WireReset("pty replaced") from None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 1.0
        while view and self._master >= 0:
            try:
                view = view[os.write(self._master, view):]
            except BlockingIOError:
                # The slave's input queue is full: nobody is reading. A UART would overrun; drop.
                if time.monotonic() > deadline:
                    return
                select.select([], [self._master], [], 0.05)
            except OSError:
                return

    def unplug(self) -> None:
        with self._lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    os.close(fd)
            self._master = self._slave = -1

    def replug(self) -> None:
        with self._lock:
            if self._master < 0:
                self._open()

    def close(self) -> None:
        self.unplug()
        if self.link_path is not None:
            self.link_path.unlink(missing_ok=True)


class UsbWire:
    """The device side of a `VirtualUsbDevice`; `backend` is what the bridge passes to pyusb."""

    def __init__(self, device: VirtualUsbDevice | None = None) -> None:
        self.device = device or VirtualUsbDevice()
        self.backend = VirtualUsbBackend(self.device)
        self._generation = self.device.generation

    @property
    def bridge_url(self) -> str:
        return f"usb://{self.device.vid:04X}:{self.device.pid:04X}/{self.device.serial_no}"

    def read(self, max_bytes: int, timeout: float) -> bytes:
        generation, data = self.device.device_read(max_bytes, timeout)
        if generation != self._generation:
            self._generation = generation
            raise WireReset("the USB device was re-attached")
        return data

    def write(self, data: bytes) -> None:
        self.device.device_write(data)

    def unplug(self) -> None:
        self.device.unplug()

    def replug(self) -> None:
        self.device.replug()

    def close(self) -> None:
        self.device.unplug()


class AndroidUsbWire:
    """An Android POS on the simulated bus: the app's production AccessoryWire over the simulated
    device's accessory. `unplug`/`replug` pull and plug the cable (the device comes back as a phone);
    `restart_app` closes the accessory and lets the app open it again."""

    def __init__(self, device: VirtualAndroidDevice | None = None, *, reopen_interval_s: float = 0.05,
                 backend: VirtualUsbBackend | None = None) -> None:
        self.device = device or VirtualAndroidDevice()
        self.backend = backend or VirtualUsbBackend(self.device)
        self.app = AccessoryWire(self.device.open_accessory, reopen_interval_s=reopen_interval_s)

    @property
    def bridge_url(self) -> str:
        return f"aoa://{self.device.vid:04X}:{self.device.pid:04X}/{self.device.serial_no}"

    def read(self, max_bytes: int, timeout: float) -> bytes:
        return self.app.read(max_bytes, timeout)

    def write(self, data: bytes) -> None:
        self.app.write(data)

    def unplug(self) -> None:
        self.device.unplug()

    def replug(self) -> None:
        self.device.replug()

    def restart_app(self) -> None:
        self.app.unplug()
        self.app.replug()

    def close(self) -> None:
        self.app.close()
        self.device.unplug()


def pty_endpoint(handler: DeviceHandler, **kwargs: Any) -> DeviceEndpoint:  # kwargs: DeviceEndpoint's own
    link_path = kwargs.pop("link_path", None)
    return DeviceEndpoint(PtyWire(link_path), handler, **kwargs)


def tcp_endpoint(handler: DeviceHandler, **kwargs: Any) -> DeviceEndpoint:  # kwargs: DeviceEndpoint's own
    return DeviceEndpoint(TcpWire(), handler, **kwargs)


def usb_endpoint(handler: DeviceHandler, *, serial_no: str = "PS-0001", **kwargs: Any) -> DeviceEndpoint:  # kwargs: DeviceEndpoint's own
    return DeviceEndpoint(UsbWire(VirtualUsbDevice(serial_no=serial_no)), handler, **kwargs)


def aoa_endpoint(handler: DeviceHandler, *, serial_no: str = "AP-0001", **kwargs: Any) -> DeviceEndpoint:  # kwargs: DeviceEndpoint's own
    return DeviceEndpoint(AndroidUsbWire(VirtualAndroidDevice(serial_no=serial_no)), handler, **kwargs)
