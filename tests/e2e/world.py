"""The full path on loopback, as pieces the tests put together: HIS -> bridge -> device -> sandbox.

`SimWorld(root, sandbox)` provisions devices the way a field engineer does (firmware_sim.demo_setup:
signing key, new-device, a signed configuration image flashed over the device's own link), starts
real bridges in this process (bridge.daemon.Bridge: the usb:// transport needs the simulator's pyusb
backend object, which only exists here) and seals instructions with the reference client
(bridge.hisclient). Everything started is stopped by `cleanup()`, also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from bridge import hisclient
from bridge.config import parse_config
from bridge.daemon import Bridge
from bridge.keystore import write_keyfile
from bridge.logjson import setup_logging
from firmware_sim import demo_setup
from firmware_sim.control_api import ControlServer
from firmware_sim.device import DeviceOptions, LinkKind, Power, VirtualDevice
from firmware_sim.sandbox.launcher import SandboxProcess
from posflash.provision import read_records
from protocol.amount import parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.keyfile import format_keyfile
from protocol.link.session import LinkTimers
from protocol.messages import Result
from protocol.registry import TerminalRecord, format_terminal_csv
from firmware_sim.demo_gateway import DemoGateway
from tests.waiting import wait_until  # noqa: F401 (re-exported: the tests here import it from this module)

# Fast link timers (production: 0.3 s / 2 s / 6 s) so a pulled cable is noticed within a second or two.
# Marks refreshed every second on a live link (production: 30 s).
DEVICE_TIMERS = LinkTimers(rto_base_s=0.1, keepalive_s=0.5, dead_after_s=2.0, marks_refresh_s=1.0)
BRIDGE_TIMERS = {"rto_base_s": 0.1, "keepalive_s": 0.5, "dead_after_s": 2.0, "hello_retry_s": 0.2, "marks_refresh_s": 1.0}
# Fast channel cadence (production: query every 5 s, reverse after 30 s): the POS's polling, and the
# gateway's patience with a silent channel.
# No wait before a reverse (production: WeChat Pay 15 s after micropay; tests/terminal/test_needs_person.py
# checks that wait with an injected clock).
FAST_POLLING = {"query_interval_s": 0.1, "pay_deadline_s": 3.0, "reverse_not_before_s": 0.0}
FAST_GATEWAY_CHANNELS = {"read_timeout_s": 2.0}
PIN = demo_setup.DEMO_PIN


class SteppedClock:
    """The cashier PC's wall clock as the bridge reads it: real time plus `offset_s`, which a test
    steps (an NTP correction, someone setting the clock by hand) while everything runs."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s


def new_order() -> str:
    return "MZ" + uuid.uuid4().hex[:16]


@dataclass
class Pending:
    """An instruction HIS has posted and is waiting on (the reference client, in a thread)."""

    msg_id: str
    thread: threading.Thread
    box: dict[str, object]

    def outcome(self, timeout: float = 40.0) -> hisclient.Outcome:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"HIS got no answer for {self.msg_id} within {timeout:g} s"
        if "error" in self.box:
            raise self.box["error"]  # type: ignore[misc]  # the box holds the HIS thread's exception (typed object)
        return self.box["outcome"]  # type: ignore[return-value]  # the box holds the HIS thread's Outcome (typed object)

    def result(self, timeout: float = 40.0) -> Result:
        outcome = self.outcome(timeout)
        assert outcome.result is not None, f"no result for {self.msg_id}: state {outcome.state}"
        return outcome.result


@dataclass
class Rig:
    """One provisioned, configured device, its bridge, its control API and HIS's client config."""

    world: "SimWorld"
    device: VirtualDevice
    bridge: Bridge
    client: hisclient.ClientConfig
    control: ControlServer | None = None

    def pay(self, order_no: str, amount: str, *, wait_s: int = 40, msg_id: str | None = None) -> Pending:
        envelope = hisclient.seal(self.client, order_no, amount, msg_id or hisclient.new_msg_id(self.client.terminal_id))
        box: dict[str, object] = {}

        def run() -> None:
            try:
                box["outcome"] = hisclient.submit(self.client, envelope, order_no, wait_s, amount=parse_amount(amount))
            except Exception as exc:  # handed to the test thread
                box["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return Pending(envelope.msg_id, thread, box)

    def screen_is(self, screen: str, timeout: float = 15.0) -> None:
        wait_until(lambda: self.device.power is Power.ON and self.device.screen().screen.value == screen, timeout,
                   f"the POS to show {screen}")

    def issue(self, channel: str = "WECHAT", balance: str = "100.00", behaviour: str = "success") -> str:
        return str(self.world.sandbox.issue_code(channel, balance, behaviour)["code"])

    def balance_fen(self, code: str) -> int:
        return int(self.world.sandbox.account(code)["balance_fen"])

    def orders(self, code: str) -> list[dict[str, object]]:
        return self.world.sandbox.account(code)["orders"]  # type: ignore[return-value]  # the sandbox's account JSON: a list of order objects

    def bridge_result_count(self, msg_id: str) -> int:
        row = self.bridge.journal.get(msg_id)
        return 0 if row is None or row.result_envelope is None else 1


@dataclass
class SimWorld:
    root: Path
    sandbox: SandboxProcess
    key: SharedKey = field(default_factory=lambda: SharedKey("k2026a", "AES-256-GCM", os.urandom(32)))
    _cleanups: list[Callable[[], None]] = field(default_factory=list)
    _n: int = 0
    bridge_journal: dict[str, object] = field(default_factory=dict)  # extra [journal] settings of the bridges
    pc_clock: SteppedClock = field(default_factory=SteppedClock)  # every bridge's clock: tests step it
    polling: dict[str, dict[str, float]] = field(default_factory=lambda: {c: dict(FAST_POLLING) for c in ("WECHAT", "ALIPAY")})

    def __post_init__(self) -> None:
        self.signing = demo_setup.ensure_signing_key(self.root / "signing")
        self.hosts = demo_setup.ensure_host_keys(self.root / "hosts")
        self.records = self.root / "records.csv"
        # The provider's gateway, in this process on loopback: every device pays through it.
        self.gateway = DemoGateway(self.root / "gateway")
        self.gateway_url = self.gateway.serve_in_thread(FAST_GATEWAY_CHANNELS)
        self._cleanups.append(self.gateway.close)

    @property
    def keys_text(self) -> str:
        return format_keyfile(KeyRing([self.key]))

    def provision(self, serial: str | None = None) -> tuple[Path, demo_setup.ProvisionedDevice]:
        self._n += 1
        serial = serial or f"SIM{os.getpid() % 10000:04d}{self._n:03d}"
        directory = self.root / f"device-{serial}"
        return directory, demo_setup.ensure_device(directory, self.records, self.signing, serial_no=serial,
                                                    hosts=self.hosts.pins())

    def device_keys(self) -> dict[str, bytes]:
        """The device registry HIS holds (step 2): device_id -> public key, for checking `sig`."""
        return {r.device_id: r.public_key for r in read_records(self.records) if r.public_key is not None}

    def configuration(self, device: demo_setup.ProvisionedDevice, *, version: int = 1, terminals=None,
                      hospital: str | None = None) -> bytes:
        terminals = terminals or (demo_setup.DEMO_TERMINAL,)
        # Each device is a hospital of its own at the gateway (tests run several devices on T0001),
        # unless the test puts several windows of one hospital (`hospital`) side by side.
        hospital = hospital or f"H-{device.device_id}"
        self.gateway.onboard(Path(self.sandbox.credentials_path), self.keys_text, hospital_id=hospital)
        self.gateway.enroll(device.record(), tuple(terminals), hospital_id=hospital)
        return demo_setup.configuration_image(device, self.records, self.signing, keys_text=self.keys_text,
                                              gateway={"url": self.gateway_url}, version=version,
                                              polling=self.polling,
                                              terminals_csv=demo_setup.terminals_csv(tuple(terminals), device.device_id))

    def start_device(self, directory: Path, link: LinkKind, *, baud: int | None = None) -> VirtualDevice:
        device = VirtualDevice(DeviceOptions(directory, link=link, timers=DEVICE_TIMERS, baud=baud)).start()
        self._cleanups.append(device.close)
        return device

    def configured_device(self, link: LinkKind, *, baud: int | None = None, terminal: TerminalRecord = demo_setup.DEMO_TERMINAL,
                          hospital: str | None = None) -> tuple[VirtualDevice, demo_setup.ProvisionedDevice]:
        directory, provisioned = self.provision()
        device = self.start_device(directory, link, baud=baud)
        assert device.power is Power.RECOVERY  # a new device has no image: only flashing works
        image = self.configuration(provisioned, terminals=(terminal,), hospital=hospital)
        outcome = demo_setup.flash(device.bridge_url, image, self.records,
                                   host_key=self.hosts.maintenance, usb_backend=device.usb_backend)
        assert outcome.confirmed
        wait_until(lambda: device.power is Power.ON, what="the device to run its configuration")
        return device, provisioned

    def start_bridge(self, device: VirtualDevice, name: str = "bridge", *, terminal: TerminalRecord = demo_setup.DEMO_TERMINAL) -> Bridge:
        return self.start_bridge_for(device.bridge_url, device.identity.device_id, name, usb_backend=device.usb_backend,
                                     terminal=terminal)

    def start_bridge_for(self, url: str, device_id: str, name: str = "bridge", *, usb_backend: object = None,
                         terminal: TerminalRecord = demo_setup.DEMO_TERMINAL) -> Bridge:
        """A bridge in this process for the device at `url` (also a device in another process)."""
        return self._bridge(name, [url], demo_setup.terminals_csv((terminal,), device_id), usb_backend=usb_backend)

    def start_shared_bridge(self, windows: list[tuple[VirtualDevice, TerminalRecord]], name: str = "bridge") -> Bridge:
        """One cashier PC's bridge for several devices (TCP), each serving its own terminal."""
        csv = format_terminal_csv([TerminalRecord(t.terminal_id, t.description, device.identity.device_id) for device, t in windows])
        return self._bridge(name, [device.bridge_url for device, _ in windows], csv)

    def _bridge(self, name: str, ports: list[str], terminals_csv: str, *, usb_backend: object = None) -> Bridge:
        directory = self.root / name
        directory.mkdir(exist_ok=True)
        write_keyfile(directory / "keys.json", [self.key], {self.key.kid: "2026-01-01"})
        if not (directory / "bridge_identity.key").exists():
            shutil.copy(self.hosts.bridge, directory / "bridge_identity.key")  # the identity the devices pin (0600)
        shutil.copy(self.records, directory / "devices.csv")
        (directory / "terminals.csv").write_text(terminals_csv, encoding="utf-8")
        config = parse_config({
            "http": {"port": 0},
            "link": {"ports": ports, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5, "timers": dict(BRIDGE_TIMERS)},
            "log": {"level": "INFO", "file": "bridge.log"},
            "journal": dict(self.bridge_journal),
        }, base_dir=directory)
        setup_logging(config.log.level, config.log.file)
        bridge = Bridge(config, usb_backend=usb_backend, clock=self.pc_clock)
        bridge.relay.recheck_s = 0.2  # held results are checked again at once when a clock is put right
        bridge.start()
        self._cleanups.append(bridge.stop)
        return bridge

    def rig(self, link: LinkKind = LinkKind.TCP, *, control: bool = False, baud: int | None = None,
            terminal: TerminalRecord = demo_setup.DEMO_TERMINAL, hospital: str | None = None, bridge_name: str = "bridge") -> Rig:
        """A device on its own bridge. `hospital` + `terminal`: one window of a hospital that several
        rigs share at the gateway (each rig still has its own cashier PC, i.e. bridge `bridge_name`)."""
        device, provisioned = self.configured_device(link, baud=baud, terminal=terminal, hospital=hospital)
        bridge = self.start_bridge(device, bridge_name, terminal=terminal)
        assert device.wait_link_up(15), device.status()
        client = hisclient.ClientConfig(bridge.url, self.key, KeyRing([self.key]), terminal.terminal_id,
                                        {provisioned.device_id: provisioned.public_key}, http_timeout_s=10.0)
        server = None
        if control:
            server = ControlServer(device).start()
            self._cleanups.append(server.stop)
        return Rig(self, device, bridge, client, server)

    def cleanup(self) -> None:
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception:  # keep cleaning up; the test's own failure is what matters
                pass


def sandbox_fixture(factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    process = SandboxProcess(str(factory.mktemp("sim-sandbox")))
    process.start()
    try:
        yield process
    finally:
        process.stop()


def world_fixture(tmp_path: Path, sandbox: SandboxProcess) -> Iterator[SimWorld]:
    world = SimWorld(tmp_path, sandbox)
    try:
        yield world
    finally:
        world.cleanup()
