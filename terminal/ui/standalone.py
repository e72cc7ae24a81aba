"""A real POS: the terminal service from a device configuration, attached to the device end of the link.

    device = open_device(Path("device.json"), "serial:/dev/ttyGS0", Path("pos-state"), device_dir=Path("/data/pos"))
    ... build_app(device.service) ...
    device.close()

The service comes from terminal.factory (the same factory the simulator's firmware uses), the link
from terminal.link.host; the device's identity and key from its secure storage (terminal.identity).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from protocol.errors import CodedError
from terminal.config import DeviceConfigError
from terminal.factory import open_terminal
from terminal.link.host import DeviceHostError, attach_service, firmware_text, load_device
from terminal.service import TerminalService


class StandaloneError(CodedError, RuntimeError):
    """The POS cannot start; the message says what to fix."""

    code = "standalone"


@dataclass
class Device:
    service: TerminalService
    close: Callable[[], None]


def open_device(config_path: Path, link_url: str, state_dir: Path, *,
                device_dir: str | os.PathLike[str] | None = None) -> Device:
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        device = load_device(device_dir)  # its key signs every result and every request to the gateway
        service = open_terminal(config_path, state_dir / "journal.db", device_key_seed=device.device_key_seed,
                                firmware=firmware_text())
    except (DeviceConfigError, DeviceHostError) as exc:
        raise StandaloneError(str(exc)) from None
    service.start()
    try:
        detach = attach_service(service, link_url, device_dir=device_dir)
    except DeviceHostError as exc:
        service.close()
        service.journal.close()
        raise StandaloneError(f"cannot open the link {link_url!r}: {exc}") from None

    def close() -> None:
        detach()
        service.close()
        service.journal.close()

    return Device(service, close)
