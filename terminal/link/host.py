"""Attach a running TerminalService to the device end of the link: what `pos-app` on a real POS does.

    detach = attach_service(service, "serial:/dev/ttyGS0", device_dir="/data/pos")   # USB gadget serial
    detach = attach_service(service, "socket://127.0.0.1:7001", device_dir=...)        # listen for the bridge
    ...
    detach()

The device's identity and key come from its secure storage (terminal.identity): `device_dir`, or the
environment variable POS_DEVICE_DIR. The configuration the service runs must be for that device.
The application talks only to a bridge (terminal.link.app_link.AppLink): a maintenance host never
receives, so never acknowledges, a result meant for HIS. This host has no bootloader of its own;
flashing a real POS is the platform's business.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from protocol.errors import CodedError
from protocol.flash import FlashError
from protocol.link.session import LinkTimers
from terminal import __version__
from terminal.identity import ProvisionedDevice, load_identity
from terminal.link.app_link import AppLink
from terminal.link.endpoint import DeviceEndpoint
from terminal.link.service_handler import ServiceLinkHandler
from terminal.link.wires import WireError, open_wire
from terminal.service import TerminalService

DEVICE_DIR_ENV = "POS_DEVICE_DIR"


class DeviceHostError(CodedError, RuntimeError):
    """The link cannot be attached; the message says what to fix."""

    code = "device_host"


@dataclass
class _Application:
    """The running application, as AppLink sees it (terminal.link.app_link.HostedApplication)."""

    device: ProvisionedDevice
    handler: ServiceLinkHandler | None
    problem: str | None = None
    cut: bool = False
    started_at: float = field(default_factory=time.time)

    @property
    def device_id(self) -> str:
        return self.device.device_id


def firmware_text() -> str:
    """The HELLO 'firmware' field of the POS app."""
    return f"pos-app {__version__}"


def load_device(device_dir: str | os.PathLike[str] | None) -> ProvisionedDevice:
    directory = device_dir or os.environ.get(DEVICE_DIR_ENV)
    if not directory:
        raise DeviceHostError(f"the device's secure storage is unknown: set {DEVICE_DIR_ENV} to the directory "
                              "where the device was provisioned (pos-sim init --storage on the simulator)")
    try:
        return load_identity(Path(directory))
    except FlashError as exc:
        raise DeviceHostError(f"{directory}: {exc.detail}") from None


def attach_service(service: TerminalService, link_url: str, *, device_dir: str | os.PathLike[str] | None = None,
                   timers: LinkTimers = LinkTimers(), baud: int = 115200) -> Callable[[], None]:
    """Serve `service` on the link; returns the function that detaches it (stops the link)."""
    device = load_device(device_dir)
    configured = service.config.device.device_id
    if configured != device.device_id:
        raise DeviceHostError(f"the configuration is for device {configured}, but {device.directory} holds {device.device_id}")
    try:
        wire = open_wire(link_url, baud=baud)
    except WireError as exc:
        raise DeviceHostError(str(exc)) from None
    handler = ServiceLinkHandler(service)
    app = _Application(device, handler)
    endpoint = DeviceEndpoint(wire, AppLink(app, service.clock), identity=device.identity(firmware_text()),
                              device_key_seed=device.device_key_seed, host_trust=device.host_trust, timers=timers).start()

    def detach() -> None:
        endpoint.stop()
        handler.close()

    return detach
