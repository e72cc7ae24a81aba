"""`auto[:VID:PID][?aoa=...]`: the first serial port whose USB VID:PID matches, found anew at every
open; with `?aoa=`, else the first listed Android POS through the accessory protocol (AutoTransport).

A USB-serial POS may come back on another name after a replug (COM4 -> COM5); rediscovering on
every open follows it. `list_serial_ports` is what `his-bridge ports` shows field engineers.
"""

from __future__ import annotations

from dataclasses import dataclass

from serial.tools import list_ports

from bridge.transport.base import Transport, TransportClosed, TransportError
from bridge.transport.serial_port import SerialTransport


@dataclass(frozen=True, slots=True)
class PortInfo:
    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    description: str

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X}" if self.vid is not None and self.pid is not None else ""


def list_serial_ports() -> list[PortInfo]:
    ports = [PortInfo(p.device, p.vid, p.pid, p.serial_number, p.description or "") for p in list_ports.comports()]
    return sorted(ports, key=lambda p: p.device)


class AutoSerialTransport(SerialTransport):
    def __init__(self, vid: int, pid: int, *, baud: int = 115200) -> None:
        super().__init__("(not yet found)", baud=baud)
        self.vid, self.pid = vid, pid
        self.url = f"auto:{vid:04X}:{pid:04X}"

    def open(self) -> None:
        ports = list_serial_ports()
        matches = [p for p in ports if p.vid == self.vid and p.pid == self.pid]
        if not matches:
            seen = ", ".join(f"{p.device} [{p.usb_id or 'no USB ID'}]" for p in ports) or "none"
            raise TransportError(
                f"no serial port with USB ID {self.vid:04X}:{self.pid:04X}; is the POS plugged in? (ports seen: {seen})"
            )
        self.port_name = matches[0].device
        url = self.url
        try:
            super().open()
        finally:
            self.url = url


class AutoTransport:
    """`auto[:VID:PID]?aoa=TARGET,...`: a USB-serial POS first (as `auto`), else a listed Android POS
    through the accessory protocol (bridge.transport.aoa). Both are looked for anew at every open."""

    def __init__(self, serial: AutoSerialTransport, aoa: Transport, url: str) -> None:
        self.serial, self.aoa, self.url = serial, aoa, url
        self.active: Transport | None = None

    def open(self) -> None:
        self.close()
        try:
            self.serial.open()
            self.active = self.serial
            return
        except TransportError as exc:
            serial_problem = str(exc)
        try:
            self.aoa.open()
        except TransportError as exc:
            raise TransportError(f"{serial_problem}; and {exc}") from None
        self.active = self.aoa

    def _wire(self) -> Transport:
        if self.active is None:
            raise TransportClosed(f"{self.url} is not open")
        return self.active

    def read(self, max_bytes: int, timeout: float) -> bytes:
        return self._wire().read(max_bytes, timeout)

    def write(self, data: bytes) -> None:
        self._wire().write(data)

    def close(self) -> None:
        active, self.active = self.active, None
        if active is not None:
            active.close()
