"""Device transports: pick one by URL (see `base` for the interface and the URL forms).

    open_transport("serial:COM3")                    -> opened SerialTransport
    open_transport("socket://127.0.0.1:7001")        -> opened TcpTransport
    open_transport("usb://1209:7D01/PS-0001", usb_backend=b) -> opened UsbTransport
    open_transport("aoa://2A45:0C02", usb_backend=b) -> opened AoaTransport (an Android POS, switched)
    open_transport("auto:1209:7D01")                 -> opened AutoSerialTransport
    open_transport("auto?aoa=2A45:0C02")             -> opened AutoTransport (serial first, then AOA)

`make_transport` builds without opening (to validate configuration, or to open later);
`open_transport` builds and opens. Both raise TransportError with a message a field engineer can
act on. After TransportClosed, call `.open()` again (or open_transport anew) and re-handshake.
"""

from __future__ import annotations

from bridge.transport.base import DEFAULT_PID, DEFAULT_VID, Transport, TransportClosed, TransportError
from bridge.transport.aoa import AoaNotSupported, AoaTransport, UsbDeviceInfo, list_usb_devices
from bridge.transport.discovery import AutoSerialTransport, AutoTransport, PortInfo, list_serial_ports
from bridge.transport.serial_port import SerialTransport
from bridge.transport.tcp import TcpTransport
from bridge.transport.usb_bulk import UsbTransport
from protocol.linkurl import URL_FORMS, LinkUrlError, Scheme, parse_link_url

__all__ = [
    "DEFAULT_PID", "DEFAULT_VID", "Transport", "TransportClosed", "TransportError", "AoaNotSupported",
    "AoaTransport", "AutoSerialTransport", "AutoTransport", "UsbDeviceInfo", "list_usb_devices",
    "PortInfo", "SerialTransport", "TcpTransport", "UsbTransport", "list_serial_ports", "make_transport",
    "open_transport", "URL_FORMS",
]


def make_transport(url: str, *, baud: int = 115200, usb_backend: object = None) -> Transport:
    """Build the transport a URL names (protocol.linkurl's grammar), without opening it."""
    try:
        link = parse_link_url(url, what="transport URL")
    except LinkUrlError as exc:
        raise TransportError(str(exc)) from None
    if link.scheme is Scheme.SERIAL:
        return SerialTransport(link.port_name, baud=baud)
    if link.scheme is Scheme.SOCKET:
        return TcpTransport(link.host, link.port)
    if link.scheme is Scheme.USB:
        return UsbTransport(link.vid, link.pid, link.serial_no, backend=usb_backend)
    if link.scheme is Scheme.AOA:
        return AoaTransport(link.aoa_targets, backend=usb_backend, url=url)
    serial = AutoSerialTransport(link.vid, link.pid, baud=baud)
    if not link.aoa_targets:
        return serial
    return AutoTransport(serial, AoaTransport(link.aoa_targets, backend=usb_backend), url)


def open_transport(url: str, *, baud: int = 115200, usb_backend: object = None) -> Transport:
    """Build and open the transport a URL names."""
    transport = make_transport(url, baud=baud, usb_backend=usb_backend)
    transport.open()
    return transport
