"""Plugs a TerminalService into a device link endpoint (the DeviceHandler of terminal.link.endpoint).

    handler = ServiceLinkHandler(service)
    endpoint = DeviceEndpoint(wire, handler, identity=..., device_key_seed=...).start()
    ...
    handler.close()

The endpoint calls the handler on its own thread: an instruction goes to `submit_instruction`
(journaled before the call returns, so the link's ACK means "journaled"), an ACK of a result to
`mark_delivered`, link up/down to `link_up` / `link_down`. One pump thread of the handler moves the
service's outbox to `endpoint.send`, tagging each result with its msg_id so the ACK can be matched.
Results in `LinkDown.unacked` are not kept here: the service re-sends every undelivered result on
the next link up, from its journal. Any object with `send(message, tag)` that raises
`protocol.link.session.LinkNotUp` when down can stand in for the endpoint (a real device's loop).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time

from protocol.envelope import Envelope
from protocol.link.app import MarksMsg, ResultMsg
from protocol.link.session import LinkNotUp
from terminal.journal import JournalUnavailable, PowerLostAtCommit
from terminal.service import TerminalService

log = logging.getLogger("terminal.link")
RESULT_TAG = "result"
# How often the pump re-checks for shutdown while the outbox is empty.
PUMP_POLL_S = 0.2


class ServiceLinkHandler:
    def __init__(self, service: TerminalService) -> None:
        self.service = service
        self._endpoint: object | None = None
        self._lock = threading.Lock()
        self._marks_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="terminal-link-pump", daemon=True)
        self._thread.start()

    # -- DeviceHandler ------------------------------------------------------------------------
    def on_link_up(self, endpoint: object, host_info: bytes) -> None:
        key = _host_key(endpoint)
        self._marks_at = time.monotonic()
        if key is not None:  # the high-water marks go first, before any result (docs/link-protocol.md section 7)
            try:
                endpoint.send(self.service.marks(key), None)  # type: ignore[attr-defined]  # the DeviceEndpoint, typed object here
            except LinkNotUp:
                return
        with self._lock:
            self._endpoint = endpoint
        self.service.link_up(bridge_clock=bridge_clock(host_info))

    def on_marks(self, message: MarksMsg, endpoint: object) -> None:
        key = _host_key(endpoint)
        if key is not None:
            self.service.bridge_marks(key, message)

    def on_bridge_clock(self, unix: int, endpoint: object) -> None:
        self.service.bridge_clock_heard(float(unix))

    def on_instruction(self, envelope: Envelope, endpoint: object) -> None:
        self.service.submit_instruction(envelope)

    def on_instruction_expiring(self, envelope: Envelope, expires_at: int, endpoint: object) -> None:
        self.service.submit_instruction(envelope, expires_at=expires_at)

    def on_cancel(self, envelope: Envelope, endpoint: object) -> None:
        self.service.withdraw(envelope)

    def on_delivered(self, tag: object, endpoint: object) -> None:
        if isinstance(tag, tuple) and len(tag) == 2 and tag[0] == RESULT_TAG:
            self.service.mark_delivered(str(tag[1]))

    def on_link_down(self, unacked: tuple[object, ...], endpoint: object) -> None:
        with self._lock:
            self._endpoint = None
        self.service.link_down()

    # -- the pump -----------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _pump(self) -> None:
        while not self._stop.is_set():
            message = self.service.outbox.get(timeout=PUMP_POLL_S)
            with self._lock:
                endpoint = self._endpoint
            if endpoint is not None:
                self._refresh_marks(endpoint)
            if message is None:
                continue
            if endpoint is None:
                continue  # down: a result comes again from the journal on the next link up
            tag = (RESULT_TAG, message.envelope.msg_id) if isinstance(message, ResultMsg) else None
            try:
                endpoint.send(message, tag)  # type: ignore[attr-defined]  # the DeviceEndpoint, typed object here
            except LinkNotUp:
                log.info("link went down while sending; results will be re-sent after it comes back")
            except PowerLostAtCommit:
                return


    def _refresh_marks(self, endpoint: object) -> None:
        """The marks again on a live link, every timers.marks_refresh_s (docs/link-protocol.md §7)."""
        timers = getattr(endpoint, "timers", None)
        key = _host_key(endpoint)
        now = time.monotonic()
        if timers is None or key is None or now - self._marks_at < timers.marks_refresh_s:
            return
        self._marks_at = now
        try:
            endpoint.send(self.service.marks(key), None)  # type: ignore[attr-defined]  # the DeviceEndpoint, typed object here
        except (LinkNotUp, JournalUnavailable, PowerLostAtCommit):
            pass  # next time, or at the next link-up

def _host_key(endpoint: object) -> bytes | None:
    peer = getattr(endpoint, "host_peer", None)
    return None if peer is None else bytes(peer.public_key)


def bridge_clock(host_info: bytes) -> float | None:
    """The bridge's clock from its HELLO_ACK ({"bridge": ..., "clock": unix seconds}), if present."""
    try:
        info = json.loads(host_info.decode("utf-8")) if host_info else None
    except (UnicodeDecodeError, ValueError):
        return None
    clock = info.get("clock") if isinstance(info, dict) else None
    if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not math.isfinite(clock):
        return None
    return float(clock)
