"""`pos-sim run`: one simulated device and its control API, as a process, until Ctrl-C or SIGTERM.

When ready it prints ONE JSON line on stdout and writes the same object to <storage>/sim.json, which
the other `pos-sim` commands (and scripts) read to find the control API:

    {"event": "ready", "pid": 4242, "device_id": "D-SIM0001", "bridge_url": "serial:/abs/.run/device/tty",
     "control_url": "http://127.0.0.1:40123", "power": "on", "storage": "/abs/.run/device"}

Everything else goes to stderr. One simulator per storage directory (<storage>/sim.lock, an OS file
lock released when the process dies however it dies). SIGINT/SIGTERM stop it cleanly: the link
first, then the terminal service, then its journal, so what was committed is all there is.
`exit_with_parent` makes it stop when its parent process goes away (a launcher killed with -9).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path

from protocol.link.session import LinkTimers

from firmware_sim.control_api import ControlServer
from firmware_sim.device import DeviceOptions, LinkKind, VirtualDevice
from firmware_sim.simerrors import SimCode, SimError
from firmware_sim.statefile import remove_state, write_state
from firmware_sim.usb_cable import UsbCableServer
from local_storage.stop_signals import StopSignals

log = logging.getLogger("firmware_sim.simrun")
LOCK_FILE = "sim.lock"
PARENT_POLL_S = 0.5


class StorageLock:
    """An exclusive lock on <storage>/sim.lock for the life of this process (POSIX flock; Windows msvcrt)."""

    def __init__(self, storage: Path, name: str = LOCK_FILE, what: str = "pos-sim") -> None:
        self.path = storage / name
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.name == "posix":
                import fcntl

                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                import msvcrt

                msvcrt.locking(self._fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]  # msvcrt exists on Windows only; this branch runs only there
        except OSError:
            os.close(self._fd)
            raise SimError(SimCode.STORAGE, f"another {what} runs on {storage} ({self.path} is locked); "
                           "stop it first, or give this one its own directory") from None

    def release(self) -> None:
        os.close(self._fd)


def _watch_parent(stop: threading.Event) -> None:
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(PARENT_POLL_S):
            if os.getppid() != parent:
                log.warning("the launcher (pid %d) went away: stopping", parent)
                stop.set()
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_simulator(storage: Path, *, link: str = "pty", tcp_port: int = 0, control_host: str = "127.0.0.1",
                  control_port: int = 0, baud: int | None = None, timers: LinkTimers = LinkTimers(),
                  pty_link: Path | None = None, exit_with_parent: bool = False, ui: bool = False,
                  log_level: str = "INFO", ui_receipts: Path | None = None, ui_orientation: str = "portrait") -> int:
    logging.basicConfig(level=log_level, stream=sys.stderr, format="%(asctime)s pos-sim %(name)s %(levelname)s %(message)s")
    storage = storage.resolve()
    if not storage.is_dir():
        raise SimError(SimCode.STORAGE, f"{storage} does not exist; provision a device there first "
                       "(pos-sim init --storage ...) or run `make run HEADLESS=1`")
    lock = StorageLock(storage)
    stop = threading.Event()
    device: VirtualDevice | None = None
    server: ControlServer | None = None
    cable: UsbCableServer | None = None
    try:
        device = VirtualDevice(DeviceOptions(storage, link=LinkKind(link), tcp_port=tcp_port, baud=baud, timers=timers,
                                             pty_link=pty_link))
        server = ControlServer(device, host=control_host, port=control_port)
        signals = StopSignals(stop, signals=("SIGINT", "SIGTERM")).install()
        device.start()
        server.start()
        state = {"event": "ready", "pid": os.getpid(), "device_id": device.identity.device_id,
                 "bridge_url": device.bridge_url, "control_url": server.url, "power": device.power.value,
                 "storage": str(storage)}
        if device.usb_backend is not None:  # the virtual bus, for a bridge in another process
            cable = UsbCableServer(device.usb_backend, host=control_host).start()  # type: ignore[arg-type]  # usb_backend is set (checked just above) and is the simulator's VirtualUsbBackend
            state["usb_cable"] = cable.address
        write_state(storage, state)
        sys.stdout.write(json.dumps(state) + "\n")
        sys.stdout.flush()
        log.info("device %s ready: link %s, control API %s, power %s", device.identity.device_id, device.bridge_url,
                 server.url, device.power.value)
        if exit_with_parent:
            _watch_parent(stop)
        if ui:
            from firmware_sim.screen import ScreenOptions, run_screen

            options = ScreenOptions((ui_receipts or storage / "receipts").resolve(), ui_orientation)
            run_screen(device, stop, options)  # the UI owns the main thread until its window closes
            stop.set()
        signals.wait()
        log.info("stopping")
        return 0
    finally:
        if cable is not None:
            cable.stop()
        if server is not None:
            server.stop()
        if device is not None:
            device.close()
        remove_state(storage)
        lock.release()
