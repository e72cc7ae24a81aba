"""A real POS: the terminal service from a device configuration, and the device side of the link.

    device = open_device(Path("device.json"), "serial:/dev/ttyGS0", Path("pos-state"))
    ... build_app(device.service) ...
    device.close()

The service part is complete here (configuration, journal, channel clients, recovery). The link
part needs a handler that moves envelopes between `firmware_sim.endpoint.DeviceEndpoint` and the
service (the simulator's device host); `LINK_HOST` names where it is looked up, and until it exists
`open_device` refuses with a message that says so instead of running a POS that HIS cannot reach.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# module:function that attaches a started TerminalService to a link URL and returns a closer.
LINK_HOST = "firmware_sim.devicehost:attach_service"


class StandaloneError(RuntimeError):
    """The POS cannot start; the message says what to fix."""


@dataclass
class Device:
    service: object
    close: Callable[[], None]


def open_device(config_path: Path, link_url: str, state_dir: Path) -> Device:
    from terminal.channels import build_clients
    from terminal.config import ConfigError, load_config
    from terminal.journal import Journal
    from terminal.service import TerminalService

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise StandaloneError(str(exc)) from None
    module_name, _, func_name = LINK_HOST.partition(":")
    try:
        attach = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError):
        raise StandaloneError(
            f"this build has no device link host ({LINK_HOST}); run the POS inside the simulator "
            "(make run) until it is installed") from None
    try:
        clients = build_clients(config.channels, base_dir=str(config_path.parent))
    except Exception as exc:  # ChannelConfigError and file errors: the engineer reads the message
        raise StandaloneError(f"{config_path}: channels: {exc}") from None
    state_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(state_dir / "journal.db")
    service = TerminalService(config, journal, clients)
    service.start()
    try:
        detach = attach(service, link_url)
    except Exception as exc:
        service.close()
        journal.close()
        raise StandaloneError(f"cannot open the link {link_url!r}: {exc}") from None

    def close() -> None:
        detach()
        service.close()
        journal.close()

    return Device(service, close)
