"""`pos-sim` as a person uses it: `run` as a real process, the cashier commands in other processes,
the state file, one simulator per storage, exit codes, a clean stop on SIGTERM, and --help."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from bridge import hisclient
from firmware_sim.cli import build_parser, main
from firmware_sim.device import LinkKind
from firmware_sim.sandbox.launcher import SandboxProcess
from protocol.amount import parse_amount
from protocol.crypto import KeyRing
from protocol.messages import PayStatus
from tests.e2e.world import PIN, SimWorld, new_order, sandbox_fixture, wait_until, world_fixture


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    yield from sandbox_fixture(tmp_path_factory)


def pos_sim(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firmware_sim.cli", *args], capture_output=True, text=True, timeout=60,
                          input=stdin)


class SimProcess:
    """`pos-sim run` in the background; stopped (SIGTERM, then kill) at the end of the test. Its
    stderr (the log) is read all along, its last lines kept: a log that filled the pipe would block
    the process in its next log line."""

    def __init__(self, storage: Path, *extra: str) -> None:
        self.storage = storage
        # -X faulthandler: a run that does not stop is aborted with every thread's stack on stderr.
        self.proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "firmware_sim.cli", "run", "--storage", str(storage),
                                      "--tcp", "0", "--rto", "0.1", "--keepalive", "0.5", "--dead-after", "2", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log: collections.deque[str] = collections.deque(maxlen=300)
        self._log_reader = threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True)  # type: ignore[arg-type]  # started with stderr=PIPE
        self._log_reader.start()
        box: dict[str, str] = {}
        reader = threading.Thread(target=lambda: box.update(line=self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]  # started with stdout=PIPE
        reader.start()
        reader.join(30)
        if not box.get("line"):
            self.proc.kill()
            raise AssertionError(f"pos-sim run printed no ready line:\n{self.last_words()}")
        self.ready = json.loads(box["line"])

    def last_words(self) -> str:
        self._log_reader.join(10)  # the process has ended: its stderr is at its end
        return "".join(self.log)[-6000:]

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # faulthandler writes where each thread is stuck
            self.proc.wait(timeout=20)
            raise AssertionError(f"pos-sim run did not stop within 20 s of SIGTERM; its last words:\n{self.last_words()}") from None
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def module_world(tmp_path_factory: pytest.TempPathFactory, sandbox: SandboxProcess) -> Iterator[SimWorld]:
    yield from world_fixture(tmp_path_factory.mktemp("world"), sandbox)


def configure(world: SimWorld) -> tuple[Path, str]:
    """A provisioned device with a flashed configuration, switched off (its storage free for pos-sim run)."""
    device, provisioned = world.configured_device(LinkKind.TCP)
    storage = Path(device.options.storage)
    device.close()
    return storage, provisioned.device_id


@dataclass
class Running:
    """One `pos-sim run` the tests of this module share, and the bridge HIS reaches it through."""

    world: SimWorld
    storage: Path
    device_id: str
    sim: SimProcess

    @property
    def at(self) -> tuple[str, str]:
        return ("--storage", str(self.storage))


@pytest.fixture(scope="module")
def running(module_world: SimWorld) -> Iterator[Running]:
    storage, device_id = configure(module_world)
    sim = SimProcess(storage)
    try:
        yield Running(module_world, storage, device_id, sim)
    finally:
        sim.terminate()


@dataclass
class Paid:
    order: str
    code: str
    statuses: list[PayStatus]


@pytest.fixture(scope="module")
def paid(running: Running) -> Iterator[Paid]:
    """HIS collects +12.50 and refunds -5.00 of it; the cashier scans and confirms with pos-sim."""
    world, at = running.world, running.at
    bridge = world.start_bridge_for(str(running.sim.ready["bridge_url"]), running.device_id)
    try:
        client = hisclient.ClientConfig(bridge.url, world.key, KeyRing([world.key]), "T0001", world.device_keys())
        wait_until(lambda: bridge.health()["status"] == "ok", what="the link to pos-sim")
        issued = world.sandbox.issue_code("WECHAT", "100.00", "success")
        order, statuses = new_order(), []
        for amount, act in (("+12.50", ("scan", "--qr", str(issued["qr_path"]))), ("-5.00", ("confirm-refund",))):
            box: dict[str, hisclient.Outcome] = {}
            envelope = hisclient.seal(client, order, amount, hisclient.new_msg_id("T0001"))
            waiter = threading.Thread(target=lambda: box.update(o=hisclient.submit(client, envelope, order, 30, amount=parse_amount(amount))))
            waiter.start()
            wanted = "awaiting_scan" if amount.startswith("+") else "awaiting_supervisor"
            wait_until(lambda: pos_sim("screen", *at, "--json").stdout.count(f'"screen": "{wanted}"'), what=wanted)
            screen = pos_sim("screen", *at)
            assert screen.returncode == 0 and f"{wanted}  {amount}  order {order}" in screen.stdout
            done = pos_sim(*act, *at, stdin=PIN + "\n")  # confirm-refund reads the PIN from stdin
            assert done.returncode == 0, done.stderr
            waiter.join(30)
            result = box["o"].result
            assert result is not None, f"no verified result for {amount}"
            statuses.append(result.pay_status)
        yield Paid(order, str(issued["code"]), statuses)
    finally:
        bridge.stop()


def test_run_prints_a_ready_line_and_writes_its_state_file(running: Running) -> None:
    ready = running.sim.ready
    assert (ready["event"], ready["device_id"], ready["power"]) == ("ready", running.device_id, "on")
    state = json.loads((running.storage / "sim.json").read_text())
    assert state["control_url"] == ready["control_url"] and state["pid"] == running.sim.proc.pid


def test_a_second_run_on_the_same_storage_is_refused(running: Running) -> None:
    second = pos_sim("run", *running.at, "--tcp", "0")
    assert second.returncode == 1 and "another pos-sim runs on" in second.stderr


def test_status_names_the_device_and_its_power(running: Running) -> None:
    status = pos_sim("status", *running.at)
    assert status.returncode == 0 and f"device {running.device_id}" in status.stdout and "power on" in status.stdout


def test_a_scan_with_nothing_to_pay_is_refused_with_its_code(running: Running) -> None:
    nothing = pos_sim("scan", "134567890123456789", *running.at)
    assert nothing.returncode == 1 and "pos-sim: nothing_to_scan:" in nothing.stderr


def test_the_cashier_commands_collect_and_refund(paid: Paid) -> None:
    assert paid.statuses == [PayStatus.SUCCESS, PayStatus.REFUNDED]


def test_history_shows_the_payment_and_the_refund(running: Running, paid: Paid) -> None:
    history = pos_sim("history", *running.at, "--order", paid.order)
    assert history.returncode == 0 and "-5.00  REFUNDED" in history.stdout and "+12.50  SUCCESS" in history.stdout


def test_the_patient_is_charged_the_payment_less_the_refund(running: Running, paid: Paid) -> None:
    assert running.world.sandbox.account(paid.code)["balance"] == "92.50"


def test_fault_unplug_says_the_cable_is_out(running: Running, paid: Paid) -> None:
    unplug = pos_sim("fault", "unplug", "--for", "0.3", *running.at)
    assert unplug.returncode == 0 and "cable unplugged" in unplug.stdout


def test_fault_skew_moves_the_device_clock(running: Running, paid: Paid) -> None:
    skew = pos_sim("fault", "skew", *running.at, "-90")
    assert skew.returncode == 0 and "clock offset -90 s" in skew.stdout


def test_a_bad_fault_is_refused_with_what_is_wrong(running: Running) -> None:
    bad = pos_sim("fault", "power-cut", "--at", "dancing", *running.at)
    assert bad.returncode == 1 and "pos-sim: bad_fault: at 'dancing' is not a state" in bad.stderr


def test_sigterm_stops_cleanly_removes_the_state_and_frees_the_storage(module_world: SimWorld) -> None:
    storage, _ = configure(module_world)
    assert SimProcess(storage).terminate() == 0
    assert not (storage / "sim.json").exists() and not (storage / "tty").exists()
    again = SimProcess(storage)  # the lock died with the process
    assert again.terminate() == 0


def test_commands_without_a_running_simulator_say_how_to_start_one(tmp_path: Path) -> None:
    done = pos_sim("screen", "--storage", str(tmp_path))
    assert done.returncode == 3 and "no simulator runs on" in done.stderr and "make run HEADLESS=1" in done.stderr
    done = pos_sim("status", "--url", "http://127.0.0.1:9")
    assert done.returncode == 3 and "no simulator answers at http://127.0.0.1:9" in done.stderr
    done = pos_sim("run", "--storage", str(tmp_path / "nowhere"))
    assert done.returncode == 1 and "does not exist" in done.stderr
    done = pos_sim("run", "--storage", str(tmp_path))
    assert done.returncode == 1 and "is not a provisioned device" in done.stderr


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = [[], ["run"], ["status"], ["screen"], ["history"], ["scan"], ["cancel"], ["confirm-refund"],
                ["decline-refund"], ["dismiss"], ["fault"], *[["fault", f] for f in ("unplug", "replug", "drop", "corrupt",
                                                                                      "duplicate", "delay", "clear",
                                                                                      "power-cut", "power-on", "skew")]]
    for argv in commands:
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0
        assert "usage: pos-sim" in capsys.readouterr().out
    text = build_parser().format_help()
    assert "make run HEADLESS=1" in text and "docs/simulator.md" in text
