"""The interface every device-side wire honours (pyserial's SerialBase idea): the link endpoint
(terminal.link.endpoint) moves bytes through it and never knows which wire it has.

A wire raises `WireReset` from `read` when a new host session begins (a host connected, the port came
back, the USB device was re-attached): the endpoint then restarts the link handshake.
"""

from __future__ import annotations

from typing import Protocol

from protocol.errors import CodedError


class WireReset(CodedError):
    """The host side went away or a new host connection began: the link session is over."""

    code = "wire_reset"


class Wire(Protocol):
    @property
    def bridge_url(self) -> str: ...

    def read(self, max_bytes: int, timeout: float) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    def unplug(self) -> None: ...
    def replug(self) -> None: ...
    def close(self) -> None: ...
