"""The device end's wires, chosen by URL (protocol.linkurl's grammar, the same as the bridge's):

    serial:/dev/ttyGS0          the POS's USB gadget serial port (or any serial port, pyserial)
    socket://127.0.0.1:7001     listen on TCP for the bridge (benchmarks, a POS behind a LAN adapter)
    aoa                         an Android POS: the USB accessory the bridge opened (Android Open
                                Accessory; terminal.link.accessory_wire around android_accessory)

`open_wire(url)` builds one; the endpoint (terminal.link.endpoint) never knows which it has. The
other schemes of the grammar name the PC's side of a USB cable (`usb://`, `aoa://...`, `auto`): on the device,
that cable is the device itself, so they are refused here with what to use instead. The simulator
builds its own wires (a pty, its virtual USB device) and hands them to the endpoint directly.
"""

from __future__ import annotations

import importlib.util
from typing import Callable

from protocol.errors import CodedError
from protocol.linkurl import LinkUrl, LinkUrlError, Scheme, parse_link_url
from terminal.link.accessory_wire import AccessoryWire
from terminal.link.android_accessory import open_android_accessory
from terminal.link.serial_wire import SerialWire
from terminal.link.tcp_wire import TcpWire
from terminal.link.wire import Wire

DEVICE_URL_FORMS = "serial:/dev/ttyGS0 (or another serial port), socket://127.0.0.1:PORT or aoa (an Android POS)"


class WireError(CodedError, ValueError):
    """The wire cannot be opened; the message says what to fix."""

    code = "bad_wire"


def _serial(link: LinkUrl, baud: int) -> Wire:
    return SerialWire(link.port_name, baud=baud)


def _socket(link: LinkUrl, baud: int) -> Wire:
    del baud  # TCP has no line rate
    try:
        return TcpWire(link.host, link.port)
    except OSError as exc:
        raise WireError(f"cannot listen on {link.text}: {exc}") from None


def _accessory(link: LinkUrl, baud: int) -> Wire:
    del baud  # USB has no line rate
    if link.aoa_targets:  # aoa://VID:PID names the POS as the PC sees it
        raise WireError(f"{link.text!r} names the PC's end of the cable; on the POS use plain aoa")
    if importlib.util.find_spec("jnius") is None:
        raise WireError("aoa is the Android app's USB accessory and needs pyjnius (python-for-android); "
                        "on this machine use serial:PORT or socket://127.0.0.1:PORT")
    return AccessoryWire(open_android_accessory)


WIRE_SCHEMES: dict[Scheme, Callable[[LinkUrl, int], Wire]] = {
    Scheme.SERIAL: _serial, Scheme.SOCKET: _socket, Scheme.AOA: _accessory,
}


def open_wire(url: str, *, baud: int = 115200) -> Wire:
    """The device-end wire a link URL names."""
    try:
        link = parse_link_url(url)
    except LinkUrlError as exc:
        raise WireError(f"{exc}; on the device use {DEVICE_URL_FORMS}") from None
    factory = WIRE_SCHEMES.get(link.scheme)
    if factory is None:
        raise WireError(f"{url!r} names the PC's end of the cable; on the device use {DEVICE_URL_FORMS}")
    return factory(link, baud)
