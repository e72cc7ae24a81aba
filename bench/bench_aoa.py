"""Android Open Accessory path: the bridge's switch, a frame's round trip, the POS app's wire.

- `switch_ms`: AoaTransport.open() on a simulated Android POS that re-enumerates at once (so this is
  our own cost: the control requests through pyusb and the re-enumeration poll; a real device adds
  its 1-3 s of leaving and re-joining the bus);
- `round_trip_us`: a 256-byte frame from the bridge's transport to the POS app's AccessoryWire and
  back, over the simulated bus (pyusb backend, reader thread, queue);
- `fd_wire_mb_s`: bytes through the app's AccessoryWire from a real descriptor (a socketpair, as the
  accessory's one descriptor), i.e. the reader thread and queue overhead on the POS.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time

from bridge.transport import make_transport
from firmware_sim.android_usb import VirtualAndroidDevice
from firmware_sim.usb_backend import VirtualUsbBackend
from firmware_sim.wires import AndroidUsbWire
from terminal.link.accessory_wire import AccessoryWire
from terminal.link.android_accessory import FdAccessory
from terminal.link.wire import WireReset


def _read_exactly(read, size: int) -> bytes:
    got = b""
    while len(got) < size:
        try:
            got += read(size - len(got), 1.0)
        except WireReset:
            continue
    return got


def _switch_ms(n: int) -> float:
    times = []
    for _ in range(n):
        pos = VirtualAndroidDevice(reenumerate_s=0.0)
        transport = make_transport("aoa://1209:7D02", usb_backend=VirtualUsbBackend(pos))
        started = time.perf_counter()
        transport.open()
        times.append((time.perf_counter() - started) * 1000)
        transport.close()
    return statistics.median(times)


def _round_trip_us(n: int) -> float:
    wire = AndroidUsbWire(VirtualAndroidDevice(reenumerate_s=0.0))
    transport = make_transport(wire.bridge_url, usb_backend=wire.backend)
    transport.open()
    frame = os.urandom(256)
    stop = threading.Event()

    def echo() -> None:  # the POS app: what arrives goes back
        while not stop.is_set():
            try:
                data = wire.read(65536, 0.05)
            except WireReset:
                continue
            if data:
                wire.write(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    times = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            transport.write(frame)
            assert _read_exactly(transport.read, len(frame)) == frame
            times.append((time.perf_counter() - started) * 1e6)
    finally:
        stop.set()
        thread.join()
        transport.close()
        wire.close()
    return statistics.median(times)


def _fd_wire_mb_s(total: int) -> float:
    device_end, host = socket.socketpair()
    given = [FdAccessory(device_end.detach())]
    wire = AccessoryWire(lambda: given.pop() if given else None)
    try:
        wire.read(1, 0.01)
    except WireReset:
        pass
    chunk = os.urandom(16384)
    sender = threading.Thread(target=lambda: [host.sendall(chunk) for _ in range(total // len(chunk))], daemon=True)
    started = time.perf_counter()
    sender.start()
    got = 0
    while got < total // len(chunk) * len(chunk):
        got += len(wire.read(65536, 1.0))
    elapsed = time.perf_counter() - started
    sender.join()
    wire.close()
    host.close()
    return got / elapsed / 1e6


def run(quick: bool) -> dict[str, object]:
    return {
        "switch_ms": round(_switch_ms(3 if quick else 10), 1),
        "round_trip_us": round(_round_trip_us(50 if quick else 500), 1),
        "fd_wire_mb_s": round(_fd_wire_mb_s((4 if quick else 64) * 1024 * 1024), 1),
    }
