"""The device's end of a serial line (pyserial): a real POS's USB gadget port (/dev/ttyGS0), a
USB-serial adapter, or the slave side of a pty. A `Wire` (terminal.link.wire) for the device endpoint.

The port is (re)opened lazily: when the host side vanishes (the cable is pulled, the gadget is
unbound) reads fail, the port is closed, and the next read tries to open it again every
REOPEN_INTERVAL_S, announcing a new session (WireReset) once it is back, so the link handshakes
again. `unplug()`/`replug()` do the same on purpose.
"""

from __future__ import annotations

import threading
import time

import serial

from terminal.link.wire import WireReset

REOPEN_INTERVAL_S = 0.5


class SerialWire:
    def __init__(self, port: str, *, baud: int = 115200) -> None:
        self.port = port
        self.baud = baud
        self._serial: serial.SerialBase | None = None
        self._plugged = True
        self._lock = threading.Lock()
        self._next_open = 0.0
        self.last_error: str | None = None

    @property
    def bridge_url(self) -> str:
        return f"serial:{self.port}"  # the host names its own end; this is ours, for logs

    def _open(self) -> serial.SerialBase | None:
        with self._lock:
            if self._serial is not None or not self._plugged or time.monotonic() < self._next_open:
                return self._serial
            try:
                self._serial = serial.serial_for_url(self.port, baudrate=self.baud, timeout=0, write_timeout=1.0)
                self.last_error = None
            except (serial.SerialException, OSError, ValueError) as exc:
                self.last_error = str(exc)
                self._next_open = time.monotonic() + REOPEN_INTERVAL_S
                return None
        raise WireReset(f"{self.port} opened")

    def _drop(self, why: str) -> None:
        with self._lock:
            port, self._serial = self._serial, None
            self.last_error = why
            self._next_open = time.monotonic() + REOPEN_INTERVAL_S
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass

    def read(self, max_bytes: int, timeout: float) -> bytes:
        port = self._serial or self._open()
        if port is None:
            time.sleep(timeout)
            return b""
        try:
            port.timeout = timeout
            first: bytes = port.read(1)  # pyserial is untyped
            if not first:
                return b""
            rest: bytes = port.read(min(max_bytes - 1, port.in_waiting))  # pyserial is untyped
            return first + rest
        except (serial.SerialException, OSError, TypeError) as exc:
            self._drop(str(exc))
            raise WireReset(f"{self.port}: {exc}") from None

    def write(self, data: bytes) -> None:
        port = self._serial
        if port is None:
            return  # nobody there: a UART would send into the void
        try:
            port.write(data)
        except (serial.SerialException, OSError) as exc:
            self._drop(str(exc))

    def unplug(self) -> None:
        self._plugged = False
        self._drop("unplugged")

    def replug(self) -> None:
        self._plugged = True
        self._next_open = 0.0

    def close(self) -> None:
        self.unplug()
