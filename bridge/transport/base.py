"""One interface for every wire between the PC and the POS (pyserial's `serial_for_url` idea).

A transport is chosen by a URL-like setting:

    serial:/dev/ttyACM0      serial:COM3           a serial port by name (pyserial)
    socket://127.0.0.1:7001                        TCP, as pyserial's socket:// URL (tests, simulator)
    usb://1209:7D01[/SERIAL]                       raw USB bulk endpoints via pyusb
    auto[:1209:7D01]                               the first serial port whose USB VID:PID matches

Nothing above this layer knows which wire it has. Unplugging raises TransportClosed from read or
write; the owner reopens (the bridge retries with backoff) and restarts the link handshake.
"""

from __future__ import annotations

from typing import Protocol

from protocol.errors import CodedError
from protocol.linkurl import DEFAULT_PID, DEFAULT_VID  # our POS's USB identity (configuration)

__all__ = ["DEFAULT_PID", "DEFAULT_VID", "Transport", "TransportClosed", "TransportError"]


class TransportError(CodedError):
    """The wire could not be opened or used; the message says what to check."""

    code = "transport"


class TransportClosed(TransportError):
    """The wire went away (cable unplugged, peer closed). Reopen and handshake again."""

    code = "transport_closed"


class Transport(Protocol):
    url: str

    def open(self) -> None: ...

    def read(self, max_bytes: int, timeout: float) -> bytes:
        """Up to max_bytes; b"" if nothing arrived within timeout seconds."""

    def write(self, data: bytes) -> None:
        """All of data, or raise."""

    def close(self) -> None: ...
