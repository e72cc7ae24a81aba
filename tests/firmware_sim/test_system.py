"""The headless whole system as a newcomer runs it: start, read demo.json, pay with his-client --demo,
scan with pos-sim, Ctrl-C; then again (same keys, same device, no re-flash) and SIGTERM. No child
process may outlive the launcher."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from firmware_sim.system import System, SystemOptions, _start_on_saved_port
from protocol.image import PartKind, parse_image
from tests.waiting import wait_until

BIN = Path(sys.executable).parent


def tool(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one of the installed commands (pos-sim, his-client...) to its end, its output captured."""
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=timeout)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes only once reaped; check its state
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Launcher:
    """`python -m firmware_sim.system --headless` in `workdir`, started and ready (else AssertionError);
    what a newcomer's commands need to reach it: `demo_path`/`demo`, `storage` (pos-sim's
    --storage), `his` (his-client with the demo file, JSON out)."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir = workdir
        self.demo_path = workdir / "demo.json"
        self.storage = ("--storage", str(workdir / "device"))
        self.his = ("his-client", "--demo", str(self.demo_path), "--json")
        self.proc = subprocess.Popen([sys.executable, "-m", "firmware_sim.system", "--headless", "--workdir", str(workdir),
                                      "--bridge-port", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)  # its own group: Ctrl-C goes to it alone, as in a terminal
        self.out: list[str] = []
        self.err_lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            for line in iter(self.proc.stdout.readline, ""):  # type: ignore[union-attr]  # started with stdout=PIPE
                self.out.append(line)
                if line.startswith("Ctrl-C stops everything"):
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        def read_err() -> None:
            for line in iter(self.proc.stderr.readline, ""):  # type: ignore[union-attr]  # started with stderr=PIPE
                self.err_lines.append(line)

        threading.Thread(target=read_err, daemon=True).start()
        if not ready.wait(90) or self.proc.poll() is not None:
            self.kill()
            raise AssertionError(f"the system did not start: {''.join(self.out)}\n{self.err}")
        self.children = children_of(self.proc.pid)

    @property
    def demo(self) -> dict:
        return json.loads(self.demo_path.read_text())

    @property
    def err(self) -> str:
        return "".join(self.err_lines)

    def stop(self, signum: int) -> int:
        os.killpg(self.proc.pid, signum)
        try:
            return self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the system did not stop within 90 s of {signal.Signals(signum).name}:\n{self.err}\n"
                                 f"{self.log_tails()}") from None
        finally:
            self.kill()

    def log_tails(self, lines: int = 60) -> str:
        """The end of each child's log (a child that lingered on stop has its threads' stacks there)."""
        tails = []
        for path in sorted((self.workdir / "logs").glob("*.log")):
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            tails.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(tails)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for pid in children_of(self.proc.pid) + getattr(self, "children", []):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def channel_secrets(workdir: Path) -> dict[str, bytes]:
    """The sandbox merchants' secrets: WeChat's API key, the Alipay application private key (its PEM body)."""
    creds = json.loads((workdir / "channel-sandbox" / "sandbox.json").read_text())["channels"]
    pem = Path(creds["alipay"]["private_key_pem"]).read_text()
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return {"wechat api_key": creds["wechat"]["api_key"].encode(), "alipay private key": body[40:104].encode(),
            "alipay private key (one PEM line)": pem.splitlines()[2].encode()}


def assert_no_channel_secret_on_the_pos_side(workdir: Path) -> None:
    """Issue 13's "done when": no file on the POS side (its storage, configuration images, journals)
    holds a channel secret. Files are read raw, and image parts decoded, so compression hides nothing."""
    secrets = channel_secrets(workdir)
    files = [p for p in (workdir / "device").rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" or "journal" in p.name for p in files) and len(files) > 3
    found = []
    for path in files:
        data = path.read_bytes()
        texts = [data]
        try:
            image = parse_image(data)
            texts += [part for part in (image.part(kind) for kind in PartKind) if part is not None]
        except Exception:  # noqa: BLE001 - not an image: the raw bytes were searched
            pass
        for name, secret in secrets.items():
            if any(secret in t or secret.decode() in t.decode("utf-8", "replace") for t in texts):
                found.append(f"{path.relative_to(workdir)}: {name}")
    assert found == []
    # The POS's configuration names the gateway and nothing of the merchants'.
    assert not [p for p in files if b"api_key" in p.read_bytes() or b"private_key_pem" in p.read_bytes()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the launcher's children")
def test_headless_system_pays_and_stops_cleanly(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    first = Launcher(workdir)
    try:
        demo_path = workdir / "demo.json"
        demo = json.loads(demo_path.read_text())
        assert set(demo) >= {"bridge_url", "suite", "kid", "key_hex", "terminal_id", "device_id", "device_registry",
                             "sim_url", "sandbox_url", "gateway_url", "supervisor_pin", "admin_pin"}
        assert demo["admin_pin"] != demo["supervisor_pin"]
        assert demo["channel_setups"] == {"wechat": "v2", "alipay": "public-key"}  # make run's defaults
        assert stat.S_IMODE(demo_path.stat().st_mode) == 0o600
        assert json.loads("".join(first.out[: first.out.index("\n")])) == demo  # printed too
        assert any("his-client --demo" in line for line in first.out) and any("pos-sim scan" in line for line in first.out)
        assert len(first.children) == 4 and all(alive(pid) for pid in first.children)  # sandbox, gateway, device, bridge
        assert requests.get(demo["gateway_url"] + "/v1/health", timeout=10).json() == {"ok": True}
        health = requests.get(demo["bridge_url"] + "/v1/health", timeout=10).json()
        assert health["status"] == "ok" and health["devices"][0]["device_id"] == demo["device_id"]

        order = f"MZ{os.getpid()}"
        pay = subprocess.Popen([str(BIN / "his-client"), "--demo", str(demo_path), "pay", "+12.50", "--order", order,
                                "--wait", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            code = requests.post(demo["sandbox_url"] + "/sandbox/v1/codes", json={"channel": "WECHAT"}, timeout=10).json()["code"]
            storage = ["--storage", str(workdir / "device")]
            wait_until(lambda: requests.get(demo["sim_url"] + "/v1/screen", timeout=10).json()["screen"] == "awaiting_scan",
                       30, "the POS to ask for the payment code")
            scan = subprocess.run([str(BIN / "pos-sim"), "scan", code, *storage], capture_output=True, text=True, timeout=30)
            assert scan.returncode == 0, scan.stderr
            out, err = pay.communicate(timeout=60)
        finally:
            if pay.poll() is None:
                pay.kill()
        assert pay.returncode == 0, err
        assert "SUCCESS WECHAT +12.50" in out and f"device_id     {demo['device_id']} (in our device registry; signed with its key)" in out
        balance = requests.get(f"{demo['sandbox_url']}/sandbox/v1/accounts/{code}", timeout=10).json()["balance"]
        assert balance == "87.50"
        # The payment went through the gateway: its ledger holds it, for the order HIS sent.
        with sqlite3.connect(workdir / "gateway" / "gateway.db") as gw:
            assert gw.execute("SELECT state, amount_fen, device_id FROM payments WHERE order_no = ?", (order,)).fetchall() == [
                ("succeeded", 1250, demo["device_id"])]
        assert_no_channel_secret_on_the_pos_side(workdir)
        # The per-transaction limit has one source: the gateway's hospital, exported as the file the
        # bridge reads (and the POS's configuration was built from; docs/amounts.md).
        limits_file = workdir / "gateway" / "limits.json"
        assert json.loads(limits_file.read_text())["per_transaction"] == "50000.00"
        assert f"limits_file = {json.dumps(str(limits_file))}" in (workdir / "bridge" / "config.toml").read_text()

        assert first.stop(signal.SIGINT) == 0  # Ctrl-C
        assert "stopped: bridge (exit 0), device (exit 0), gateway (exit 0), sandbox (exit 0)" in "".join(first.out)
        assert not any(alive(pid) for pid in first.children)
        assert not (workdir / "device" / "sim.json").exists()
    finally:
        first.kill()

    second = Launcher(workdir)  # a re-run keeps the keys, the device and its configuration
    try:
        again = json.loads((workdir / "demo.json").read_text())
        assert (again["key_hex"], again["device_id"], again["kid"]) == (demo["key_hex"], demo["device_id"], demo["kid"])
        assert "flashing configuration" not in second.err and "system INFO" in "".join(first.err_lines + second.err_lines)
        history = subprocess.run([str(BIN / "pos-sim"), "history", "--storage", str(workdir / "device")],
                                 capture_output=True, text=True, timeout=30)
        assert "+12.50  SUCCESS" in history.stdout and "delivered" in history.stdout
        assert second.stop(signal.SIGTERM) == 0
        assert not any(alive(pid) for pid in second.children)
    finally:
        second.kill()


# A child that listens on the port it is given (0: any) and reports it, as the sandbox and the gateway do.
LISTENER = ("import json, socket, sys, threading; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
            "s.listen(); print(json.dumps({'event': 'ready', 'url': 'http://127.0.0.1:%d' % s.getsockname()[1]}), "
            "flush=True); threading.Event().wait()")


def _listener(port: int) -> list[str]:
    return [sys.executable, "-c", LISTENER, str(port)]


def test_a_restarted_part_gets_the_port_it_had_before(tmp_path: Path) -> None:
    system = System(SystemOptions(workdir=tmp_path))
    state: dict[str, object] = {}
    (tmp_path / "logs").mkdir()
    try:
        first = _start_on_saved_port(system, state, "part", _listener)
        system.children.pop().stop()
        again = _start_on_saved_port(system, state, "part", _listener)
        assert again["url"] == first["url"] and state["part_port"] == int(str(first["url"]).rsplit(":", 1)[1])
    finally:
        for child in system.children:
            child.stop()


def test_a_part_whose_port_is_taken_starts_on_a_new_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    system = System(SystemOptions(workdir=tmp_path))
    (tmp_path / "logs").mkdir()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        state: dict[str, object] = {"part_port": taken}
        try:
            ready = _start_on_saved_port(system, state, "part", _listener)
        finally:
            for child in system.children:
                child.stop()
    assert state["part_port"] != taken and ready["url"] == f"http://127.0.0.1:{state['part_port']}"
    assert f"the part could not take its earlier port {taken} again" in caplog.text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the launcher's children")
def test_two_windows_for_his_vendors(tmp_path: Path) -> None:
    """`--devices 2`: two simulated POS, one window each, behind one bridge; demo.json lists both, HIS
    pays at the second window by its terminal_id, and the payment is that device's, for that terminal."""
    workdir = tmp_path / "run"
    system = Launcher(workdir, "--devices", "2")
    try:
        demo_path = workdir / "demo.json"
        demo = json.loads(demo_path.read_text())
        windows = demo["devices"]
        assert [w["terminal_id"] for w in windows] == ["T0001", "T0002"]
        assert len({w["device_id"] for w in windows}) == 2 and windows[0]["device_id"] == demo["device_id"]
        assert len(system.children) == 5  # sandbox, gateway, two devices, one bridge
        health = requests.get(demo["bridge_url"] + "/v1/health", timeout=10).json()
        assert sorted(d["device_id"] for d in health["devices"]) == sorted(w["device_id"] for w in windows)
        second = windows[1]
        order = f"MZW{os.getpid()}"
        pay = subprocess.Popen([str(BIN / "his-client"), "--demo", str(demo_path), "--terminal", "T0002", "pay", "+8.00",
                                "--order", order, "--wait", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            code = requests.post(demo["sandbox_url"] + "/sandbox/v1/codes", json={"channel": "ALIPAY"}, timeout=10).json()["code"]
            deadline = time.monotonic() + 30
            while True:  # the instruction is on its way to the second POS; its control API answers at once
                scan = requests.post(second["sim_url"] + "/v1/scan", json={"code": code}, timeout=30)
                if scan.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert scan.status_code == 200, scan.text
            out, err = pay.communicate(timeout=60)
        finally:
            if pay.poll() is None:
                pay.kill()
        assert pay.returncode == 0, err
        assert "SUCCESS ALIPAY +8.00" in out and f"device_id     {second['device_id']}" in out
        with sqlite3.connect(workdir / "gateway" / "gateway.db") as gw:
            assert gw.execute("SELECT state, terminal_id, device_id FROM payments WHERE order_no = ?", (order,)).fetchall() == [
                ("succeeded", "T0002", second["device_id"])]
        assert system.stop(signal.SIGTERM) == 0
        assert "stopped: bridge (exit 0), device-2 (exit 0), device (exit 0), gateway (exit 0), sandbox (exit 0)" in "".join(system.out)
    finally:
        system.kill()
