"""`serial:NAME`: a serial port through pyserial (COM3, /dev/ttyACM0, a pty, or any pyserial URL).

pyserial's `read(n)` waits until n bytes or the timeout; the link needs "whatever has arrived", so
`read` waits for one byte and then takes what the driver already holds (`in_waiting`).
"""

from __future__ import annotations

import serial

from bridge.transport.base import TransportClosed, TransportError

# A write that cannot finish in this long means the device stopped reading: treat it as unplugged.
WRITE_TIMEOUT_S = 2.0


class SerialTransport:
    def __init__(self, port_name: str, *, baud: int = 115200, write_timeout_s: float = WRITE_TIMEOUT_S) -> None:
        if not port_name:
            raise TransportError("serial: needs a port name, as in serial:COM3 or serial:/dev/ttyACM0")
        self.port_name = port_name
        self.url = f"serial:{port_name}"
        self.baud = baud
        self.write_timeout_s = write_timeout_s
        self._port: serial.SerialBase | None = None
        self._timeout: float | None = None

    def open(self) -> None:
        self.close()
        try:
            port = serial.serial_for_url(
                self.port_name,
                baudrate=self.baud,
                timeout=0.05,
                write_timeout=self.write_timeout_s,
                exclusive=True,
                do_not_open=True,
            )
            port.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(
                f"cannot open {self.url}: {exc}; is the POS plugged in, is the name right "
                "(his-bridge ports lists them), and is no other program (another bridge service?) using it?"
            ) from None
        self._timeout = 0.05
        try:
            # Bytes left in the driver from a previous session would only be garbage to the decoder.
            port.reset_input_buffer()
        except (serial.SerialException, OSError):
            pass
        self._port = port

    def _require(self) -> serial.SerialBase:
        if self._port is None:
            raise TransportClosed(f"{self.url} is not open")
        return self._port

    def read(self, max_bytes: int, timeout: float) -> bytes:
        port = self._require()
        timeout = max(0.0, timeout)
        try:
            if timeout != self._timeout:
                port.timeout = timeout  # pyserial reconfigures the port on every change: cache it
                self._timeout = timeout
            first = port.read(1)
            if not first:
                return b""
            waiting = port.in_waiting
            if waiting and max_bytes > 1:
                return first + port.read(min(waiting, max_bytes - 1))
            return first
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            # TypeError/AttributeError: pyserial's state after the port vanished under a read.
            raise TransportClosed(f"{self.url}: read failed ({exc}); cable unplugged?") from None

    def write(self, data: bytes) -> None:
        port = self._require()
        try:
            port.write(data)
        except serial.SerialTimeoutException:
            raise TransportClosed(f"{self.url}: the device stopped reading (write timed out)") from None
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            raise TransportClosed(f"{self.url}: write failed ({exc}); cable unplugged?") from None

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass
