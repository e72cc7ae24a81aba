"""One device port: a thread that keeps a transport open and moves bytes through a HOST `Link`.

The loop (protocol/link/session.py explains why in this order):

    read bytes -> link.receive_bytes -> handle events (journal commits happen here, via the sink)
               -> link.poll -> write link.data_to_send()   (ACKs leave only after the commit)

The port reopens its transport with exponential backoff after it fails or is unplugged, and
handshakes again; the sink (the Relay) decides what the proven device gets. Instructions from
HTTP threads are queued with `send_instruction`, which writes at once (no thread hop: latency).
Nothing here is POSIX-only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from typing import Callable, Protocol

from protocol.envelope import Envelope
from protocol.link.app import AppMessage, CancelMsg, InstructionMsg, MarksMsg, encode_app
from protocol.link.frame import FrameType
from protocol.link.handshake import DeviceIdentity
from protocol.link.session import (
    Delivered, HandshakeRefused, HostHandshake, Link, LinkDown, LinkNotUp, LinkState, LinkTimers, LinkUp, Received,
    Role, Undeliverable,
)
from protocol.link.session import Event as LinkEvent

from bridge.logjson import log_event
from bridge.transport import Transport, TransportClosed, TransportError, make_transport

log = logging.getLogger("bridge.devicelink")

READ_SLICE_S = 0.05  # the longest the loop sleeps in a read; bounds how late a timer fires


class PortSink(Protocol):
    def attach(self, port: "DevicePort", identity: DeviceIdentity) -> list[tuple[object, AppMessage]]: ...
    def detach(self, port: "DevicePort", identity: DeviceIdentity | None, reason: str) -> None: ...
    def delivered(self, port: "DevicePort", msg_id: object) -> None: ...
    def undeliverable(self, port: "DevicePort", msg_id: object, reason: str) -> None: ...
    def handle_app(self, port: "DevicePort", identity: DeviceIdentity, payload: bytes) -> bool: ...
    def handshake_refused(self, port: "DevicePort", reason: str) -> None: ...
    def marks_for(self, identity: DeviceIdentity) -> MarksMsg: ...
    def taking_devices(self) -> bool: ...


def host_info(clock: Callable[[], float] = time.time) -> bytes:
    return json.dumps({"bridge": "his-bridge", "clock": int(clock())}).encode("utf-8")


class DevicePort:
    def __init__(self, url: str, sink: PortSink, *, public_key_for: Callable[[str], bytes | None],
                 host_key_seed: bytes, timers: LinkTimers = LinkTimers(), baud: int = 115200, reconnect_min_s: float = 0.5,
                 reconnect_max_s: float = 10.0, usb_backend: object = None, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.clock = clock  # this PC's wall clock: told to the POS at link-up and with every instruction
        self.sink = sink
        self.public_key_for = public_key_for
        self._host_key_seed = host_key_seed  # the bridge's identity key: the POS pinned its public half
        self.timers = timers
        self.baud = baud
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.usb_backend = usb_backend
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._transport: Transport | None = None
        self._link: Link | None = None
        self._broken: str | None = None
        self._restart: str | None = None
        self._session_sent: set[str] = set()
        self.peer: DeviceIdentity | None = None
        self.since = time.time()
        self.last_error: str | None = None
        self.refused_handshakes = 0
        self._marks_sent_at = 0.0  # monotonic time the marks last went to the POS
        self.withheld_acks = 0  # frames not acknowledged because the journal could not take them
        self._withholding = False  # the last session ended on one: reconnect with growing backoff

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"port {self.url}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def request_restart(self, reason: str) -> None:
        """Handshake again (acted on by the port's own thread: no cross-port locking)."""
        self._restart = reason

    # ------------------------------------------------------------ HTTP threads

    def send_instruction(self, msg_id: str, envelope: Envelope, expires_at: int | None = None, again: bool = False) -> bool:
        """Hand one instruction to the link and write it now. False if the link is not up (it stays
        journaled as accepted and is sent when the device is back). `again`: even if this session
        sent it already (the device could not take it then and answers again now)."""
        return self._send_app(msg_id, InstructionMsg(envelope, expires_at), again)

    def send_cancel(self, msg_id: str, envelope: Envelope) -> bool:
        """Hand HIS's withdrawal of `msg_id` to the link (his-interface 1.1 C). False if the link is
        not up: it is journaled and sent again when the device attaches."""
        return self._send_app(("cancel", msg_id), CancelMsg(envelope))

    def _send_app(self, tag: object, message: InstructionMsg | CancelMsg, again: bool = False) -> bool:
        msg_id = tag
        envelope = message.envelope
        with self._lock:
            link, transport = self._link, self._transport
            if link is None or transport is None or link.state is not LinkState.UP or self._broken:
                return False
            if msg_id in self._session_sent and not again:
                return True
            try:
                link.send(FrameType.DATA, self._encode(message), time.monotonic(), tag=msg_id)
            except LinkNotUp as exc:
                log_event(log, "instruction_not_queued", level=logging.WARNING, port=self.url, msg_id=envelope.msg_id,
                          reason=str(exc))
                return False
            self._session_sent.add(msg_id)
            self._flush()
            return True

    def status(self) -> dict[str, object]:
        with self._lock:
            link = self._link
            state = "disconnected" if self._transport is None or link is None else link.state.value
            peer = self.peer
            out: dict[str, object] = {"port": self.url, "link": state, "since": int(self.since)}
            if peer is not None:
                out.update(device_id=peer.device_id, model=peer.model, serial_no=peer.serial_no, firmware=peer.firmware)
            if link is not None:
                out["in_flight"] = link.in_flight
                out["stats"] = {"retransmissions": link.stats.retransmissions, "handshakes": link.stats.handshakes,
                                "refused_handshakes": self.refused_handshakes,
                                "rejected_frames": link.stats.rejected_frames, "duplicates": link.stats.duplicates,
                                "reordered": link.stats.reordered, "withheld_acks": self.withheld_acks}
            if self.last_error and state != "up":
                out["last_error"] = self.last_error
            return out

    # ------------------------------------------------------------ the port thread

    def _run(self) -> None:
        backoff = self.reconnect_min_s
        last_logged = ""
        while not self._stop.is_set():
            if not self.sink.taking_devices():  # a locked journal: the POS keeps its results meanwhile
                self.last_error = "the bridge's journal is locked (see journal.integrity in /v1/health)"
                self._stop.wait(1.0)
                continue
            try:
                transport = make_transport(self.url, baud=self.baud, usb_backend=self.usb_backend)
                transport.open()
            except TransportError as exc:
                self.last_error = str(exc)
                if str(exc) != last_logged:  # one line per distinct problem, not one per retry
                    last_logged = str(exc)
                    log_event(log, "port_unavailable", level=logging.WARNING, port=self.url, reason=str(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.reconnect_max_s)
                continue
            last_logged = ""
            log_event(log, "port_opened", port=self.url)
            self._withholding = False
            try:
                self._session(transport)
                backoff = self.reconnect_min_s
            except TransportError as exc:
                self.last_error = str(exc)
                log_event(log, "port_closed", level=logging.WARNING, port=self.url, reason=str(exc))
                # A journal that cannot be written: try again after a growing pause (the POS re-sends
                # its results at every link-up), not at once on every frame.
                backoff = min(backoff * 2, self.reconnect_max_s) if self._withholding else self.reconnect_min_s
            finally:
                self._end_session(transport, self.last_error or "port closed")
            self._stop.wait(backoff)
        log_event(log, "port_stopped", port=self.url)

    def _session(self, transport: Transport) -> None:
        with self._lock:
            self._transport, self._broken, self._restart = transport, None, None
            self._link = Link(Role.HOST, timers=self.timers, host=HostHandshake(
                public_key_for=self.public_key_for, host_key_seed=self._host_key_seed,
                host_info=lambda: host_info(self.clock)))
            self.since = time.time()
            self._handle(self._link.start(time.monotonic()))
            self._flush()
        link = self._link
        while not self._stop.is_set():
            if self._broken:
                raise TransportClosed(self._broken)
            deadline = link.next_deadline()
            timeout = READ_SLICE_S if deadline is None else min(READ_SLICE_S, max(0.0, deadline - time.monotonic()))
            data = transport.read(65536, timeout)
            with self._lock:
                now = time.monotonic()
                events = link.receive_bytes(data, now) if data else []
                if self._restart:
                    reason, self._restart = self._restart, None
                    events += link.start(now)
                    log_event(log, "link_restarted", port=self.url, reason=reason)
                events += link.poll(now)
                self._handle(events)
                self._refresh_marks(now)
                self._flush()

    def _refresh_marks(self, now: float) -> None:
        """The marks again on a live link, every timers.marks_refresh_s (docs/link-protocol.md §7): a
        rollback to a copy taken after the link came up is found too."""
        if self.peer is None or self._link is None or self._broken or now - self._marks_sent_at < self.timers.marks_refresh_s:
            return
        self._marks_sent_at = now
        try:
            self._link.send(FrameType.DATA, encode_app(self.sink.marks_for(self.peer)), now)
        except LinkNotUp:
            pass  # the send queue is full or the link just went down: next time

    def _end_session(self, transport: Transport, reason: str) -> None:
        with self._lock:
            if self._link is not None:
                self._handle(self._link.close(reason, time.monotonic()))
            self._link = None
            self._transport = None
            self.since = time.time()
            self._session_sent.clear()
        transport.close()

    def _encode(self, message: AppMessage) -> bytes:
        """An app message for the POS; an instruction carries this PC's clock (the POS stamps results
        with the bridge's clock it last heard: docs/link-protocol.md section 7)."""
        if isinstance(message, InstructionMsg):
            message = dataclasses.replace(message, clock=int(self.clock()))
        return encode_app(message)

    def _flush(self) -> None:
        assert self._link is not None and self._transport is not None
        out = self._link.data_to_send()
        if out and not self._broken:
            try:
                self._transport.write(out)
            except TransportError as exc:
                self._broken = str(exc)  # the port thread reconnects; the link resends after the handshake

    def _handle(self, events: list[LinkEvent]) -> None:
        refusing = False  # a frame of this batch was refused: the ones after it were refused with it
        for event in events:
            if isinstance(event, Received):
                if self._broken or refusing:
                    continue  # the session ends now / refused: nothing more is taken or acknowledged
                if event.type == FrameType.DATA and self.peer is not None:
                    journaled = self.sink.handle_app(self, self.peer, event.payload)
                    if not self.sink.taking_devices():
                        # The journal locked itself (a POS found it rolled back): close without writing
                        # the ACKs, so no POS hands a result to a journal that cannot keep it.
                        self._broken = "the bridge's journal is locked"
                    elif not journaled:
                        # Its content is not durable (disk full, journal locked by another program):
                        # never ACK it. Just that frame is un-ACKed (with those after it in this read):
                        # the POS retransmits it on the same session, and it is taken when the journal
                        # can be written again. When its ACK already went out, or the POS gives up
                        # after its tries, the session ends instead and the POS sends it again after
                        # the next link-up (link-protocol.md §7).
                        self.withheld_acks += 1
                        assert self._link is not None
                        if self._link.refuse(event.counter):
                            refusing = True
                            log_event(log, "frame_refused", level=logging.WARNING, port=self.url,
                                      msg="the journal cannot be written: this frame is not acknowledged; the POS sends it again")
                        else:
                            self._withholding = True
                            self._broken = "the bridge's journal cannot be written: the frame was not acknowledged"
                else:
                    log_event(log, "frame_ignored", level=logging.WARNING, port=self.url, frame_type=f"0x{event.type:02x}")
            elif isinstance(event, Delivered):
                self.sink.delivered(self, event.tag)
            elif isinstance(event, LinkUp):
                assert event.peer is not None
                self.peer = event.peer
                self.since = time.time()
                self._session_sent.clear()
                # High-water marks first, before anything the POS could ACK (docs/link-protocol.md §7).
                self._marks_sent_at = time.monotonic()
                self._link.send(FrameType.DATA, encode_app(self.sink.marks_for(event.peer)), time.monotonic())  # type: ignore[union-attr]  # the link exists while its own events are read
                for msg_id, message in self.sink.attach(self, event.peer):
                    try:
                        self._link.send(FrameType.DATA, self._encode(message), time.monotonic(), tag=msg_id)  # type: ignore[union-attr]  # a LinkUp event comes only from a running link, so _link is set
                    except LinkNotUp:
                        break  # send queue full: the rest stay journaled as accepted for the next session
                    self._session_sent.add(msg_id)
            elif isinstance(event, LinkDown):
                peer, self.peer = self.peer, None
                self._session_sent.clear()
                self.since = time.time()
                self.sink.detach(self, peer, event.reason)
            elif isinstance(event, Undeliverable):
                self.sink.undeliverable(self, event.tag, event.reason)
            elif isinstance(event, HandshakeRefused):
                self.refused_handshakes += 1
                self.sink.handshake_refused(self, event.reason)
