"""The DEVICE end of the bridge <-> POS link, over a pty, TCP or the virtual USB device.

A `DeviceEndpoint` owns a `protocol.link.session.Link(Role.DEVICE)` and a thread that moves bytes
between it and a wire, optionally paced at a UART baud rate. What the link delivers goes to two
pluggable handlers; everything the device says goes out through `send` / `send_boot`.

Handler interface (the terminal service and the bootloader plug in here)
------------------------------------------------------------------------
    class DeviceHandler(Protocol):                      # firmware_sim.responder.Responder is one
        def on_link_up(self, endpoint, host_info: bytes) -> None
            # the bridge proved nothing (the device proves itself) but accepted us; host_info is the
            # bridge's HELLO_ACK JSON (its clock). Re-send everything not yet Delivered, here.
        def on_instruction(self, envelope: Envelope, endpoint) -> None
            # an InstructionMsg from the bridge: verify it yourself (receive_instruction), dedup by
            # msg_id, answer later with endpoint.send(ResultMsg | ProgressMsg | RefusedMsg, tag).
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

Wires: `PtyWire` (os.openpty; the bridge opens `serial:<slave path or stable symlink>`), `TcpWire`
(listens on 127.0.0.1; the bridge connects to `socket://127.0.0.1:PORT`), `UsbWire` (the
`VirtualUsbDevice` of firmware_sim.usb_backend; the bridge opens `usb://VID:PID/SERIAL` with
`wire.backend` as its pyusb backend). Each can `unplug()` and `replug()`; `endpoint.bridge_url` is
the URL the bridge should use. Shortcuts: `pty_endpoint(handler, identity=..., device_key_seed=...,
link_path=...)`, `tcp_endpoint(...)`, `usb_endpoint(..., serial_no=...)` (call `.start()`).

Pacing: `baud=115200` (or 921600) makes every write wait one UART wire time (8N1) before the bytes
appear, and every read wait until the bytes could have crossed the line, so throughput and frame
latency match a real cable.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from pathlib import Path
from typing import Protocol

from protocol.envelope import Envelope
from protocol.errors import ProtocolError
from protocol.link.app import AppMessage, InstructionMsg, decode_app, encode_app
from protocol.link.frame import FrameType, is_reliable, wire_time_s
from protocol.link.handshake import DeviceIdentity, encode_hello
from protocol.link.session import (
    Delivered, DeviceHandshake, Link, LinkDown, LinkNotUp, LinkState, LinkTimers, LinkUp, Received, Role,
    Undeliverable,
)

from firmware_sim.usb_backend import VirtualUsbBackend, VirtualUsbDevice

log = logging.getLogger("firmware_sim.endpoint")

__all__ = ["BootHandler", "DeviceEndpoint", "DeviceHandler", "LinkNotUp", "PtyWire", "TcpWire", "UsbWire", "Wire"]


class DeviceHandler(Protocol):
    def on_link_up(self, endpoint: "DeviceEndpoint", host_info: bytes) -> None: ...
    def on_instruction(self, envelope: Envelope, endpoint: "DeviceEndpoint") -> None: ...
    def on_delivered(self, tag: object, endpoint: "DeviceEndpoint") -> None: ...
    def on_link_down(self, unacked: tuple[object, ...], endpoint: "DeviceEndpoint") -> None: ...


class BootHandler(Protocol):
    def on_boot_frame(self, frame_type: int, payload: bytes, endpoint: "DeviceEndpoint") -> None: ...


class WireReset(Exception):
    """The host side went away or a new host connection began: the link session is over."""


class Wire(Protocol):
    bridge_url: str

    def read(self, max_bytes: int, timeout: float) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    def unplug(self) -> None: ...
    def replug(self) -> None: ...
    def close(self) -> None: ...


# ------------------------------------------------------------------------------------ wires


class PtyWire:
    """A pty pair: the device holds the master, the bridge opens the slave as a serial port.

    With `link_path`, a symlink there always points at the current slave (as udev's
    /dev/serial/by-id names do), so the bridge's `serial:` URL survives unplug/replug.
    """

    def __init__(self, link_path: str | Path | None = None) -> None:
        self.link_path = Path(link_path) if link_path else None
        self._lock = threading.Lock()
        self._master = -1
        self._slave = -1
        self.slave_path = ""
        self._open()

    def _open(self) -> None:
        import tty  # POSIX only: imported here so TCP and USB endpoints also run on Windows

        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline, before anyone writes
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        if self.link_path is not None:
            tmp = self.link_path.with_name(self.link_path.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.slave_path)
            os.replace(tmp, self.link_path)

    @property
    def bridge_url(self) -> str:
        return f"serial:{self.link_path or self.slave_path}"

    def read(self, max_bytes: int, timeout: float) -> bytes:
        master = self._master
        if master < 0:
            time.sleep(timeout)
            return b""
        try:
            ready, _, _ = select.select([master], [], [], timeout)
            return os.read(master, max_bytes) if ready else b""
        except (BlockingIOError, InterruptedError):
            return b""
        except (OSError, ValueError):
            # The master was closed under us (unplug) or no slave is open: nothing to read.
            if self._master == master:
                time.sleep(min(timeout, 0.01))
                return b""
            raise WireReset("pty replaced") from None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 1.0
        while view and self._master >= 0:
            try:
                view = view[os.write(self._master, view):]
            except BlockingIOError:
                # The slave's input queue is full: nobody is reading. A UART would overrun; drop.
                if time.monotonic() > deadline:
                    return
                select.select([], [self._master], [], 0.05)
            except OSError:
                return

    def unplug(self) -> None:
        with self._lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    os.close(fd)
            self._master = self._slave = -1

    def replug(self) -> None:
        with self._lock:
            if self._master < 0:
                self._open()

    def close(self) -> None:
        self.unplug()
        if self.link_path is not None:
            self.link_path.unlink(missing_ok=True)


class TcpWire:
    """Listens on 127.0.0.1 (an ephemeral port unless given); one host connection at a time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._listener = socket.create_server((host, port))
        self.address = self._listener.getsockname()[:2]
        self._conn: socket.socket | None = None
        self._plugged = True
        self._lock = threading.Lock()

    @property
    def bridge_url(self) -> str:
        return f"socket://{self.address[0]}:{self.address[1]}"

    def read(self, max_bytes: int, timeout: float) -> bytes:
        conn = self._conn
        if conn is None:
            ready, _, _ = select.select([self._listener], [], [], timeout)
            if not ready:
                return b""
            try:
                new, _ = self._listener.accept()
            except OSError:
                return b""
            if not self._plugged:
                new.close()  # "no device there": the host's connection drops at once
                return b""
            new.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = new
            raise WireReset("a host connected")
        try:
            ready, _, _ = select.select([conn], [], [], timeout)
            if not ready:
                return b""
            data = conn.recv(max_bytes)
        except (OSError, ValueError):
            data = b""
        if not data:
            self._drop(conn)
            raise WireReset("the host disconnected")
        return data

    def _drop(self, conn: socket.socket) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None
        try:
            conn.close()
        except OSError:
            pass

    def write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.sendall(data)
        except OSError:
            self._drop(conn)

    def unplug(self) -> None:
        self._plugged = False
        conn = self._conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._drop(conn)

    def replug(self) -> None:
        self._plugged = True

    def close(self) -> None:
        self.unplug()
        self._listener.close()


class UsbWire:
    """The device side of a `VirtualUsbDevice`; `backend` is what the bridge passes to pyusb."""

    def __init__(self, device: VirtualUsbDevice | None = None) -> None:
        self.device = device or VirtualUsbDevice()
        self.backend = VirtualUsbBackend(self.device)
        self._generation = self.device.generation

    @property
    def bridge_url(self) -> str:
        return f"usb://{self.device.vid:04X}:{self.device.pid:04X}/{self.device.serial_no}"

    def read(self, max_bytes: int, timeout: float) -> bytes:
        generation, data = self.device.device_read(max_bytes, timeout)
        if generation != self._generation:
            self._generation = generation
            raise WireReset("the USB device was re-attached")
        return data

    def write(self, data: bytes) -> None:
        self.device.device_write(data)

    def unplug(self) -> None:
        self.device.unplug()

    def replug(self) -> None:
        self.device.replug()

    def close(self) -> None:
        self.device.unplug()


# ------------------------------------------------------------------------------------ endpoint


class DeviceEndpoint:
    def __init__(self, wire: Wire, handler: DeviceHandler, *, identity: DeviceIdentity, device_key_seed: bytes,
                 timers: LinkTimers = LinkTimers(), baud: int | None = None, boot_handler: object = None) -> None:
        self.wire = wire
        self.handler = handler
        self.boot_handler = boot_handler
        self.identity = identity
        self.baud = baud  # pace both directions at this UART rate (8N1); None: as fast as the wire
        self.host_info = b""
        self._lock = threading.RLock()
        seed = bytes(device_key_seed)
        self.link = Link(Role.DEVICE, device=DeviceHandshake(lambda challenge: encode_hello(identity, challenge, seed)),
                         timers=timers)
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

    def _dispatch(self, events: list[object]) -> None:
        for event in events:
            if isinstance(event, Received):
                self._on_received(event)
            elif isinstance(event, Delivered):
                self._route_tag(event.tag, "on_delivered")
            elif isinstance(event, Undeliverable):
                log.warning("the bridge refused a frame: %s", event.reason)
                self._route_tag(event.tag, "on_delivered")
            elif isinstance(event, LinkUp):
                self.host_info = event.info
                self.handler.on_link_up(self, event.info)
                if self.boot_handler is not None and hasattr(self.boot_handler, "on_link_up"):
                    self.boot_handler.on_link_up(self, event.info)
            elif isinstance(event, LinkDown):
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
                self.boot_handler.on_boot_frame(event.type, event.payload, self)  # type: ignore[attr-defined]
            else:
                log.warning("bootloader frame 0x%02x ignored: no boot handler", event.type)
            return
        try:
            message = decode_app(event.payload)
        except ProtocolError as exc:
            log.warning("undecodable DATA from the bridge: %s", exc.message)
            return
        if isinstance(message, InstructionMsg):
            self.handler.on_instruction(message.envelope, self)
        else:
            log.warning("unexpected %s from the bridge ignored", type(message).__name__)


def pty_endpoint(handler: DeviceHandler, **kwargs: object) -> DeviceEndpoint:
    link_path = kwargs.pop("link_path", None)
    return DeviceEndpoint(PtyWire(link_path), handler, **kwargs)  # type: ignore[arg-type]


def tcp_endpoint(handler: DeviceHandler, **kwargs: object) -> DeviceEndpoint:
    return DeviceEndpoint(TcpWire(), handler, **kwargs)  # type: ignore[arg-type]


def usb_endpoint(handler: DeviceHandler, *, serial_no: str = "PS-0001", **kwargs: object) -> DeviceEndpoint:
    return DeviceEndpoint(UsbWire(VirtualUsbDevice(serial_no=serial_no)), handler, **kwargs)  # type: ignore[arg-type]
