"""The DEVICE end of the bridge <-> POS link: the link session on a wire, and its handlers.

A `DeviceEndpoint` owns a `protocol.link.session.Link(Role.DEVICE)` and a thread that moves bytes
between it and a wire, optionally paced at a UART baud rate. What the link delivers goes to two
pluggable handlers; everything the device says goes out through `send` / `send_boot`.

Handler interface (the terminal service and the bootloader plug in here)
------------------------------------------------------------------------
    class DeviceHandler(Protocol):                      # terminal.link.app_link.AppLink is one
        def on_link_up(self, endpoint, host_info: bytes) -> None
            # a host proved a key this device pins (endpoint.host_peer: its key and role, bridge or
            # maintenance); host_info is its HELLO_ACK JSON (its clock). Re-send everything not yet
            # Delivered, here.
        def on_instruction(self, envelope: Envelope, endpoint) -> None
            # an InstructionMsg from the bridge: verify it yourself (receive_instruction), dedup by
            # msg_id, answer later with endpoint.send(ResultMsg | ProgressMsg | NotTakenMsg, tag).
        def on_bridge_clock(self, unix: int, endpoint) -> None      # optional
            # the bridge's clock, sent with an instruction (just before on_instruction): refresh your
            # estimate of the bridge's time (terminal.bridge_clock).
        (optional) def on_instruction_expiring(self, envelope, expires_at: int, endpoint) -> None
            # the same with the bridge's expires_at (his-interface 1.1 C); a handler without it gets
            # on_instruction and applies its own default expiry
        (optional) def on_cancel(self, envelope: Envelope, endpoint) -> None
            # HIS withdraws the instruction envelope.reply_to (a sealed `cancel` envelope, 1.1 C)
        def on_delivered(self, tag: object, endpoint) -> None
            # the bridge ACKed (= journaled) the message sent with `tag`: you may forget it now.
        def on_link_down(self, unacked: tuple[object, ...], endpoint) -> None
            # the session ended; `unacked` are tags sent but not ACKed. Keep them, re-send on link up.

    class BootHandler(Protocol):                        # optional; frames 0x80..0xBF
        def on_boot_frame(self, frame_type: int, payload: bytes, endpoint) -> None
        # Delivered / link-down of boot frames (sent with endpoint.send_boot) come back through the
        # boot handler's on_delivered / on_link_down if it defines them.

    endpoint.send(message: AppMessage, tag=None)        # raises LinkNotUp while the link is down
    endpoint.send_boot(frame_type: int, payload: bytes, tag=None)

Callbacks run on the endpoint's thread with its (re-entrant) lock held, so calling `send` inside a
callback is fine and ordering is preserved; anything slow (a payment, a screen) belongs on the
handler's own thread, which then calls `send` (thread-safe). A message is never lost by the
endpoint: whatever is not Delivered is reported back in on_link_down.

Wires (terminal.link.wire.Wire): chosen by URL in terminal.link.wires (`serial:` for the POS's
USB gadget port, `socket://` to listen on TCP); the simulator plugs in its own (a pty, its virtual USB
device) through the same interface. `endpoint.bridge_url` is the URL the bridge should use.

Pacing: `baud=115200` (or 921600) makes every write wait one UART wire time (8N1) before the bytes
appear, and every read wait until the bytes could have crossed the line, so throughput and frame
latency match a real cable.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from protocol.envelope import Envelope
from protocol.errors import ProtocolError
from protocol.link.app import AppMessage, CancelMsg, InstructionMsg, MarksMsg, decode_app, encode_app
from protocol.link.frame import FrameType, is_reliable, wire_time_s
from protocol.link.handshake import DeviceIdentity, HostPeer, HostTrust
from protocol.link.session import (
    Delivered, DeviceHandshake, HandshakeRefused, Link, LinkDown, LinkNotUp, LinkState, LinkTimers, LinkUp, Received,
    Role, Undeliverable,
)
from protocol.link.session import Event as LinkEvent
from terminal.link.wire import Wire, WireReset

log = logging.getLogger("terminal.link.endpoint")

__all__ = ["BootHandler", "DeviceEndpoint", "DeviceHandler", "LinkNotUp"]


class DeviceHandler(Protocol):
    def on_link_up(self, endpoint: "DeviceEndpoint", host_info: bytes) -> None: ...
    def on_instruction(self, envelope: Envelope, endpoint: "DeviceEndpoint") -> None: ...
    def on_delivered(self, tag: object, endpoint: "DeviceEndpoint") -> None: ...
    def on_link_down(self, unacked: tuple[object, ...], endpoint: "DeviceEndpoint") -> None: ...


class BootHandler(Protocol):
    def on_boot_frame(self, frame_type: int, payload: bytes, endpoint: "DeviceEndpoint") -> None: ...


class DeviceEndpoint:
    def __init__(self, wire: Wire, handler: DeviceHandler, *, identity: DeviceIdentity, device_key_seed: bytes,
                 host_trust: HostTrust, timers: LinkTimers = LinkTimers(), baud: int | None = None,
                 boot_handler: BootHandler | None = None) -> None:
        self.wire = wire
        self.handler = handler
        self.boot_handler = boot_handler
        self.identity = identity
        self.timers = timers
        self.baud = baud  # pace both directions at this UART rate (8N1); None: as fast as the wire
        self.host_info = b""
        self.host_peer: HostPeer | None = None  # the host of the current session (its pinned key and role)
        self._lock = threading.RLock()
        self.link = Link(Role.DEVICE, device=DeviceHandshake(identity, bytes(device_key_seed), host_trust), timers=timers)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rx_free = 0.0  # when the paced receive line is next idle

    # ------------------------------------------------------------ lifecycle

    @property
    def bridge_url(self) -> str:
        return self.wire.bridge_url

    @property
    def link_up(self) -> bool:
        return self.link.state is LinkState.UP

    def start(self) -> "DeviceEndpoint":
        with self._lock:
            self._dispatch(self.link.start(time.monotonic()))
        self._thread = threading.Thread(target=self._run, name=f"device-{self.identity.device_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._dispatch(self.link.close("endpoint stopped", time.monotonic()))
        self.wire.close()

    def unplug(self) -> None:
        self.wire.unplug()
        with self._lock:
            now = time.monotonic()
            self._dispatch(self.link.close("unplugged", now))

    def replug(self) -> None:
        with self._lock:
            self.link.start(time.monotonic())
        self.wire.replug()

    # ------------------------------------------------------------ sending

    def send(self, message: AppMessage, tag: object = None) -> None:
        """Queue one app message (reliable). Raises LinkNotUp while the link is down."""
        self._send(FrameType.DATA, encode_app(message), ("app", tag))

    def send_boot(self, frame_type: int, payload: bytes, tag: object = None) -> None:
        if not (is_reliable(frame_type) and frame_type != FrameType.DATA):
            raise ValueError(f"0x{frame_type:02x} is not a bootloader frame type (0x80..0xBF)")
        self._send(frame_type, payload, ("boot", tag))

    def _send(self, frame_type: int, payload: bytes, tag: tuple[str, object]) -> None:
        with self._lock:
            self.link.send(frame_type, payload, time.monotonic(), tag=tag)
            self._flush()

    def _flush(self) -> None:
        out = self.link.data_to_send()
        if out:
            if self.baud:
                # A UART delivers the last byte one wire time after the first: the frame is complete then.
                time.sleep(wire_time_s(len(out), self.baud))
            self.wire.write(out)

    # ------------------------------------------------------------ the loop

    def _run(self) -> None:
        while not self._stop.is_set():
            deadline = self.link.next_deadline()
            now = time.monotonic()
            timeout = 0.05 if deadline is None else min(0.05, max(0.0, deadline - now))
            try:
                data = self.wire.read(65536, timeout)
            except WireReset as reset:
                with self._lock:
                    self._dispatch(self.link.start(time.monotonic()))
                    log.info("link restarted: %s", reset)
                continue
            if data and self.baud:
                self._rx_free = max(time.monotonic(), self._rx_free) + wire_time_s(len(data), self.baud)
                delay = self._rx_free - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            with self._lock:
                now = time.monotonic()
                events = self.link.receive_bytes(data, now) if data else []
                events += self.link.poll(now)
                try:
                    self._dispatch(events)
                except Exception:
                    self._handler_failed()
                self._flush()

    def _handler_failed(self) -> None:
        """A handler raised. The ACKs of what it was handling are still queued: they must not go out
        ("ACK means handled"). Restart the session instead, so the bridge sends again what was not
        handled (the handler deduplicates by msg_id), and keep the endpoint alive."""
        log.exception("a device handler failed; restarting the link so that nothing unhandled is acknowledged")
        try:
            self._dispatch(self.link.start(time.monotonic()))
        except Exception:
            log.exception("a device handler failed again while the link restarted")

    def _dispatch(self, events: list[LinkEvent]) -> None:
        for event in events:
            if isinstance(event, Received):
                self._on_received(event)
            elif isinstance(event, Delivered):
                self._route_tag(event.tag, "on_delivered")
            elif isinstance(event, Undeliverable):
                log.warning("the bridge refused a frame: %s", event.reason)
                self._route_tag(event.tag, "on_delivered")
            elif isinstance(event, HandshakeRefused):
                log.warning("a host on the link was refused: %s", event.reason)
            elif isinstance(event, LinkUp):
                self.host_info = event.info
                self.host_peer = event.host
                self.handler.on_link_up(self, event.info)
                if self.boot_handler is not None and hasattr(self.boot_handler, "on_link_up"):
                    self.boot_handler.on_link_up(self, event.info)
            elif isinstance(event, LinkDown):
                self.host_peer = None
                app = tuple(tag[1] for tag in event.unacked if isinstance(tag, tuple) and tag[0] == "app")
                boot = tuple(tag[1] for tag in event.unacked if isinstance(tag, tuple) and tag[0] == "boot")
                self.handler.on_link_down(app, self)
                if self.boot_handler is not None and hasattr(self.boot_handler, "on_link_down"):
                    self.boot_handler.on_link_down(boot, self)

    def _route_tag(self, tag: object, method: str) -> None:
        if not isinstance(tag, tuple):
            return
        kind, user_tag = tag
        target = self.handler if kind == "app" else self.boot_handler
        if target is not None and hasattr(target, method):
            getattr(target, method)(user_tag, self)

    def _on_received(self, event: Received) -> None:
        if event.type != FrameType.DATA:
            if self.boot_handler is not None:
                self.boot_handler.on_boot_frame(event.type, event.payload, self)
            else:
                log.warning("bootloader frame 0x%02x ignored: no boot handler", event.type)
            return
        try:
            message = decode_app(event.payload)
        except ProtocolError as exc:
            log.warning("undecodable DATA from the bridge: %s", exc.message)
            return
        if isinstance(message, InstructionMsg):
            hear = getattr(self.handler, "on_bridge_clock", None)  # optional: a handler that stamps results
            if message.clock is not None and hear is not None:
                hear(message.clock, self)
            if message.expires_at is not None and hasattr(self.handler, "on_instruction_expiring"):
                self.handler.on_instruction_expiring(message.envelope, message.expires_at, self)
            else:
                self.handler.on_instruction(message.envelope, self)
        elif isinstance(message, CancelMsg) and hasattr(self.handler, "on_cancel"):
            self.handler.on_cancel(message.envelope, self)
        elif isinstance(message, MarksMsg):
            take = getattr(self.handler, "on_marks", None)  # optional: a handler with a journal
            if take is not None:
                take(message, self)
        else:
            log.warning("unexpected %s from the bridge ignored", type(message).__name__)
