"""What the POS knows about reaching its payment gateway, for the screens: reachable, unreachable,
or this device disabled by the provider. Owns the background network probe (moved here from the
UI's adapter) and reads every reply of the gateway connection.

    watch = GatewayWatch(config.gateway.url, on_change)      # on_change(): from the probe's thread
    connection.add_reply_observer(watch.reply)              # terminal.gateway_client.GatewayConnection
    watch.start(); ...; watch.state; watch.stop()

Two sources, one state. A TCP connect to the gateway's host every NETWORK_PROBE_INTERVAL_S tells
reachable from unreachable while nothing is paid; a reply to a real request says more: 403
`device_disabled` means the provider disabled this POS (a TCP connect cannot tell), any other reply
that the gateway is there, no reply that it is not. A disabled device stays DISABLED until a request
is accepted again or the network goes away.
"""

from __future__ import annotations

import enum
import socket
import threading
from typing import Callable
from urllib.parse import urlsplit

# How often the probe tries to reach the gateway while nothing else does (a reply updates it at once).
NETWORK_PROBE_INTERVAL_S = 30.0
# A connect that takes longer than this counts as unreachable (the POS is on WiFi/4G).
NETWORK_PROBE_TIMEOUT_S = 3.0
# The gateway's error code for a device its operator disabled (gateway.errors.GatewayCode.DEVICE_DISABLED).
DEVICE_DISABLED = "device_disabled"


class GatewayState(enum.Enum):
    UNKNOWN = "unknown"  # not checked yet (or no gateway configured)
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"  # no TCP connection / no answer: no payment can start
    DISABLED = "disabled"  # the provider disabled this device (`gateway-admin device disable`)


def probe_target(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


class GatewayWatch:
    def __init__(self, url: str | None, on_change: Callable[[], None], *,
                 interval_s: float = NETWORK_PROBE_INTERVAL_S, timeout_s: float = NETWORK_PROBE_TIMEOUT_S) -> None:
        self._target = probe_target(url) if url else None
        self._on_change = on_change
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._state = GatewayState.UNKNOWN
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pos-gateway-probe", daemon=True)

    @property
    def state(self) -> GatewayState:
        with self._lock:
            return self._state

    def start(self) -> None:
        if self._target is not None:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def reply(self, status: int, code: str | None) -> None:
        """A gateway request finished: HTTP `status` (0: no answer) and the error code, if any."""
        if status == 0:
            self._set(GatewayState.UNREACHABLE if code == "network" else self.state)
        elif status == 403 and code == DEVICE_DISABLED:
            self._set(GatewayState.DISABLED)
        else:
            self._set(GatewayState.REACHABLE)

    def probe_once(self) -> GatewayState:
        """One TCP connect to the gateway (the probe thread calls it; tests may too)."""
        if self._target is None:
            return self.state
        try:
            with socket.create_connection(self._target, timeout=self._timeout_s):
                reached = True
        except OSError:
            reached = False
        with self._lock:
            current = self._state
        if not reached:
            self._set(GatewayState.UNREACHABLE)
        elif current is not GatewayState.DISABLED:  # only a reply can tell that the device is enabled again
            self._set(GatewayState.REACHABLE)
        return self.state

    def _set(self, state: GatewayState) -> None:
        with self._lock:
            changed, self._state = state is not self._state, state
        if changed:
            self._on_change()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.probe_once()
            self._stop.wait(self._interval_s)
