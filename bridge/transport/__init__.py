"""Device transports: pick one by URL (see `base` for the interface and the URL forms).

    open_transport("serial:COM3")                    -> opened SerialTransport
    open_transport("socket://127.0.0.1:7001")        -> opened TcpTransport
    open_transport("usb://1209:7D01/PS-0001", usb_backend=b) -> opened UsbTransport
    open_transport("auto:1209:7D01")                 -> opened AutoSerialTransport

`make_transport` builds without opening (to validate configuration, or to open later);
`open_transport` builds and opens. Both raise TransportError with a message a field engineer can
act on. After TransportClosed, call `.open()` again (or open_transport anew) and re-handshake.
"""

from __future__ import annotations

from bridge.transport.base import DEFAULT_PID, DEFAULT_VID, Transport, TransportClosed, TransportError
from bridge.transport.discovery import AutoSerialTransport, PortInfo, list_serial_ports
from bridge.transport.serial_port import SerialTransport
from bridge.transport.tcp import TcpTransport, parse_host_port
from bridge.transport.usb_bulk import UsbTransport

URL_FORMS = "serial:NAME, socket://HOST:PORT, usb://VID:PID[/SERIAL] or auto[:VID:PID]"

__all__ = [
    "DEFAULT_PID", "DEFAULT_VID", "Transport", "TransportClosed", "TransportError", "AutoSerialTransport",
    "PortInfo", "SerialTransport", "TcpTransport", "UsbTransport", "list_serial_ports", "make_transport",
    "open_transport", "parse_vid_pid", "URL_FORMS",
]


def parse_vid_pid(text: str, url: str) -> tuple[int, int]:
    vid_text, sep, pid_text = text.partition(":")
    try:
        if not sep or len(vid_text) != 4 or len(pid_text) != 4:
            raise ValueError
        return int(vid_text, 16), int(pid_text, 16)
    except ValueError:
        raise TransportError(f"{url!r}: VID:PID must be two 4-digit hex numbers, as in 1209:7D01") from None


def make_transport(url: str, *, baud: int = 115200, usb_backend: object = None) -> Transport:
    """Build the transport a URL names, without opening it."""
    if not isinstance(url, str) or not url:
        raise TransportError(f"empty transport URL; use {URL_FORMS}")
    if url.startswith("serial:"):
        return SerialTransport(url[len("serial:"):], baud=baud)
    if url.startswith("socket://"):
        host, port = parse_host_port(url[len("socket://"):], url)
        return TcpTransport(host, port)
    if url.startswith("usb://"):
        rest = url[len("usb://"):]
        ids, _, serial_no = rest.partition("/")
        vid, pid = parse_vid_pid(ids, url)
        return UsbTransport(vid, pid, serial_no or None, backend=usb_backend)
    if url == "auto":
        return AutoSerialTransport(DEFAULT_VID, DEFAULT_PID, baud=baud)
    if url.startswith("auto:"):
        vid, pid = parse_vid_pid(url[len("auto:"):], url)
        return AutoSerialTransport(vid, pid, baud=baud)
    raise TransportError(f"unknown transport URL {url!r}; use {URL_FORMS}")


def open_transport(url: str, *, baud: int = 115200, usb_backend: object = None) -> Transport:
    """Build and open the transport a URL names."""
    transport = make_transport(url, baud=baud, usb_backend=usb_backend)
    transport.open()
    return transport
