"""A man-in-the-middle on the USB cable, in process, over real ptys.

The device's endpoint holds pty A (it writes to A's master); the attacker opens A's slave as the host
would, and offers the bridge pty B of its own (the bridge opens B's slave as `serial:`). Every byte
between them passes through the attacker's thread, frame by frame (protocol.link.decoder): `tamper`
decides, for each frame, what goes on instead (the frame itself, nothing, or forged frames), and
`inject_*` adds frames of its own. `captured` keeps every byte it saw, for "can it read it?".
"""

from __future__ import annotations

import os
import select
import threading
import tty
from typing import Callable

from protocol.link.decoder import Corrupt, FrameDecoder
from protocol.link.frame import Frame

TO_BRIDGE = "to_bridge"
TO_DEVICE = "to_device"
Tamper = Callable[[str, Frame], list[bytes] | None]  # None: pass the frame on unchanged


class CableMitm:
    def __init__(self, device_slave_path: str, tamper: Tamper | None = None) -> None:
        self.tamper = tamper
        self.captured = bytearray()
        self.seen: list[tuple[str, Frame]] = []
        self._device = os.open(device_slave_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._device)
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._bridge_master, self._bridge_slave = master, slave
        self.bridge_url = "serial:" + os.ttyname(slave)
        self._decoders = {TO_BRIDGE: FrameDecoder(), TO_DEVICE: FrameDecoder()}
        self._lock = threading.RLock()  # tamper may inject from inside the relay loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cable-mitm", daemon=True)

    def start(self) -> "CableMitm":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (self._device, self._bridge_master, self._bridge_slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def inject_to_bridge(self, data: bytes) -> None:
        with self._lock:
            os.write(self._bridge_master, data)

    def inject_to_device(self, data: bytes) -> None:
        with self._lock:
            os.write(self._device, data)

    def frames(self, direction: str) -> list[Frame]:
        with self._lock:
            return [f for d, f in self.seen if d == direction]

    def _run(self) -> None:
        routes = {self._device: (TO_BRIDGE, self._bridge_master), self._bridge_master: (TO_DEVICE, self._device)}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(routes), [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except (BlockingIOError, OSError):
                    continue
                direction, out = routes[fd]
                with self._lock:
                    self.captured += data
                    for item in self._decoders[direction].feed(data):
                        if isinstance(item, Corrupt):
                            continue
                        self.seen.append((direction, item))
                        replaced = self.tamper(direction, item) if self.tamper else None
                        for chunk in ([item.encode()] if replaced is None else replaced):
                            try:
                                os.write(out, chunk)
                            except OSError:
                                pass
