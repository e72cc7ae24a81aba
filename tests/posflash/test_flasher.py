"""Flashing over real wires: pos-flash (library and CLI) against the device endpoint on loopback TCP.

The device is provisioned with `demo_setup.provision_device` (pos-sim init + add-device), runs the real `DeviceEndpoint` (TcpWire,
optionally paced at a UART baud rate) with the bootloader's `BootService`, and reboots through
`run_boot_sequence`. The PC side is `firmware_sim.flasher` over `bridge.transport`, or the
`pos-flash` console script in a subprocess (killed mid-transfer to prove resume).
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import serial

from protocol.crypto import KeyRing
from protocol.flash import FlashCode, FlashError, FlashType

from firmware_sim.demo_setup import ensure_host_keys, provision_device
from posflash.host_key import load_host_key
from posflash import flasher, provision
from posflash import cli as flash_cli
from firmware_sim.bootloader import Bootloader
from firmware_sim.bootservice import BootService, config_checker, default_self_test, run_boot_sequence
from terminal.link.endpoint import DeviceEndpoint
from firmware_sim.wires import PtyWire, UsbWire
from terminal.link.tcp_wire import TcpWire
from firmware_sim.responder import Responder
from protocol.trust import TrustStore
from firmware_sim.storage import DeviceStorage
from tests.protocol.test_image import MODEL, TRUST, make_image

SERIAL = "SN0001"
DEVICE_ID = "D-SN0001"


class SimDevice:
    """A provisioned device directory, its bootloader and a real link endpoint serving it."""

    def __init__(self, root: Path, *, baud: int | None = None, reboot_drops_link: bool = False, wire=None) -> None:
        self.records = root / "devices.csv"
        self.hosts = ensure_host_keys(root / "hosts")
        self.host_key_seed = load_host_key(self.hosts.maintenance).seed
        self.info = provision_device(root / "device", self.records, model=MODEL, serial_no=SERIAL,
                                       trust=TrustStore(TRUST.keys), hosts=self.hosts.pins())
        self.boot = Bootloader(DeviceStorage(self.info.directory), model=MODEL, device_id=self.info.device_id,
                               check_config=config_checker(MODEL, self.info.device_id, self.info.config_key))
        self.self_test = default_self_test(self.info.device_id, MODEL, self.info.config_key)
        self.running = run_boot_sequence(self.boot, self.self_test)
        self.reboot_drops_link = reboot_drops_link
        self.endpoint = DeviceEndpoint(wire or TcpWire(), Responder(KeyRing([]), self.info.device_id, device_key_seed=self.info.device_key_seed),
                                       identity=self.info.identity("boot-1.0"), device_key_seed=self.info.device_key_seed,
                                       host_trust=self.info.host_trust, boot_handler=BootService(self.boot, reboot=self._reboot), baud=baud).start()
        self.url = self.endpoint.bridge_url

    def _reboot(self, reason: str) -> None:
        if self.reboot_drops_link:
            self.endpoint.unplug()  # a real reboot re-enumerates USB: the host sees the port vanish
        self.running = run_boot_sequence(self.boot, self.self_test)
        if self.reboot_drops_link:
            self.endpoint.replug()

    def registry(self):
        return {self.info.device_id: self.info.public_key}.get

    def connect(self) -> flasher.DeviceConnection:
        backend = getattr(self.endpoint.wire, "backend", None)  # the virtual USB device's pyusb backend
        conn = flasher.DeviceConnection(self.url, public_key_for=self.registry(), host_key_seed=self.host_key_seed,
                                        usb_backend=backend)
        conn.connect()
        return conn

    def stop(self) -> None:
        self.endpoint.stop()


@pytest.fixture
def sim(tmp_path):
    device = SimDevice(tmp_path)
    yield device
    device.stop()


def test_flash_over_tcp_confirms_and_compresses(sim):
    seen = []
    with sim.connect() as conn:
        assert conn.identity.device_id == DEVICE_ID
        outcome = flasher.flash_image(conn, make_image("1.0.0", 1, size=200_000), chunk_size=8192, on_progress=seen.append)
        status = flasher.read_status(conn)
    assert outcome.confirmed and outcome.slot == "a" and outcome.resumed_from == 0
    assert outcome.wire_bytes < outcome.total / 3  # Python source compresses
    done = [p.done for p in seen if p.phase == "transfer"]
    assert done == sorted(done) and done[-1] == outcome.total
    assert [p.phase for p in seen][-2:] == ["reboot", "done"]
    assert status["running"] == "a" and status["slots"]["a"]["state"] == "confirmed"
    assert sim.running.app_version == "1.0.0"


@pytest.mark.parametrize("wire", [PtyWire, UsbWire], ids=["pty-serial", "usb-pyusb"])
def test_flash_over_a_serial_pty_and_over_usb(tmp_path, wire):
    sim = SimDevice(tmp_path, wire=wire())
    try:
        with sim.connect() as conn:
            outcome = flasher.flash_image(conn, make_image("1.0.0", 1, size=100_000, noise=True))
        assert outcome.confirmed and sim.running.app_version == "1.0.0"
    finally:
        sim.stop()


def test_progress_bar_on_a_terminal_and_lines_in_a_log():
    def feed(view):
        for done in (0, 4096, 8192, 16384):
            view(flasher.FlashProgress("transfer", done, 16384, 0, done, done / 8192))
        view(flasher.FlashProgress("reboot", 16384, 16384, 0, 16384, 2.0))

    tty, log = io.StringIO(), io.StringIO()
    feed(flash_cli.ProgressView(tty, tty=True))
    feed(flash_cli.ProgressView(log, tty=False))
    assert "\r[###############---------------]  50% 8.0 KiB of 16.0 KiB  8.0 KiB/s  ETA 0:01" in tty.getvalue()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("  0%") and lines[-2].startswith("100%") and "\r" not in log.getvalue()
    assert "reboots into the new image" in lines[-1]


def test_link_lost_mid_transfer_is_resumed_in_the_same_run(tmp_path):
    sim = SimDevice(tmp_path, baud=921_600)
    try:
        pulled = threading.Event()

        def pull_cable(progress: flasher.FlashProgress) -> None:
            if progress.phase == "transfer" and progress.done >= 60_000 and not pulled.is_set():
                pulled.set()
                sim.endpoint.unplug()
                threading.Timer(0.3, sim.endpoint.replug).start()

        with sim.connect() as conn:
            outcome = flasher.flash_image(conn, make_image("1.0.0", 1, size=150_000, noise=True), chunk_size=8192,
                                          on_progress=pull_cable)
        assert pulled.is_set() and outcome.confirmed
        log = "\n".join(sim.boot.recent_log(20))
        assert "resuming at byte" in log and sim.running.app_version == "1.0.0"
    finally:
        sim.stop()


def test_reboot_that_drops_the_link_is_waited_for(tmp_path):
    sim = SimDevice(tmp_path, reboot_drops_link=True)
    try:
        with sim.connect() as conn:
            outcome = flasher.flash_image(conn, make_image("1.0.0", 1))
        assert outcome.confirmed and outcome.status["running"] == "a"
    finally:
        sim.stop()


def test_end_reply_lost_in_the_reboot_is_not_a_failure(tmp_path):
    sim = SimDevice(tmp_path)
    service = sim.endpoint.boot_handler

    def on_boot_frame(frame_type, payload, endpoint):
        if frame_type != FlashType.END:
            return BootService.on_boot_frame(service, frame_type, payload, endpoint)
        service.handle(frame_type, payload)  # installed; the reply dies with the USB connection
        sim.endpoint.unplug()
        sim.running = run_boot_sequence(sim.boot, sim.self_test)
        sim.endpoint.replug()

    service.on_boot_frame = on_boot_frame
    try:
        with sim.connect() as conn:
            outcome = flasher.flash_image(conn, make_image("1.0.0", 1))
        assert outcome.confirmed and outcome.slot == "a" and sim.running.app_version == "1.0.0"
    finally:
        sim.stop()


def test_failed_health_check_is_reported_and_the_old_image_runs(sim):
    with sim.connect() as conn:
        flasher.flash_image(conn, make_image("1.0.0", 1))
        with pytest.raises(FlashError) as info:
            flasher.flash_image(conn, make_image("1.1.0", 2, app=b"not a zip"))
    assert info.value.code is FlashCode.HEALTH_FAILED and "slot a" in info.value.message
    assert sim.running.slot == "a" and sim.running.app_version == "1.0.0"


def test_device_missing_from_the_records_is_refused(sim):
    conn = flasher.DeviceConnection(sim.url, public_key_for=lambda device_id: None, host_key_seed=sim.host_key_seed)
    with pytest.raises(FlashError) as info:
        conn.connect()
    conn.close()
    assert info.value.code is FlashCode.UNKNOWN_DEVICE and DEVICE_ID in info.value.message


def test_busy_serial_port_says_stop_the_bridge(tmp_path):
    sim = SimDevice(tmp_path, wire=PtyWire())
    bridge = serial.serial_for_url(sim.endpoint.wire.slave_path, exclusive=True)  # the bridge service holds it
    try:
        with pytest.raises(FlashError) as info:
            flasher.DeviceConnection(sim.url, public_key_for=sim.registry(), host_key_seed=sim.host_key_seed).connect()
        assert info.value.code is FlashCode.PORT_BUSY and "stop the bridge service" in info.value.message
    finally:
        bridge.close()
        sim.stop()


def _pos_flash(*args: str) -> list[str]:
    return [sys.executable, "-m", "posflash.cli", *args]


def test_cli_flash_killed_mid_way_resumes_when_run_again(tmp_path):
    sim = SimDevice(tmp_path, baud=921_600)
    image = tmp_path / "app-1.1.0.img"
    image.write_bytes(make_image("1.1.0", 2, size=256 * 1024, noise=True))
    command = _pos_flash("flash", "--port", sim.url, "--devices", str(sim.records), "--host-key", str(sim.hosts.maintenance),
                         str(image))
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in iter(first.stderr.readline, ""):  # not a TTY: a progress line per 10%
            percent = re.match(r"\s*(\d+)% ", line)
            if percent and int(percent.group(1)) >= 20:
                first.send_signal(signal.SIGKILL)  # no goodbye: as if the laptop died
                break
        first.wait(timeout=20)
        held = sim.boot.status()["download"]
        assert held is not None and 0 < held["offset"] < held["total"]
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        assert "resuming at" in second.stderr and "resumed at" in second.stdout
        assert "confirmed healthy" in second.stdout
        assert sim.running.app_version == "1.1.0"
    finally:
        if first.poll() is None:
            first.kill()
        sim.stop()


def test_cli_info_and_refusals(sim, tmp_path, capsys):
    port = ["--port", sim.url, "--devices", str(sim.records), "--host-key", str(sim.hosts.maintenance)]
    newer, older = tmp_path / "new.img", tmp_path / "old.img"
    newer.write_bytes(make_image("2.0.0", 2))
    older.write_bytes(make_image("1.0.0", 1))
    assert flash_cli.main(["flash", *port, str(newer)]) == flash_cli.EXIT_OK
    assert flash_cli.main(["flash", *port, str(older)]) == flash_cli.EXIT_FAIL
    err = capsys.readouterr().err
    assert "pos-flash: downgrade: app security counter 1 is below this device's minimum 2" in err
    assert flash_cli.main(["info", *port, "--log", "5"]) == flash_cli.EXIT_OK
    out = capsys.readouterr().out
    assert "slot a: confirmed [running, active]  app 2.0.0 (counter 2, key release-2026)" in out
    assert "minimum security counters: app 2" in out and "recent log:" in out
    truncated = tmp_path / "cut.img"
    truncated.write_bytes(newer.read_bytes()[:-10])
    assert flash_cli.main(["flash", *port, str(truncated)]) == flash_cli.EXIT_FAIL
    assert "pos-flash: truncated:" in capsys.readouterr().err
    assert flash_cli.main(["reboot", *port]) == flash_cli.EXIT_OK
    assert "rebooting" in capsys.readouterr().out
