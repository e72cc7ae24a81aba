"""Who the application answers on the link: only a bridge.

`AppLink` is the endpoint's DeviceHandler (terminal.link.endpoint). It forwards to the terminal
service's link handler (terminal.link.service_handler) only while the host is a bridge: a host that
proved, in the handshake, a key this device pinned as a bridge key at provisioning (what the host
says about itself in its HELLO_ACK JSON counts for nothing). A maintenance host (pos-flash, its key
pinned as a maintenance key) gets the bootloader frames only, where the device has a bootloader, so
it can never acknowledge, and so swallow, a result meant for HIS; a host whose key is not pinned
gets no session at all (protocol.link.handshake). Without a running application (recovery mode,
an unusable configuration) nothing can be sealed or signed for HIS, so the device says it cannot take
the instruction (NotTakenMsg, device_unavailable): that ends nothing, the bridge keeps the
instruction unfinished, says why, and sends it again when the device next attaches.

What AppLink needs of whatever hosts the application (the POS app, the simulator's firmware) is the
small `HostedApplication` interface below; the host owns reboots, recovery and power.
"""

from __future__ import annotations

import json
import logging
from typing import Callable, Protocol

from protocol.envelope import Envelope
from protocol.errors import ErrorCode
from protocol.freshness import DEFAULT_SKEW_S
from protocol.link.app import MarksMsg, NotTakenMsg
from protocol.link.handshake import HostRole
from protocol.link.session import LinkNotUp
from terminal.journal import PowerLostAtCommit
from terminal.link.endpoint import DeviceEndpoint
from terminal.link.service_handler import ServiceLinkHandler

log = logging.getLogger("terminal.link.app")

# The bridge's default clock window (his-interface-v1): a device clock further off than this from the
# bridge's makes the bridge drop the device's results (their ts), so the device warns at link up.
BRIDGE_SKEW_S = DEFAULT_SKEW_S


class HostedApplication(Protocol):
    """What the link needs to know of the application it serves, and nothing more."""

    @property
    def device_id(self) -> str: ...
    @property
    def handler(self) -> ServiceLinkHandler | None: ...  # None: the application is not running
    @property
    def problem(self) -> str | None: ...  # why it is not running, for the refusal
    @property
    def cut(self) -> bool: ...  # the power is gone: say nothing more


class AppLink:
    """DeviceHandler: forwards to the terminal service's link handler, only for a bridge."""

    def __init__(self, app: HostedApplication, clock: Callable[[], float]) -> None:
        self.app = app
        self.clock = clock
        self.bridge_up = False
        self.bridge_clock_offset_s: float | None = None  # device clock minus bridge clock, last heard (status)

    def on_link_up(self, endpoint: DeviceEndpoint, host_info: bytes) -> None:
        try:
            info = json.loads(host_info.decode("utf-8")) if host_info else {}
        except (UnicodeDecodeError, ValueError):
            info = {}
        if not isinstance(info, dict):
            info = {}
        peer = endpoint.host_peer
        if peer is None or peer.role is not HostRole.BRIDGE:
            self.bridge_up = False
            log.info("a maintenance host (not a bridge) is connected: only the bootloader answers it")
            return
        self.bridge_up = True
        bridge_clock = info.get("clock")
        if isinstance(bridge_clock, (int, float)) and not isinstance(bridge_clock, bool):
            self.bridge_clock_offset_s = self.clock() - bridge_clock
            if abs(self.bridge_clock_offset_s) > BRIDGE_SKEW_S:
                log.warning("the device clock is %+.0f s off the bridge's: the bridge drops results whose ts is "
                            "more than %d s off its clock; set the clock", self.bridge_clock_offset_s, BRIDGE_SKEW_S)
        handler = self.app.handler
        if handler is not None:
            self._guard(lambda: handler.on_link_up(endpoint, host_info))

    def on_marks(self, message: MarksMsg, endpoint: DeviceEndpoint) -> None:
        handler = self.app.handler
        if handler is not None and self.bridge_up:
            self._guard(lambda: handler.on_marks(message, endpoint))

    def on_bridge_clock(self, unix: int, endpoint: DeviceEndpoint) -> None:
        if not self.bridge_up:
            return
        self.bridge_clock_offset_s = self.clock() - unix
        handler = self.app.handler
        if handler is not None:
            self._guard(lambda: handler.on_bridge_clock(unix, endpoint))

    def on_instruction(self, envelope: Envelope, endpoint: DeviceEndpoint, expires_at: int | None = None) -> None:
        if not self.bridge_up:
            log.warning("instruction %s from a host that is not a bridge ignored", envelope.msg_id)
            return
        handler = self.app.handler
        if handler is None:
            why = self.app.problem or "the application is not running"
            try:
                endpoint.send(NotTakenMsg(envelope.msg_id, ErrorCode.DEVICE_UNAVAILABLE, f"device {self.app.device_id}: {why}"))
            except LinkNotUp:
                pass
            return
        if expires_at is None:
            self._guard(lambda: handler.on_instruction(envelope, endpoint))
        else:
            self._guard(lambda: handler.on_instruction_expiring(envelope, expires_at, endpoint))

    def on_instruction_expiring(self, envelope: Envelope, expires_at: int, endpoint: DeviceEndpoint) -> None:
        self.on_instruction(envelope, endpoint, expires_at)

    def on_cancel(self, envelope: Envelope, endpoint: DeviceEndpoint) -> None:
        handler = self.app.handler
        if handler is not None and self.bridge_up:  # no application: the bridge re-sends it at the next link-up
            self._guard(lambda: handler.on_cancel(envelope, endpoint))

    def on_delivered(self, tag: object, endpoint: DeviceEndpoint) -> None:
        handler = self.app.handler
        if handler is not None and self.bridge_up:
            self._guard(lambda: handler.on_delivered(tag, endpoint))

    def on_link_down(self, unacked: tuple[object, ...], endpoint: DeviceEndpoint) -> None:
        was_bridge, self.bridge_up = self.bridge_up, False
        handler = self.app.handler
        if handler is not None and was_bridge:
            self._guard(lambda: handler.on_link_down(unacked, endpoint))

    def _guard(self, call: Callable[[], None]) -> None:
        # A power cut inside the service (a commit hook) must not kill the endpoint's thread: the
        # device is already silenced, so returning sends nothing (the ACK never leaves).
        if self.app.cut:
            return
        try:
            call()
        except PowerLostAtCommit:
            pass
