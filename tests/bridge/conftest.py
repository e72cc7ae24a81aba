"""Fixtures for the bridge tests: a provisioned bridge directory, devices, real bridges.

`world` is a directory with a key file, a device registry (D1 and D2 with real Ed25519 keys), a
terminal registry (T1 -> D1, T2 -> D2, T3 unbound) and helpers to seal instructions, start simulated
devices (firmware_sim endpoints with the echo responder) and bridges, in-process or as real
subprocesses. Everything started is stopped at teardown, also when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import requests

from protocol import signing
from protocol.amount import parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import Envelope, seal_instruction
from protocol.link.handshake import DeviceIdentity, HostTrust
from protocol.link.session import LinkTimers
from protocol.messages import Display, Instruction
from protocol.registry import DeviceRecord, TerminalRecord, format_device_csv, format_terminal_csv
from protocol.strictjson import ReportJson

from bridge.config import parse_config
from bridge.daemon import Bridge
from bridge.keystore import IDENTITY_FILE, load_identity, new_identity, write_keyfile
from bridge.logjson import setup_logging
from terminal.link.endpoint import DeviceEndpoint
from firmware_sim.android_usb import VirtualAndroidDevice
from firmware_sim.wires import AndroidUsbWire, PtyWire, UsbWire
from terminal.link.tcp_wire import TcpWire
from firmware_sim.responder import Responder
from firmware_sim.usb_backend import VirtualUsbDevice
from tests.waiting import wait_until  # noqa: F401 (re-exported: the tests here import it from this module)

ROOT = Path(__file__).resolve().parents[2]
FAST_TIMERS = {"rto_base_s": 0.1, "keepalive_s": 0.5, "dead_after_s": 2.0, "hello_retry_s": 0.2}
DEVICE_TIMERS = LinkTimers(rto_base_s=0.1, keepalive_s=0.5, dead_after_s=2.0)


@dataclass
class World:
    dir: Path
    key: SharedKey
    seeds: dict[str, bytes]
    identities: dict[str, DeviceIdentity]
    bridge_seed: bytes
    _cleanups: list[Callable[[], None]] = field(default_factory=list)
    _counter: int = 0

    @property
    def host_trust(self) -> HostTrust:
        """What the world's POSes pin: this bridge's identity key."""
        return HostTrust(bridges=frozenset({signing.public_key(self.bridge_seed)}))

    @property
    def ring(self) -> KeyRing:
        return KeyRing([self.key])

    def public_keys(self) -> dict[str, bytes]:
        """The device registry's public keys: what HIS and the bridge verify `sig` with."""
        return {d: signing.public_key(s) for d, s in self.seeds.items()}

    def msg_id(self) -> str:
        self._counter += 1
        return f"HIS-{os.getpid()}-{self._counter:06d}-{os.urandom(3).hex()}"

    def seal(self, amount: str = "+12.50", order: str = "MZ0001", *, terminal: str = "T1", msg_id: str | None = None,
             ts: int | None = None, key: SharedKey | None = None, patient: str | None = None) -> Envelope:
        display = Display(patient, ()) if patient else None
        instruction = Instruction(terminal, order, parse_amount(amount), display)
        return seal_instruction(instruction, key=key or self.key, msg_id=msg_id or self.msg_id(),
                                ts=int(time.time()) if ts is None else ts, nonce=os.urandom(12))

    def responder(self, device_id: str = "D1", **kwargs: object) -> Responder:
        seed = self.seeds.get(device_id) or os.urandom(32)  # an unregistered device has a key of its own
        return Responder(self.ring, device_id, device_key_seed=seed, **kwargs)  # type: ignore[arg-type]  # keyword options passed through to Responder, typed object here

    def endpoint(self, kind: str, handler: object, *, device_id: str = "D1", seed: bytes | None = None,
                 identity: DeviceIdentity | None = None, baud: int | None = None, serial_no: str = "PS-0001",
                 host_trust: HostTrust | None = None, android: VirtualAndroidDevice | None = None) -> DeviceEndpoint:
        if kind == "pty":
            wire: object = PtyWire(self.dir / f"tty-{device_id}-{self._next()}")
        elif kind == "tcp":
            wire = TcpWire()
        elif kind == "usb":
            wire = UsbWire(VirtualUsbDevice(serial_no=serial_no))
        elif kind == "aoa":  # an Android POS: the bridge switches it to accessory mode (aoa://)
            wire = AndroidUsbWire(android or VirtualAndroidDevice(serial_no=serial_no))
        else:
            raise ValueError(kind)
        endpoint = DeviceEndpoint(wire, handler, identity=identity or self.identities[device_id],  # type: ignore[arg-type]  # keyword options passed through to DeviceEndpoint, typed object here
                                  device_key_seed=seed or self.seeds[device_id], timers=DEVICE_TIMERS, baud=baud,
                                  host_trust=self.host_trust if host_trust is None else host_trust)
        endpoint.start()
        self._cleanups.append(endpoint.stop)
        return endpoint

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def config(self, ports: list[str], **sections: dict[str, object]) -> dict[str, object]:
        data: dict[str, object] = {
            "http": {"port": 0},
            "link": {"ports": ports, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5, "timers": dict(FAST_TIMERS)},
            "log": {"level": "DEBUG", "file": "bridge.log"},
        }
        for name, values in sections.items():
            merged = dict(data.get(name, {}))
            merged.update(values)
            data[name] = merged
        return data

    def bridge(self, ports: list[str], *, usb_backend: object = None, **sections: dict[str, object]) -> Bridge:
        config = parse_config(self.config(ports, **sections), base_dir=self.dir)
        setup_logging(config.log.level, config.log.file)
        bridge = Bridge(config, usb_backend=usb_backend).start()
        self._cleanups.append(bridge.stop)
        return bridge

    def write_config(self, ports: list[str], name: str = "config.toml", **sections: dict[str, object]) -> Path:
        path = self.dir / name
        path.write_text(_toml(self.config(ports, **sections)), encoding="utf-8")
        return path

    def log_lines(self) -> list[dict[str, object]]:
        path = self.dir / "bridge.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def security_events(self) -> list[dict[str, object]]:
        return [line for line in self.log_lines() if line.get("security")]

    def cleanup(self) -> None:
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception:  # keep cleaning up; the test's own failure is what matters
                pass


def _toml(data: dict[str, object], prefix: str = "") -> str:
    lines: list[str] = []
    tables: list[tuple[str, dict[str, object]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((f"{prefix}{key}", value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for name, table in tables:
        out += f"\n[{name}]\n" + _toml(table, prefix=f"{name}.")
    return out


def make_world(directory: Path) -> World:
    key = SharedKey("k1", "AES-256-GCM", os.urandom(32))
    write_keyfile(directory / "keys.json", [key], {"k1": "2026-01-01"})
    seeds = {"D1": os.urandom(32), "D2": os.urandom(32)}
    identities = {d: DeviceIdentity(d, "SIM-POS", f"SN-{d}", "1.0.0") for d in seeds}
    devices = [DeviceRecord(d, "SIM-POS", f"SN-{d}", signing.public_key(s)) for d, s in seeds.items()]
    (directory / "devices.csv").write_text(format_device_csv(devices), encoding="utf-8")
    terminals = [TerminalRecord("T1", "window 1", "D1"), TerminalRecord("T2", "window 2", "D2"),
                 TerminalRecord("T3", "window 3", None)]
    (directory / "terminals.csv").write_text(format_terminal_csv(terminals), encoding="utf-8")
    new_identity(directory / IDENTITY_FILE, "bridge-test")
    return World(directory, key, seeds, identities, load_identity(directory / IDENTITY_FILE).seed)


@pytest.fixture
def world(tmp_path: Path):
    w = make_world(tmp_path)
    try:
        yield w
    finally:
        w.cleanup()


class BridgeProcess:
    """`his-bridge serve` as a real subprocess (for kill -9 and signal tests)."""

    def __init__(self, world: World, config: Path, env: dict[str, str] | None = None) -> None:
        self.world, self.config = world, config
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> "BridgeProcess":
        before = len(self.world.log_lines())
        self.proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "--config", str(self.config), "serve"],
                                     env=self.env, cwd=self.world.dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def started() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"bridge exited {self.proc.returncode}: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]  # the bridge was started with stderr=PIPE
            for line in self.world.log_lines()[before:]:
                if line.get("event") == "bridge_started":
                    self.url = str(line["url"])
                    return True
            return False

        wait_until(started, timeout, "the bridge to start")
        return self

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def health(self) -> ReportJson:
        return requests.get(self.url + "/v1/health", timeout=5).json()


@pytest.fixture
def bridge_process(world: World):
    started: list[BridgeProcess] = []

    def factory(config: Path, env: dict[str, str] | None = None) -> BridgeProcess:
        process = BridgeProcess(world, config, env)
        started.append(process)
        return process

    try:
        yield factory
    finally:
        for process in started:
            process.kill()
            if process.proc is not None and process.proc.stderr is not None:
                process.proc.stderr.close()
