"""Attach a running TerminalService to a device-side link: what `pos-app` on a real POS calls.

    detach = attach_service(service, "serial:/dev/ttyGS0")        # USB gadget serial on the POS
    detach = attach_service(service, "tcp://127.0.0.1:7001")       # listen for the bridge (bench)
    ...
    detach()

terminal/ui/standalone.py looks this up (LINK_HOST). The device's identity and key come from its
secure storage, a directory provisioned by `pos-flash provision new-device`: `device_dir`, or the
environment variable POS_DEVICE_DIR. The configuration the service runs must be for that device.
As in the simulator, the application talks only to a bridge (firmware_sim.firmware.AppLink): a
maintenance host (pos-flash) never receives, so never acknowledges, a result meant for HIS. This
host has no bootloader of its own; flashing a real POS is the platform's business.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from protocol.flash import FlashError
from protocol.link.session import LinkTimers
from terminal.link_handler import ServiceLinkHandler
from terminal.service import TerminalService

from firmware_sim.endpoint import DeviceEndpoint, TcpWire
from firmware_sim.firmware import SIM_VERSION, AppLink
from firmware_sim.provision import ProvisionedDevice, load_device
from firmware_sim.serial_wire import SerialWire

DEVICE_DIR_ENV = "POS_DEVICE_DIR"


class DeviceHostError(RuntimeError):
    """The link cannot be attached; the message says what to fix."""


@dataclass
class _Application:
    """What AppLink needs to know about the application it serves."""

    device: ProvisionedDevice
    handler: ServiceLinkHandler | None
    problem: str | None = None
    cut: bool = False
    started_at: float = field(default_factory=time.time)


def make_wire(link_url: str, *, baud: int = 115200) -> object:
    if link_url.startswith("serial:"):
        return SerialWire(link_url[len("serial:"):], baud=baud)
    if link_url.startswith("tcp://"):
        host, _, port = link_url[len("tcp://"):].rpartition(":")
        try:
            return TcpWire(host or "127.0.0.1", int(port))
        except (ValueError, OSError) as exc:
            raise DeviceHostError(f"cannot listen on {link_url}: {exc}") from None
    raise DeviceHostError(f"unknown link {link_url!r}: use serial:/dev/ttyGS0 (or another serial port) or tcp://127.0.0.1:PORT")


def attach_service(service: TerminalService, link_url: str, *, device_dir: str | os.PathLike[str] | None = None,
                   timers: LinkTimers = LinkTimers(), baud: int = 115200) -> Callable[[], None]:
    """Serve `service` on the link; returns the function that detaches it (stops the link)."""
    directory = device_dir or os.environ.get(DEVICE_DIR_ENV)
    if not directory:
        raise DeviceHostError(f"the device's secure storage is unknown: set {DEVICE_DIR_ENV} to the directory "
                              "`pos-flash provision new-device --dir` created")
    try:
        device = load_device(Path(directory))
    except FlashError as exc:
        raise DeviceHostError(f"{directory}: {exc.detail}") from None
    configured = service.config.device.device_id
    if configured != device.device_id:
        raise DeviceHostError(f"the configuration is for device {configured}, but {directory} holds {device.device_id}")
    wire = make_wire(link_url, baud=baud)
    handler = ServiceLinkHandler(service)
    app = _Application(device, handler)
    endpoint = DeviceEndpoint(wire, AppLink(app, service.clock), identity=device.identity(f"pos-app {SIM_VERSION}"),  # type: ignore[arg-type]
                              device_key_seed=device.device_key_seed, timers=timers).start()

    def detach() -> None:
        endpoint.stop()
        handler.close()

    return detach
