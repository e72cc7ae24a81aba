"""The one grammar of link URLs, for both ends of the cable (pyserial's `serial_for_url` idea).

    serial:/dev/ttyACM0   serial:COM3   serial:/dev/ttyGS0     a serial port by name (pyserial)
    socket://127.0.0.1:7001                                  TCP: the bridge connects, the device listens
    usb://1209:7D01[/SERIAL]                                 USB bulk endpoints (pyusb on the bridge)
    aoa://2A45:0C02[/SERIAL][,...]   aoa://*/SERIAL          the bridge: switch this Android POS (its USB ID
                                                             before the switch, or its serial number) to
                                                             Android Open Accessory mode and use it
    aoa                                                      the POS app: the accessory the bridge opened
    auto[:1209:7D01][?aoa=TARGET,...]                        the bridge: the first serial port with that
                                                             VID:PID; else the first listed Android POS (AOA)

An AOA target is `VID:PID`, `VID:PID/SERIAL` or `*/SERIAL`. The bridge sends AOA's vendor requests
only to a device a target names: scanners and card readers on the same PC are never touched.

Pure: `parse_link_url` only reads the text. The bridge's transports (bridge.transport) and the
device's wires (terminal.link.wires) each keep a table from scheme to implementation, so one
setting means the same thing at both ends and nothing above them knows which wire it has.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol.errors import CodedError

DEFAULT_VID = 0x1209  # pid.codes' shared vendor ID; the product ID is ours. Both are configuration.
DEFAULT_PID = 0x7D01
URL_FORMS = ("serial:NAME, socket://HOST:PORT, usb://VID:PID[/SERIAL], aoa://VID:PID[/SERIAL][,...], "
             "aoa://*/SERIAL, aoa or auto[:VID:PID][?aoa=VID:PID,...]")
AOA_TARGET_FORMS = "VID:PID, VID:PID/SERIAL or */SERIAL, as in 2A45:0C02 or */PS1234567"


class Scheme(str, enum.Enum):
    SERIAL = "serial"
    SOCKET = "socket"
    USB = "usb"
    AOA = "aoa"
    AUTO = "auto"


class LinkUrlError(CodedError, ValueError):
    """The URL does not follow the grammar; the message shows the right form."""

    code = "bad_link_url"


@dataclass(frozen=True, slots=True)
class AoaTarget:
    """An Android POS the bridge may switch to accessory mode: by USB ID (before the switch), by
    serial number, or both. `vid`/`pid` None: any USB ID (then `serial_no` is set)."""

    vid: int | None
    pid: int | None
    serial_no: str | None = None

    def __str__(self) -> str:
        ids = "*" if self.vid is None else f"{self.vid:04X}:{self.pid:04X}"
        return ids + (f"/{self.serial_no}" if self.serial_no else "")

    def names_ids(self, vid: int, pid: int) -> bool:
        return self.vid is None or (self.vid == vid and self.pid == pid)


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
    aoa_targets: tuple[AoaTarget, ...] = ()  # aoa, auto


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


def parse_aoa_targets(text: str, url: str) -> tuple[AoaTarget, ...]:
    targets = []
    for item in text.split(","):
        ids, sep, serial_no = item.partition("/")
        if sep and (not serial_no or any(c in serial_no for c in "/?# ")):
            raise LinkUrlError(f"{url!r}: {item!r} has an empty or malformed serial number; use {AOA_TARGET_FORMS}")
        if ids == "*":
            if not serial_no:
                raise LinkUrlError(f"{url!r}: '*' (any USB ID) needs a serial number, as in */PS1234567: "
                                   "the bridge never switches whatever is plugged in")
            targets.append(AoaTarget(None, None, serial_no))
            continue
        try:
            vid, pid = parse_vid_pid(ids, url)
        except LinkUrlError:
            raise LinkUrlError(f"{url!r}: {item!r} is not an Android POS; use {AOA_TARGET_FORMS}") from None
        targets.append(AoaTarget(vid, pid, serial_no or None))
    if len(set(targets)) != len(targets):
        raise LinkUrlError(f"{url!r}: names a target twice")
    return tuple(targets)


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
    if url == "aoa":
        return LinkUrl(Scheme.AOA, url)
    if url.startswith("aoa://"):
        body = url[len("aoa://"):]
        if not body:
            raise LinkUrlError(f"{url!r}: name the Android POS, as in aoa://2A45:0C02 or aoa://*/PS1234567")
        return LinkUrl(Scheme.AOA, url, aoa_targets=parse_aoa_targets(body, url))
    if url == "auto" or url.startswith(("auto:", "auto?")):
        head, sep, query = url.partition("?")
        targets: tuple[AoaTarget, ...] = ()
        if sep:
            name, eq, value = query.partition("=")
            if name != "aoa" or not eq or not value:
                raise LinkUrlError(f"{url!r}: the only option of auto is ?aoa=TARGET[,TARGET...] ({AOA_TARGET_FORMS})")
            targets = parse_aoa_targets(value, url)
        if head == "auto":
            return LinkUrl(Scheme.AUTO, url, aoa_targets=targets)
        if head.startswith("auto:"):
            vid, pid = parse_vid_pid(head[len("auto:"):], url)
            return LinkUrl(Scheme.AUTO, url, vid=vid, pid=pid, aoa_targets=targets)
    raise LinkUrlError(f"unknown {what} {url!r}; use {URL_FORMS}")
