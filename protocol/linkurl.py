"""The one grammar of link URLs, for both ends of the cable (pyserial's `serial_for_url` idea).

    serial:/dev/ttyACM0   serial:COM3   serial:/dev/ttyGS0     a serial port by name (pyserial)
    socket://127.0.0.1:7001                                  TCP: the bridge connects, the device listens
    usb://1209:7D01[/SERIAL]                                 USB bulk endpoints (pyusb on the bridge)
    auto[:1209:7D01]                                         the bridge: the first serial port with that VID:PID

Pure: `parse_link_url` only reads the text. The bridge's transports (bridge.transport) and the
device's wires (terminal.link.wires) each keep a table from scheme to implementation, so one
setting means the same thing at both ends and nothing above them knows which wire it has.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

DEFAULT_VID = 0x1209  # pid.codes' shared vendor ID; the product ID is ours. Both are configuration.
DEFAULT_PID = 0x7D01
URL_FORMS = "serial:NAME, socket://HOST:PORT, usb://VID:PID[/SERIAL] or auto[:VID:PID]"


class Scheme(str, enum.Enum):
    SERIAL = "serial"
    SOCKET = "socket"
    USB = "usb"
    AUTO = "auto"


class LinkUrlError(ValueError):
    """The URL does not follow the grammar; the message shows the right form."""


@dataclass(frozen=True, slots=True)
class LinkUrl:
    scheme: Scheme
    text: str  # the URL as written
    port_name: str = ""  # serial
    host: str = ""  # socket
    port: int = 0  # socket
    vid: int = DEFAULT_VID  # usb, auto
    pid: int = DEFAULT_PID  # usb, auto
    serial_no: str | None = None  # usb


def parse_vid_pid(text: str, url: str) -> tuple[int, int]:
    vid_text, sep, pid_text = text.partition(":")
    try:
        if not sep or len(vid_text) != 4 or len(pid_text) != 4:
            raise ValueError
        return int(vid_text, 16), int(pid_text, 16)
    except ValueError:
        raise LinkUrlError(f"{url!r}: VID:PID must be two 4-digit hex numbers, as in 1209:7D01") from None


def parse_host_port(rest: str, url: str) -> tuple[str, int]:
    host, sep, port_text = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise LinkUrlError(f"{url!r}: expected socket://HOST:PORT, as in socket://127.0.0.1:7001")
    return host, int(port_text)


def parse_link_url(url: object, *, what: str = "link URL") -> LinkUrl:
    """Read one link URL; LinkUrlError says what is wrong and shows the forms. `what` names the
    setting in messages (the bridge says "transport URL", as its configuration does)."""
    if not isinstance(url, str) or not url:
        raise LinkUrlError(f"empty {what}; use {URL_FORMS}")
    if url.startswith("serial:"):
        name = url[len("serial:"):]
        if not name:
            raise LinkUrlError(f"{url!r}: name the port, as in serial:COM3 or serial:/dev/ttyACM0")
        return LinkUrl(Scheme.SERIAL, url, port_name=name)
    if url.startswith("socket://"):
        host, port = parse_host_port(url[len("socket://"):], url)
        return LinkUrl(Scheme.SOCKET, url, host=host, port=port)
    if url.startswith("usb://"):
        ids, _, serial_no = url[len("usb://"):].partition("/")
        vid, pid = parse_vid_pid(ids, url)
        return LinkUrl(Scheme.USB, url, vid=vid, pid=pid, serial_no=serial_no or None)
    if url == "auto":
        return LinkUrl(Scheme.AUTO, url)
    if url.startswith("auto:"):
        vid, pid = parse_vid_pid(url[len("auto:"):], url)
        return LinkUrl(Scheme.AUTO, url, vid=vid, pid=pid)
    raise LinkUrlError(f"unknown {what} {url!r}; use {URL_FORMS}")
