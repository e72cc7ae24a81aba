"""Open a terminal service from files: the configuration document and the journal.

    service = open_terminal("pos.json", "journal.db", device_key_seed=seed)   # loads, validates, connects
    service.start()

The simulator, the Kivy app on a real device and `make run` all start the service this way, so a
configuration image flashed by a field engineer is exactly what runs. The channel clients are the
gateway's (`terminal.gateway_client`): requests signed by the device key, the gateway's certificate
pinned; the POS holds nothing of the merchants'.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Mapping

from protocol.messages import PayChannel
from terminal.channels.base import ChannelClient
from terminal.config import DeviceConfigError, DeviceConfig, load_config
from terminal.alarms import AlarmSink
from terminal.gateway_client import CADENCE, GatewayAlarms, GatewayChannelClient, GatewayConfigError, GatewayConnection
from terminal.gateway_marks import MARK_REPORT_INTERVAL_S, GatewayMarks
from terminal.journal import CommitPoint, Journal
from terminal.service import TerminalService

PINNED_CERT_FILE = "gateway-pinned.pem"


def gateway_clients(config: DeviceConfig, *, device_key_seed: bytes, firmware: str, state_dir: Path,
                    clock: Callable[[], float] = time.time) -> dict[PayChannel, ChannelClient]:
    """One client per channel, all through the configured gateway."""
    if config.gateway is None:
        raise DeviceConfigError("device configuration: no \"gateway\" section; the POS pays through the provider's gateway")
    pinned = None
    if config.gateway.pinned_cert is not None:
        # requests verifies against a file: the certificate is public, kept beside the journal.
        pinned = state_dir / PINNED_CERT_FILE
        pinned.write_text(config.gateway.pinned_cert, encoding="ascii")
    try:
        connection = GatewayConnection(config.gateway.url, device_id=config.device.device_id, seed=device_key_seed,
                                       firmware=firmware, pinned_cert=str(pinned) if pinned else None, clock=clock)
    except GatewayConfigError as exc:
        raise DeviceConfigError(f"device configuration, gateway: {exc}") from None
    # Every payment names the terminal of its instruction; a default only for a POS with one terminal.
    only = config.terminals[0].terminal_id if len(config.terminals) == 1 else None
    return {channel: GatewayChannelClient(connection, channel, terminal_id=only) for channel in CADENCE}


def open_terminal(config: str | os.PathLike[str] | DeviceConfig, journal_path: str | os.PathLike[str], *,
                  device_key_seed: bytes, clients: Mapping[PayChannel, ChannelClient] | None = None,
                  firmware: str = "", clock: Callable[[], float] = time.time, rng: Callable[[int], bytes] = os.urandom,
                  on_commit: Callable[[CommitPoint], None] | None = None, check_permissions: bool = True,
                  mark_interval_s: float = MARK_REPORT_INTERVAL_S) -> TerminalService:
    """A service (not yet started) for `config` (a path or a parsed DeviceConfig) on the journal at
    `journal_path` (created if missing). `device_key_seed` (terminal.identity) signs every result and
    every request to the configuration's gateway; the clients are the gateway's unless `clients` is
    given (tests). Raises DeviceConfigError with a message a field engineer can act on."""
    if not isinstance(config, DeviceConfig):
        config = load_config(config, check_permissions=check_permissions)
    alarms: AlarmSink | None = None
    marks: GatewayMarks | None = None
    if clients is None:
        if device_key_seed is None:
            raise DeviceConfigError("the device key is needed to talk to the gateway (the device's secure storage)")
        clients = gateway_clients(config, device_key_seed=device_key_seed, firmware=firmware,
                                  state_dir=Path(journal_path).parent, clock=clock)
    first = next(iter(clients.values()), None)
    if isinstance(first, GatewayChannelClient):  # hand-overs go to the gateway's alarm list too
        alarms = GatewayAlarms(first.connection)
        marks = GatewayMarks(first.connection, interval_s=mark_interval_s)  # the gateway keeps the journal's mark too
    journal = Journal(Path(journal_path), on_commit=on_commit)
    return TerminalService(config, journal, clients, device_key_seed=device_key_seed, clock=clock, rng=rng, alarms=alarms,
                           gateway_marks=marks)
