"""The reliable link as a pure state machine (sans-I/O, in the manner of h11).

The bridge (role HOST) and the device (role DEVICE) each own one `Link`. They move bytes between it
and a port; the link does the rest:

- handshake: HELLO_REQUEST / HELLO / HELLO_ACK (see `handshake`): both ends authenticated, fresh
  session keys; nothing reliable flows before it;
- security (see `secure`): every reliable frame is encrypted and authenticated (AEAD, nonce = its
  64-bit sequence counter), every ACK and NAK carries a tag; a frame that does not authenticate is
  dropped and counted (`rejected_frames`), so nobody on the cable can read, inject, replace or
  acknowledge away a message;
- reliable frames (DATA and the bootloader range) get a sequence number, up to `window` of them in
  flight; each is acknowledged, retransmitted after a timeout that grows with its wire time, and
  given up after `max_tries`, which takes the link down. The receiver accepts them strictly in
  order: a duplicate of an accepted frame (a retransmission) is acknowledged again, not delivered,
  and counted (`duplicates`); a frame ahead of the next expected one is dropped and counted
  (`reordered`) and comes again after its timeout;
- keepalive: PING after `keepalive_s` of silence from the peer; the link goes down after
  `dead_after_s` of silence;
- a session is reset (RESET frame, a new HELLO_REQUEST, or an error) by going down and handshaking
  again; what was not acknowledged is handed back to the application in `LinkDown.unacked`.

Time is passed in as `now` (seconds, any monotonic origin); randomness comes from the handshakes'
`random` callables. Call `poll(now)` at `next_deadline()` or sooner.

Acknowledgements are queued the moment a frame is decoded but only leave when the owner calls
`data_to_send()`. Owners handle (journal) the `Received` events first and write afterwards, so an
ACK on the wire means "handled": a crash in between loses the ACK, never the message.
"""

from __future__ import annotations

import enum
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from protocol.errors import CodedError
from protocol.link.decoder import Corrupt, FrameDecoder
from protocol.link.frame import (
    MAX_PAYLOAD,
    VERSION,
    FrameType,
    NakReason,
    encode_frame,
    is_reliable,
)
from protocol.link.handshake import (
    CHALLENGE_SIZE, Agreement, DeviceIdentity, HandshakeError, HostPeer, HostTrust, agree, encode_hello, encode_hello_ack,
    verify_hello, verify_hello_ack,
)
from protocol.link.secure import TAG_SIZE, Ephemeral, FrameAuthError, FrameCipher, frame_aad, reconstruct_counter


@dataclass(frozen=True, slots=True)
class LinkTimers:
    """Timing and limits. Defaults suit a USB-serial cable at 115200 baud; all are configurable."""

    # Retransmission timeout = rto_base_s + 2 x the frame's wire time at byte_rate.
    rto_base_s: float = 0.3
    # Bytes per second assumed for wire time: 115200 baud 8N1, the slowest link we support.
    byte_rate: float = 11_520.0
    # Transmissions of one frame before the peer is declared gone (esptool-style bounded retries).
    max_tries: int = 5
    # Reliable frames in flight at once.
    window: int = 8
    # Send a PING after this much silence from the peer...
    keepalive_s: float = 2.0
    # ...and declare the link down after this much.
    dead_after_s: float = 6.0
    # The host repeats HELLO_REQUEST (with a fresh challenge) this often until a device answers.
    hello_retry_s: float = 1.0
    # A RESET answer to stray frames is sent at most this often.
    reset_holdoff_s: float = 1.0
    # Both ends send their high-water marks again this often on a live link (docs/link-protocol.md §7):
    # the peer's copy is never older than this, not only as old as the last link-up. Not used by the
    # session itself: the bridge's port and the POS's link handler read it.
    marks_refresh_s: float = 30.0

    def rto(self, frame_len: int) -> float:
        return self.rto_base_s + 2.0 * frame_len / self.byte_rate


class Role(enum.Enum):
    HOST = "host"  # the bridge: challenges and verifies
    DEVICE = "device"  # the POS: proves its identity


class LinkState(enum.Enum):
    CLOSED = "closed"
    HANDSHAKE = "handshake"
    UP = "up"


@dataclass(frozen=True, slots=True)
class LinkUp:
    peer: DeviceIdentity | None  # the proven device (host side); None on the device side
    info: bytes  # the host's info JSON from HELLO_ACK (device side); b"" on the host side
    host: HostPeer | None = None  # the proven host and its pinned role (device side)


@dataclass(frozen=True, slots=True)
class LinkDown:
    reason: str
    unacked: tuple[object, ...]  # tags of reliable messages sent but not acknowledged, in order


@dataclass(frozen=True, slots=True)
class Received:
    type: int
    payload: bytes
    counter: int = -1  # the frame's 64-bit counter in this session: what `Link.refuse` takes


@dataclass(frozen=True, slots=True)
class Delivered:
    tag: object  # the peer acknowledged the message sent with this tag


@dataclass(frozen=True, slots=True)
class Undeliverable:
    tag: object
    reason: str  # the peer refused the frame itself (too large, unknown type)


@dataclass(frozen=True, slots=True)
class HandshakeRefused:
    reason: str  # for the security log: the peer failed to prove who it is


Event = LinkUp | LinkDown | Received | Delivered | Undeliverable | HandshakeRefused


class LinkNotUp(CodedError):
    """send() before the handshake completed or after the link went down."""

    code = "link_down"


@dataclass(frozen=True, slots=True)
class HostHandshake:
    public_key_for: Callable[[str], bytes | None]  # device registry lookup
    host_key_seed: bytes = field(repr=False)  # the host's Ed25519 identity key (pinned by the device)
    host_info: Callable[[], bytes] = lambda: b""  # info JSON in HELLO_ACK (the host's clock)
    random: Callable[[int], bytes] = os.urandom  # ephemeral keys


@dataclass(frozen=True, slots=True)
class DeviceHandshake:
    identity: DeviceIdentity
    device_key_seed: bytes = field(repr=False)  # the device's Ed25519 key (in the device registry)
    trust: HostTrust = HostTrust()  # the host keys pinned at provisioning
    random: Callable[[int], bytes] = os.urandom  # ephemeral keys


@dataclass(slots=True)
class LinkStats:
    sent_frames: int = 0
    retransmissions: int = 0
    duplicates: int = 0
    naks_sent: int = 0
    resets: int = 0
    handshakes: int = 0
    refused_handshakes: int = 0
    rejected_frames: int = 0  # did not authenticate: injected, altered, or from another session
    reordered: int = 0  # authentic but ahead of the next expected frame: dropped, comes again
    refused: int = 0  # accepted, then refused by the owner (it could not keep the message): un-ACKed, comes again


@dataclass(slots=True)
class _InFlight:
    frame: bytes
    tag: object
    tries: int
    deadline: float
    counter: int


@dataclass(slots=True)
class _Queued:
    type: int
    payload: bytes
    tag: object


class Link:
    def __init__(
        self,
        role: Role,
        *,
        host: HostHandshake | None = None,
        device: DeviceHandshake | None = None,
        timers: LinkTimers = LinkTimers(),
        max_payload: int = MAX_PAYLOAD,
        max_queue: int = 1024,
    ) -> None:
        if (role is Role.HOST) != (host is not None) or (role is Role.DEVICE) != (device is not None):
            raise ValueError("a HOST link needs host=HostHandshake, a DEVICE link device=DeviceHandshake")
        self.role = role
        self.timers = timers
        self.max_payload = max_payload
        self.max_queue = max_queue
        self.state = LinkState.CLOSED
        self.peer: DeviceIdentity | None = None
        self.host_peer: HostPeer | None = None
        self.stats = LinkStats()
        self._host = host
        self._device = device
        self._decoder = FrameDecoder(max_payload)
        self._out = bytearray()
        self._pending_acks: dict[int, tuple[int, int]] = {}
        # When the bytes emitted so far will have left the wire, at `byte_rate`: a frame queued
        # behind others is not overdue before it could even have been sent.
        self._wire_free_at = 0.0
        self._now = 0.0
        self._reset_session()
        self._last_rx = 0.0
        self._last_ping = 0.0
        self._last_reset_sent = float("-inf")
        self._request = b""  # the HELLO_REQUEST payload of the attempt under way (host: ours)
        self._eph: Ephemeral | None = None  # our ephemeral key of that attempt
        self._agreement: Agreement | None = None  # device: keys waiting for a valid HELLO_ACK
        self._hello_deadline = 0.0

    # ----------------------------------------------------------------- public interface

    def start(self, now: float) -> list[Event]:
        """Begin (or begin again): the host sends HELLO_REQUEST, the device waits for one."""
        self._now = now
        events = self._go_down("link restarted", now) if self.state is LinkState.UP else []
        # A (re)start is a new wire: what was queued for the old one, such as HELLO_REQUESTs that
        # piled up while a port was gone, must not go out on the new one.
        self._out.clear()
        self._pending_acks.clear()
        self._decoder.reset()
        self._agreement = None
        self._wire_free_at = now
        self.state = LinkState.HANDSHAKE
        self._last_rx = now
        if self.role is Role.HOST:
            self._send_hello_request(now)
        return events

    def close(self, reason: str = "closed", now: float = 0.0) -> list[Event]:
        events = self._go_down(reason, now) if self.state is LinkState.UP else []
        self.state = LinkState.CLOSED
        self._agreement = None
        self._decoder.reset()
        self._out.clear()
        self._pending_acks.clear()
        return events

    def send(self, frame_type: int, payload: bytes, now: float, tag: object = None) -> None:
        """Queue one reliable message. Raises LinkNotUp unless the handshake is complete."""
        self._now = now
        if not is_reliable(frame_type):
            raise ValueError(f"frame type 0x{frame_type:02x} is not a reliable type")
        if len(payload) + TAG_SIZE > self.max_payload:
            raise ValueError(f"payload of {len(payload)} bytes exceeds the link maximum of {self.max_payload - TAG_SIZE}")
        if self.state is not LinkState.UP:
            raise LinkNotUp(f"link is {self.state.value}")
        if len(self._queue) >= self.max_queue:
            raise LinkNotUp("link send queue is full")
        self._queue.append(_Queued(frame_type, payload, tag))
        self._pump(now)

    @property
    def in_flight(self) -> int:
        return len(self._inflight) + len(self._queue)

    def receive_bytes(self, data: bytes, now: float) -> list[Event]:
        self._now = now
        events: list[Event] = []
        if self.state is LinkState.CLOSED:
            return events
        for item in self._decoder.feed(data):
            if isinstance(item, Corrupt):
                self._on_corrupt(item)
                continue
            self._last_rx = now
            self._dispatch(item.type, item.seq, item.payload, now, events)
        return events

    def poll(self, now: float) -> list[Event]:
        self._now = now
        events: list[Event] = []
        if self.state is LinkState.HANDSHAKE and self.role is Role.HOST and now >= self._hello_deadline:
            self._send_hello_request(now)
        if self.state is not LinkState.UP:
            return events
        t = self.timers
        if now - self._last_rx >= t.dead_after_s:
            events += self._restart(f"no frames from the peer for {t.dead_after_s:g} s", now)
            return events
        for seq, pending in list(self._inflight.items()):
            if pending.deadline > now:
                continue
            if pending.tries >= t.max_tries:
                events += self._restart(f"frame {seq} unacknowledged after {t.max_tries} tries", now, send_reset=True)
                return events
            self._retransmit(pending, now)
        if now - self._last_rx >= t.keepalive_s and now - self._last_ping >= t.keepalive_s:
            self._last_ping = now
            self._emit(FrameType.PING, 0, b"")
        return events

    def next_deadline(self) -> float | None:
        """The earliest `now` at which poll() has something to do, or None."""
        t = self.timers
        if self.state is LinkState.HANDSHAKE:
            return self._hello_deadline if self.role is Role.HOST else None
        if self.state is not LinkState.UP:
            return None
        candidates = [self._last_rx + t.dead_after_s, max(self._last_rx, self._last_ping) + t.keepalive_s]
        candidates.extend(p.deadline for p in self._inflight.values())
        return min(candidates)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        self._pending_acks.clear()  # on the wire now: no longer withdrawable
        return out

    def refuse(self, counter: int) -> bool:
        """The owner could not keep the message of the peer's frame `counter` (its journal cannot be
        written: docs/link-protocol.md §7). Withdraw that frame's ACK and those of every frame accepted
        after it, and expect `counter` again: the peer's retransmission is delivered anew (not taken
        for a duplicate). The owner must ignore the Received events after it from the same
        receive_bytes() call (they are refused with it). Only possible while the ACK has not been
        handed out by data_to_send(): returns False then, and the owner ends the session instead.
        If the owner keeps refusing, the peer gives up after max_tries and the session restarts."""
        if self.state is not LinkState.UP or counter not in self._pending_acks:
            return False
        withdrawn = sorted((span for c, span in self._pending_acks.items() if c >= counter), reverse=True)
        for start, end in withdrawn:
            del self._out[start:end]
            shift = end - start
            self._pending_acks = {c: (s - shift if s > start else s, e - shift if s > start else e)
                                  for c, (s, e) in self._pending_acks.items() if (s, e) != (start, end)}
        self._rx_expected = counter
        self.stats.refused += 1
        return True

    # ----------------------------------------------------------------- internals

    def _reset_session(self) -> None:
        self._tx_counter = 0  # the 64-bit counter of our next reliable frame (its low 16 bits: seq)
        self._rx_expected = 0  # the counter of the peer's next reliable frame we accept
        self._pending_acks = {}  # counter -> its ACK's bytes in _out, not yet handed out (typed in __init__)
        self._tx: FrameCipher | None = None
        self._rx: FrameCipher | None = None
        self._inflight: dict[int, _InFlight] = {}
        self._queue: deque[_Queued] = deque()
        self._agreement = None
        self._confirmed = False

    def _emit(self, frame_type: int, seq: int, payload: bytes) -> bytes:
        frame = encode_frame(frame_type, seq, payload)
        self._out += frame
        self._occupy_wire(len(frame))
        self.stats.sent_frames += 1
        return frame

    def _occupy_wire(self, n_bytes: int) -> float:
        """Account for n bytes joining the output; return the retransmission deadline of a frame
        of that size sent now: when it will have left the wire, plus its timeout."""
        self._wire_free_at = max(self._now, self._wire_free_at) + n_bytes / self.timers.byte_rate
        return self._wire_free_at + self.timers.rto(n_bytes)

    def _emit_control(self, frame_type: int, aux: int, seq: int, counter: int) -> None:
        """An ACK (or NAK with reason `aux`) of the peer's frame `counter`, carrying our tag."""
        assert self._tx is not None
        tag = self._tx.seal(frame_type, aux, counter, frame_aad(VERSION, frame_type, seq), b"")
        self._emit(frame_type, seq, tag if frame_type == FrameType.ACK else bytes([aux]) + tag)

    def _control_authentic(self, frame_type: int, aux: int, seq: int, counter: int, tag: bytes) -> bool:
        assert self._rx is not None
        try:
            self._rx.open(frame_type, aux, counter, frame_aad(VERSION, frame_type, seq), tag)
        except FrameAuthError:
            self.stats.rejected_frames += 1
            return False
        return True

    def _install_keys(self, tx: bytes, rx: bytes) -> None:
        self._tx, self._rx = FrameCipher(tx), FrameCipher(rx)
        self._tx_counter = self._rx_expected = 0
        self._confirmed = False  # an authentic frame from the peer proved it holds the same keys

    def _send_hello_request(self, now: float) -> None:
        assert self._host is not None
        self._eph = Ephemeral.generate(self._host.random)
        self._request = self._eph.public
        self._hello_deadline = now + self.timers.hello_retry_s
        self._emit(FrameType.HELLO_REQUEST, 0, self._request)

    def _go_down(self, reason: str, now: float) -> list[Event]:
        unacked = tuple(p.tag for p in self._inflight.values()) + tuple(q.tag for q in self._queue)
        self._reset_session()
        self.peer = None
        self.host_peer = None
        self.state = LinkState.HANDSHAKE
        self.stats.resets += 1
        return [LinkDown(reason, unacked)]

    def _restart(self, reason: str, now: float, *, send_reset: bool = False) -> list[Event]:
        events = self._go_down(reason, now) if self.state is LinkState.UP else []
        self.state = LinkState.HANDSHAKE
        if send_reset:
            self._send_reset(now)
        if self.role is Role.HOST:
            self._send_hello_request(now)
        return events

    def _send_reset(self, now: float) -> None:
        if now - self._last_reset_sent >= self.timers.reset_holdoff_s:
            self._last_reset_sent = now
            self._emit(FrameType.RESET, 0, b"")

    def _pump(self, now: float) -> None:
        while self._queue and len(self._inflight) < self.timers.window:
            assert self._tx is not None
            item = self._queue.popleft()
            counter = self._tx_counter
            self._tx_counter = counter + 1
            seq = counter & 0xFFFF
            sealed = self._tx.seal(item.type, 0, counter, frame_aad(VERSION, item.type, seq), item.payload)
            frame = self._emit(item.type, seq, sealed)
            deadline = self._wire_free_at + self.timers.rto(len(frame))
            self._inflight[seq] = _InFlight(frame, item.tag, 1, deadline, counter)

    def _retransmit(self, pending: _InFlight, now: float) -> None:
        self._out += pending.frame
        self.stats.sent_frames += 1
        self.stats.retransmissions += 1
        pending.tries += 1
        pending.deadline = self._occupy_wire(len(pending.frame))

    def _on_corrupt(self, item: Corrupt) -> None:
        if self.state is not LinkState.UP or not is_reliable(item.type):
            return
        reason = NakReason.TOO_LARGE if item.reason == "too_large" else NakReason.CORRUPT
        self.stats.naks_sent += 1
        self._emit_control(FrameType.NAK, reason, item.seq, reconstruct_counter(item.seq, self._rx_expected))

    def _on_reliable(self, ftype: int, seq: int, payload: bytes, events: list[Event]) -> None:
        """In order, once, and only if authentic; ACK what was accepted now or before."""
        assert self._rx is not None
        counter = reconstruct_counter(seq, self._rx_expected)
        try:
            plaintext = self._rx.open(ftype, 0, counter, frame_aad(VERSION, ftype, seq), payload)
        except FrameAuthError:
            self.stats.rejected_frames += 1
            return
        self._confirmed = True
        if counter > self._rx_expected:
            self.stats.reordered += 1
            return
        start = len(self._out)
        self._emit_control(FrameType.ACK, 0, seq, counter)
        if counter < self._rx_expected:
            self.stats.duplicates += 1
            return
        self._pending_acks[counter] = (start, len(self._out))
        self._rx_expected = counter + 1
        events.append(Received(ftype, plaintext, counter))

    def _dispatch(self, ftype: int, seq: int, payload: bytes, now: float, events: list[Event]) -> None:
        up = self.state is LinkState.UP
        if is_reliable(ftype):
            if not up:
                self.stats.naks_sent += 1
                self._emit(FrameType.NAK, seq, bytes([NakReason.NOT_READY]))
                return
            self._on_reliable(ftype, seq, payload, events)
            return
        if ftype == FrameType.ACK:
            pending = self._inflight.get(seq) if up else None
            if pending is not None and self._control_authentic(FrameType.ACK, 0, seq, pending.counter, payload):
                self._confirmed = True
                del self._inflight[seq]
                events.append(Delivered(pending.tag))
                # The ACK proves the wire is moving: what is still ahead of it is at most what is
                # still in flight. Keeps the estimate honest when the wire is faster than byte_rate.
                backlog = sum(len(p.frame) for p in self._inflight.values())
                self._wire_free_at = min(self._wire_free_at, now + backlog / self.timers.byte_rate)
                self._pump(now)
        elif ftype == FrameType.NAK:
            self._on_nak(seq, payload, now, events)
        elif ftype == FrameType.PING:
            if up:
                self._emit(FrameType.PONG, seq, payload)
            else:
                self._send_reset(now)
        elif ftype == FrameType.PONG:
            pass
        elif ftype == FrameType.RESET:
            if self.state is not LinkState.CLOSED:
                events += self._restart("the peer reset the link", now)
        elif ftype == FrameType.HELLO_REQUEST:
            self._on_hello_request(payload, now, events)
        elif ftype == FrameType.HELLO:
            self._on_hello(payload, now, events)
        elif ftype == FrameType.HELLO_ACK:
            self._on_hello_ack(payload, now, events)

    def _on_nak(self, seq: int, payload: bytes, now: float, events: list[Event]) -> None:
        if self.state is not LinkState.UP:
            return
        reason = payload[0] if payload else NakReason.CORRUPT
        if reason == NakReason.NOT_READY:
            # Unauthenticated (the peer has no keys), so it may only cost a new handshake: what is
            # unacknowledged goes back to the application, never lost.
            if self.role is Role.HOST and not self._confirmed:
                # The device never used the new keys: most likely it refused our HELLO_ACK (our key is
                # not pinned there), or the HELLO_ACK was lost on the wire. Say so, for the log.
                self.stats.refused_handshakes += 1
                events.append(HandshakeRefused("the device did not take up the session: is this host's key "
                                               "pinned on it? (or the HELLO_ACK was lost)"))
            events += self._restart("the peer has no session", now)
            return
        pending = self._inflight.get(seq)
        if pending is None or not self._control_authentic(FrameType.NAK, reason, seq, pending.counter, payload[1:]):
            return
        if reason == NakReason.CORRUPT:
            if pending.tries >= self.timers.max_tries:
                events += self._restart(f"frame {seq} corrupted {pending.tries} times", now, send_reset=True)
            else:
                self._retransmit(pending, now)
        else:
            del self._inflight[seq]
            why = "too large for the peer" if reason == NakReason.TOO_LARGE else "not understood by the peer"
            events.append(Undeliverable(pending.tag, why))
            self._pump(now)

    def _on_hello_request(self, payload: bytes, now: float, events: list[Event]) -> None:
        if self.role is not Role.DEVICE or len(payload) != CHALLENGE_SIZE:
            return
        assert self._device is not None
        if self.state is LinkState.UP:
            events += self._go_down("the host started a new session", now)
        self.state = LinkState.HANDSHAKE
        device = self._device
        eph = Ephemeral.generate(device.random)
        hello = encode_hello(device.identity, payload, eph.public, device.device_key_seed)
        try:
            self._agreement = agree(eph, payload, payload, hello)
        except HandshakeError as exc:
            self.stats.refused_handshakes += 1
            events.append(HandshakeRefused(str(exc)))
            return
        self._emit(FrameType.HELLO, 0, hello)

    def _on_hello(self, payload: bytes, now: float, events: list[Event]) -> None:
        if self.role is not Role.HOST or self.state is not LinkState.HANDSHAKE or self._eph is None:
            return
        assert self._host is not None
        try:
            identity, device_eph = verify_hello(payload, self._request, self._host.public_key_for)
            agreement = agree(self._eph, device_eph, self._request, payload)
        except HandshakeError as exc:
            self.stats.refused_handshakes += 1
            events.append(HandshakeRefused(str(exc)))
            # A fresh ephemeral key on the next retry; the refused device gets nothing meanwhile.
            self._hello_deadline = now + self.timers.hello_retry_s
            return
        self._eph = None  # one HELLO per ephemeral key: a replayed or second HELLO finds none
        self._install_keys(agreement.keys.host_to_device, agreement.keys.device_to_host)
        self.peer = identity
        self.state = LinkState.UP
        self._last_rx = now
        self.stats.handshakes += 1
        self._emit(FrameType.HELLO_ACK, 0, encode_hello_ack(self._host.host_info(), agreement.transcript,
                                                            self._host.host_key_seed))
        events.append(LinkUp(identity, b""))

    def _on_hello_ack(self, payload: bytes, now: float, events: list[Event]) -> None:
        agreement = self._agreement
        if self.role is not Role.DEVICE or self.state is not LinkState.HANDSHAKE or agreement is None:
            return
        assert self._device is not None
        try:
            host, info = verify_hello_ack(payload, agreement.transcript, self._device.trust)
        except HandshakeError as exc:
            # Keep waiting: the genuine HELLO_ACK may still come; this host gets no session.
            self.stats.refused_handshakes += 1
            events.append(HandshakeRefused(str(exc)))
            return
        self._agreement = None
        self._install_keys(agreement.keys.device_to_host, agreement.keys.host_to_device)
        self.host_peer = host
        self.state = LinkState.UP
        self._last_rx = now
        self.stats.handshakes += 1
        events.append(LinkUp(None, info, host))
