"""Open a terminal service from files: the configuration document and the journal.

    service = open_terminal("pos.json", "journal.db", device_key_seed=device.device_key_seed)  # loads, validates, builds clients
    service.start()

The simulator, the Kivy app on a real device and `make run` all start the service this way, so a
configuration image flashed by a field engineer is exactly what runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Mapping

from protocol.messages import PayChannel
from terminal.channels import build_clients
from terminal.channels.base import ChannelClient
from terminal.channels.errors import ChannelConfigError
from terminal.config import ConfigError, DeviceConfig, load_config
from terminal.journal import CommitPoint, Journal
from terminal.service import TerminalService


def open_terminal(config: str | os.PathLike[str] | DeviceConfig, journal_path: str | os.PathLike[str], *,
                  device_key_seed: bytes, clients: Mapping[PayChannel, ChannelClient] | None = None, clock: Callable[[], float] = time.time,
                  rng: Callable[[int], bytes] = os.urandom, on_commit: Callable[[CommitPoint], None] | None = None,
                  check_permissions: bool = True) -> TerminalService:
    """A service (not yet started) for `config` (a path or a parsed DeviceConfig) on the journal at
    `journal_path` (created if missing). Channel clients come from the configuration's "channels"
    unless `clients` is given; `device_key_seed` (terminal.identity) signs every result. Raises
    ConfigError with a message a field engineer can act on."""
    base_dir: str | None = None
    if not isinstance(config, DeviceConfig):
        base_dir = str(Path(config).resolve().parent)
        config = load_config(config, check_permissions=check_permissions)
    if clients is None:
        try:
            clients = build_clients(config.channels, base_dir=base_dir) if config.channels else {}
        except ChannelConfigError as exc:
            raise ConfigError(f"device configuration, channels: {exc}") from None
    journal = Journal(journal_path, on_commit=on_commit)
    return TerminalService(config, journal, clients, device_key_seed=device_key_seed, clock=clock, rng=rng)
