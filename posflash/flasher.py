"""The PC end of flashing: a HOST link over one transport, flash commands, progress and resume.

`DeviceConnection` opens the port (bridge.transport.open_transport: serial:, socket://, usb://),
runs a `protocol.link.session.Link` in the HOST role (the device proves its key against the
device records; pos-flash proves its maintenance key, which the device pinned at provisioning, and
so gets the bootloader and never the application), and turns link events into flash replies. It reopens the port by itself when
the device reboots or the cable is replugged, within `reconnect_s`.

`flash_image` sends one image:
1. BEGIN with the image header; the device checks model, signature and counter before any data,
   and answers with the offset it already holds of this same image (a resume) or 0;
2. CHUNKs from that offset, each zlib-compressed with the 32 KiB of payload before it as its preset
   dictionary (raw where compression would not help; decodable from what the device already holds),
   keeping `in_flight` chunks unacknowledged so the wire never idles while the device writes;
3. END: the device verifies the whole payload and signature, installs it in the inactive slot
   and reboots into it; then INFO until the new image confirmed its health (or rolled back).
If the link drops, it reconnects, sends BEGIN again and continues from the device's offset; if
the process dies, running it again does the same.

Why `in_flight` = 2 and a 1 s retransmission base: the link computes a frame's retransmission
deadline when the frame is queued, and a frame queued behind k others on a paced wire waits k
wire times before its first byte leaves. With two in flight, one chunk is on the wire while the
device writes the previous one (the wire never idles), and a chunk's acknowledgement comes back
within two wire times plus the device's write time, inside the deadline (1 s + 2 wire times).
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from bridge.transport import Transport, TransportClosed, TransportError, open_transport
from posflash.hints import advise
from protocol import flash as fc
from protocol.flash import FlashCode, FlashError
from protocol.link.handshake import DeviceIdentity
from protocol.strictjson import dumps_compact
from protocol.link.session import (
    Delivered, HandshakeRefused, HostHandshake, Link, LinkDown, LinkNotUp, LinkState, LinkTimers, LinkUp, Received,
    Role, Undeliverable,
)

from protocol.image import Image, parse_image

DEFAULT_CHUNK = 16 * 1024
DEFAULT_IN_FLIGHT = 2
DEFAULT_LEVEL = 6
# Retransmission base for the flasher's link (see the module docstring).
FLASH_TIMERS = LinkTimers(rto_base_s=1.0)
CONNECT_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 10.0
RECONNECT_S = 20.0
REOPEN_INTERVAL_S = 0.2
CONFIRM_TIMEOUT_S = 60.0
# A flash gives up after this many lost sessions in a row without progress.
MAX_RESYNCS = 8
# Handshakes refused in a row before the device is declared not ours (a late HELLO is refused once).
MAX_REFUSALS = 3
_BUSY = re.compile(r"busy|lock|denied|in use|permission", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FlashProgress:
    phase: str  # "transfer", "verify", "reboot", "confirm", "done"
    done: int  # payload bytes the device holds
    total: int
    resumed_from: int
    wire_bytes: int  # CHUNK payload bytes sent this run (compressed), without link framing
    elapsed_s: float

    @property
    def rate(self) -> float:
        """Payload bytes per second this run."""
        return (self.done - self.resumed_from) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None


@dataclass(frozen=True, slots=True)
class FlashOutcome:
    slot: str
    version: str
    total: int
    resumed_from: int
    wire_bytes: int
    transfer_s: float  # BEGIN_OK to END_OK
    confirmed: bool | None  # True: running and confirmed; None: not waited for / not yet
    status: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _ChunkTag:
    generation: int
    offset: int
    length: int
    wire: int


class _LinkLost(Exception):
    """The link went down mid-request; the caller reconnects and carries on."""


class _Stopped(Exception):
    """`stop_after` reached: the transfer stops on purpose, as if the cable were pulled."""


def open_port(url: str, *, baud: int = 115200, usb_backend: object = None) -> Transport:
    """Open the port, turning "busy" into advice to stop the bridge service."""
    try:
        return open_transport(url, baud=baud, usb_backend=usb_backend)
    except TransportError as exc:
        code = FlashCode.PORT_BUSY if _BUSY.search(str(exc)) else FlashCode.NO_DEVICE
        raise advise(FlashError(code, f"cannot open {url}: {exc}")) from None


class DeviceConnection:
    def __init__(self, url: str, *, public_key_for: Callable[[str], bytes | None], host_key_seed: bytes,
                 baud: int = 115200,
                 usb_backend: object = None, timers: LinkTimers = FLASH_TIMERS, reconnect_s: float = RECONNECT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.baud = baud
        self.usb_backend = usb_backend
        self.reconnect_s = reconnect_s
        self.clock = clock
        self.identity: DeviceIdentity | None = None
        # HELLO_ACK proves our maintenance key: the device pinned it as such, so its application never
        # talks to us (only to a pinned bridge key); its bootloader does.
        host_info = lambda: dumps_compact({"host": "pos-flash", "clock": int(time.time())})  # noqa: E731
        self.link = Link(Role.HOST, host=HostHandshake(public_key_for, host_key_seed, host_info), timers=timers)
        self._transport: Transport | None = None
        self._lost_since: float | None = None
        self._events: deque[object] = deque()
        self._req = 0
        self._refusals = 0
        self._key_refusals = 0  # sessions in a row the device never took up (our key not pinned?)
        self._last_open = float("-inf")

    # ----------------------------------------------------------------- lifecycle

    def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> DeviceIdentity:
        """Open the port and complete the handshake (the device proves its device key)."""
        if self._transport is None:
            self._transport = open_port(self.url, baud=self.baud, usb_backend=self.usb_backend)
            self.link.start(self.clock())
        self.wait_up(timeout_s)
        assert self.identity is not None
        return self.identity

    def close(self) -> None:
        self.link.close("pos-flash done", self.clock())
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def __enter__(self) -> "DeviceConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def up(self) -> bool:
        return self.link.state is LinkState.UP

    def wait_up(self, timeout_s: float) -> None:
        deadline = self.clock() + timeout_s
        while not self.up:
            if self.clock() >= deadline:
                raise FlashError(FlashCode.NO_DEVICE if self.identity is None else FlashCode.TIMEOUT,
                                 f"no answer from a device on {self.url} within {timeout_s:g} s "
                                 "(is it on and is this its port? is the bridge service holding the port?)")
            self._step(min(0.1, max(0.0, deadline - self.clock())))

    # ----------------------------------------------------------------- the I/O step

    def _step(self, max_wait: float) -> None:
        """Move bytes once: read (up to max_wait), feed the link, poll its timers, write."""
        if self._transport is None:
            self._reopen()
            return
        now = self.clock()
        deadline = self.link.next_deadline()
        wait = max_wait if deadline is None else max(0.0, min(max_wait, deadline - now))
        try:
            out = self.link.data_to_send()
            if out:
                self._transport.write(out)
            data = self._transport.read(65536, wait)
            now = self.clock()
            events = self.link.receive_bytes(data, now) if data else []
            events += self.link.poll(now)
            out = self.link.data_to_send()
            if out:
                self._transport.write(out)
        except TransportClosed:
            self._transport.close()
            self._transport = None
            self._lost_since = self.clock()
            events = self.link.close("the port closed", self.clock())
            self.link.data_to_send()  # bytes for the dead connection: a new one starts with a new HELLO
            self._events.extend(events)
            return
        for event in events:
            if isinstance(event, HandshakeRefused):
                # A HELLO answering an earlier challenge (the host retries with fresh ones) fails the
                # proof too: only an unknown device, or a proof failing again and again, is fatal.
                if "take up the session" in event.reason:
                    self._key_refusals += 1
                    if self._key_refusals >= MAX_REFUSALS:
                        raise FlashError(FlashCode.UNKNOWN_DEVICE, f"the device on {self.url} refuses this pos-flash: "
                                         "its maintenance key is not pinned on the device (pin the .pub of "
                                         "pos-flash host-key new at provisioning: pos-sim init --host-key)")
                    continue
                self._refusals += 1
                if "not in the device registry" in event.reason or self._refusals >= MAX_REFUSALS:
                    raise FlashError(FlashCode.UNKNOWN_DEVICE, f"the device on {self.url} was refused: {event.reason}")
                continue
            if isinstance(event, Received):
                self._key_refusals = 0
            if isinstance(event, LinkUp):
                self.identity = event.peer
                self._lost_since = None
                self._refusals = 0
            self._events.append(event)

    def _reopen(self) -> None:
        assert self._lost_since is not None
        if self.clock() - self._lost_since > self.reconnect_s:
            raise FlashError(FlashCode.TIMEOUT, f"the device on {self.url} did not come back within {self.reconnect_s:g} s")
        # Rebooting or replugging: try again shortly, not in a tight loop.
        time.sleep(max(0.0, self._last_open + REOPEN_INTERVAL_S - self.clock()))
        self._last_open = self.clock()
        try:
            self._transport = open_transport(self.url, baud=self.baud, usb_backend=self.usb_backend)
        except TransportError:
            return
        self.link.data_to_send()
        self.link.start(self.clock())

    # ----------------------------------------------------------------- messages

    def next_req(self) -> int:
        self._req = self._req % 0xFFFFFFFF + 1
        return self._req

    def send(self, msg: fc.Request, tag: object = None) -> None:
        frame_type, payload = fc.encode(msg)
        try:
            self.link.send(frame_type, payload, self.clock(), tag=tag)
        except LinkNotUp:
            raise _LinkLost("the link is down") from None
        out = self.link.data_to_send()
        if out and self._transport is not None:
            try:
                self._transport.write(out)
            except TransportClosed:
                pass  # the next _step notices and reconnects

    def next_event(self, timeout_s: float) -> object | None:
        """The next link event (Received payloads decoded into flash replies), or None on timeout."""
        deadline = self.clock() + timeout_s
        while not self._events:
            remaining = deadline - self.clock()
            if remaining <= 0:
                return None
            self._step(min(0.1, remaining))
        event = self._events.popleft()
        if isinstance(event, Received):
            try:
                return fc.decode(event.type, event.payload)
            except FlashError as exc:
                return fc.error_reply(exc)
        return event

    def request(self, msg: fc.Request, timeout_s: float = REPLY_TIMEOUT_S) -> fc.Reply:
        """Send a request and wait for the reply with its req id. ErrorReply raises FlashError."""
        self.send(msg)
        deadline = self.clock() + timeout_s
        req = getattr(msg, "req")
        while True:
            event = self.next_event(max(0.0, deadline - self.clock()))
            if event is None:
                raise FlashError(FlashCode.TIMEOUT, f"the device did not answer {type(msg).__name__.upper()} within {timeout_s:g} s")
            if isinstance(event, LinkDown):
                raise _LinkLost(event.reason)
            if isinstance(event, (fc.BeginOk, fc.EndOk, fc.InfoOk, fc.Done)) and event.req == req:
                return event
            if isinstance(event, fc.ErrorReply) and event.req == req:
                raise event.to_error()

    def call(self, make: Callable[[int], fc.Request], timeout_s: float = REPLY_TIMEOUT_S) -> fc.Reply:
        """A request that is safe to repeat: retried across reconnects until `reconnect_s` runs out."""
        while True:
            if not self.up:
                self.wait_up(self.reconnect_s)
            try:
                return self.request(make(self.next_req()), timeout_s)
            except _LinkLost:
                continue


# ----------------------------------------------------------------------------- operations


def read_status(conn: DeviceConnection, log_lines: int = 20) -> dict[str, object]:
    reply = conn.call(lambda req: fc.Info(req, log_lines))
    assert isinstance(reply, fc.InfoOk)
    return reply.status


def command(conn: DeviceConnection, kind: type[fc.Reboot] | type[fc.Confirm] | type[fc.Rollback]) -> str:
    reply = conn.call(lambda req: kind(req))
    assert isinstance(reply, fc.Done)
    return reply.message


def flash_image(conn: DeviceConnection, image_bytes: bytes, *, chunk_size: int = DEFAULT_CHUNK,
                in_flight: int = DEFAULT_IN_FLIGHT, level: int = DEFAULT_LEVEL,
                on_progress: Callable[[FlashProgress], None] | None = None,
                wait_confirm_s: float = CONFIRM_TIMEOUT_S, stop_after: int | None = None) -> FlashOutcome:
    """Flash `image_bytes` through an open connection. `stop_after` (bytes) interrupts the transfer
    on purpose, as a pulled cable would (tests and demonstrations of resume)."""
    image = parse_image(image_bytes)
    identity = conn.identity
    if identity is not None and identity.model != image.manifest.model:
        raise FlashError(FlashCode.WRONG_MODEL, f"the image is for model {image.manifest.model}; the device on {conn.url} is a {identity.model}")
    session = os.urandom(fc.SESSION_SIZE)
    total = image.manifest.payload_size
    started = conn.clock()
    resumed_from: int | None = None
    wire = 0
    resyncs = 0
    generation = 0
    end_sent = False

    def progress(phase: str, done: int) -> None:
        if on_progress is not None:
            on_progress(FlashProgress(phase, done, total, resumed_from or 0, wire, conn.clock() - started))

    while True:
        generation += 1
        try:
            reply = conn.call(lambda req: fc.Begin(req, session, total, chunk_size, image.header.raw))
            assert isinstance(reply, fc.BeginOk)
            if resumed_from is None:
                resumed_from = reply.resume_offset
                started = conn.clock()
            progress("transfer", reply.resume_offset)
            wire += _send_chunks(conn, image, session, reply, generation, in_flight, level, progress, stop_after)
            end_sent = True
            end = conn.request(fc.End(conn.next_req(), session), REPLY_TIMEOUT_S + total / 1e6)
            assert isinstance(end, fc.EndOk)
            break
        except _LinkLost:
            if end_sent and (installed := _installed_slot(conn, image)) is not None:
                end = fc.EndOk(0, session, installed, image.manifest.version, True)  # the reply was lost, not the END
                break
        except _Stopped as stop:
            raise FlashError(FlashCode.INCOMPLETE, f"transfer stopped as asked after {stop.args[0]} of {total} bytes") from None
        except FlashError as exc:
            if exc.code not in (FlashCode.CHUNK_GAP, FlashCode.BAD_CHUNK, FlashCode.NO_SESSION, FlashCode.INCOMPLETE):
                raise
        resyncs += 1
        if resyncs > MAX_RESYNCS:
            raise FlashError(FlashCode.TIMEOUT, f"the transfer broke off {resyncs} times in a row")
    transfer_s = conn.clock() - started
    progress("reboot", total)
    outcome = FlashOutcome(end.slot, end.version, total, resumed_from or 0, wire, transfer_s, None)
    if not end.rebooting or wait_confirm_s <= 0:
        return outcome
    status = wait_for_confirmation(conn, end.slot, wait_confirm_s)
    progress("done", total)
    return FlashOutcome(end.slot, end.version, total, resumed_from or 0, wire, transfer_s, True, status)


def _send_chunks(conn: DeviceConnection, image: Image, session: bytes, begin: fc.BeginOk, generation: int,
                 in_flight: int, level: int, progress: Callable[[str, int], None], stop_after: int | None) -> int:
    """Stream CHUNKs from the device's offset, `in_flight` at a time; return the bytes sent."""
    total = image.manifest.payload_size
    payload = memoryview(image.payload)
    next_offset = acked = begin.resume_offset
    outstanding = 0
    wire = 0
    while acked < total:
        while outstanding < in_flight and next_offset < total:
            if stop_after is not None and next_offset >= stop_after:
                raise _Stopped(next_offset)
            data = bytes(payload[next_offset : next_offset + begin.chunk_size])
            window = bytes(payload[max(0, next_offset - fc.WINDOW_SIZE) : next_offset])
            chunk = fc.make_chunk(session, next_offset, data, level=level, window=window)
            conn.send(chunk, tag=_ChunkTag(generation, next_offset, len(data), fc.wire_size(chunk)))
            next_offset += len(data)
            outstanding += 1
            wire += fc.wire_size(chunk)
        event = conn.next_event(REPLY_TIMEOUT_S)
        if event is None:
            raise FlashError(FlashCode.TIMEOUT, f"no acknowledgement from the device for {REPLY_TIMEOUT_S:g} s")
        if isinstance(event, LinkDown):
            raise _LinkLost(event.reason)
        if isinstance(event, (Delivered, Undeliverable)) and isinstance(event.tag, _ChunkTag) and event.tag.generation == generation:
            if isinstance(event, Undeliverable):
                raise FlashError(FlashCode.BAD_CHUNK, f"the device refused a chunk frame ({event.reason}); use a smaller --chunk-size")
            outstanding -= 1
            acked = event.tag.offset + event.tag.length
            progress("transfer", acked)
        elif isinstance(event, fc.ErrorReply) and event.op == fc.FlashType.CHUNK and event.session == session:
            raise event.to_error()
    return wire


def _installed_slot(conn: DeviceConnection, image: Image) -> str | None:
    """The slot holding exactly this image (pending or confirmed), if the device already installed it."""
    status = read_status(conn, log_lines=0)
    slots = status.get("slots")
    for name, slot in (slots.items() if isinstance(slots, dict) else []):
        parts = slot.get("parts") or {} if isinstance(slot, dict) else {}
        if slot.get("state") in ("pending", "confirmed") and any(
                isinstance(p, dict) and p.get("digest") == image.header.digest for p in parts.values()):
            return name
    return None


def wait_for_confirmation(conn: DeviceConnection, slot: str, timeout_s: float) -> dict[str, object]:
    """After END: wait until the device runs `slot` confirmed; HEALTH_FAILED if it rolled back."""
    deadline = conn.clock() + timeout_s
    status: dict[str, object] = {}
    while conn.clock() < deadline:
        try:
            status = read_status(conn, log_lines=10)
        except FlashError as exc:
            if exc.code is not FlashCode.TIMEOUT:
                raise
            continue
        slots = status.get("slots")
        state = slots.get(slot, {}).get("state") if isinstance(slots, dict) else None
        if status.get("running") == slot and status.get("active") == slot and state == "confirmed":
            return status
        if state == "failed":
            log_lines = status.get("log") or []
            last = log_lines[-1] if isinstance(log_lines, list) and log_lines else "no log"
            raise FlashError(FlashCode.HEALTH_FAILED, f"the new image in slot {slot} did not come up; the device runs slot "
                             f"{status.get('running')} again (last log line: {last})")
        _sleep_pumping(conn, 0.3)
    raise FlashError(FlashCode.TIMEOUT, f"the image is installed in slot {slot} but did not confirm its health within "
                     f"{timeout_s:g} s; check `pos-flash info`")


def _sleep_pumping(conn: DeviceConnection, seconds: float) -> None:
    """Wait while still answering the link (keepalives, ACKs)."""
    end = conn.clock() + seconds
    while conn.clock() < end:
        event = conn.next_event(max(0.0, end - conn.clock()))
        if isinstance(event, LinkDown):
            return
