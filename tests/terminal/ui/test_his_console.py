"""The HIS console (bridge/his_console.py): reads the demo file, refuses bad input before sending,
and says clearly when the bridge is not there. (Its full path, console -> bridge -> simulated POS
-> sandbox, runs in `make run`; the reference client it drives is tested in tests/bridge.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import his_console


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: nothing listens there


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    key = "rTJHF2xHZ+ob02uSGe6MnzGM1PiBlKlIgOFTG65ie/s="  # the 1.1 registry carries each POS's public key
    (tmp_path / "devices.csv").write_text(f"device_id,model,serial_no,public_key\nD-SN-000123,HIS-POS-1,SN000123,{key}\n",
                                          encoding="utf-8")
    path = tmp_path / "demo.json"
    path.write_text(json.dumps({"bridge_url": f"http://127.0.0.1:{closed_port()}", "suite": "AES-256-GCM", "kid": "k2026a",
                                "key_hex": "00" * 32, "terminal_id": "T0001", "device_id": "D-SN-000123",
                                "device_registry": "devices.csv", "sim_url": "", "sandbox_url": "", "supervisor_pin": "246810"}))
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.his_console", *args], capture_output=True, text=True, timeout=60)


def test_without_a_demo_file_it_says_to_start_the_system(tmp_path: Path) -> None:
    done = run("--demo", str(tmp_path / "none.json"))
    assert done.returncode == 2 and "make run" in done.stderr


def test_a_bad_amount_is_refused_before_anything_is_sent(demo: Path) -> None:
    done = run("--demo", str(demo), "--order", "MZ1", "--amount", "12.50")
    assert done.returncode == 2 and "bad_amount" in done.stderr and "sent" not in done.stdout


def test_an_absent_bridge_is_reported(demo: Path) -> None:
    done = run("--demo", str(demo), "--order", "MZ1", "--amount", "+12.50")
    assert done.returncode == 1 and "bridge_unreachable" in done.stderr


def test_interactive_prompts_and_quits(demo: Path) -> None:
    config = his_console.hisclient.load_config(
        __import__("argparse").Namespace(demo=str(demo), bridge=None, terminal=None, key_file=None, devices=None, kid=None))
    answers = iter(["MZ2", "+1.5", "q"])
    said: list[str] = []
    his_console.interactive(config, lambda prompt: next(answers), said.append)
    assert any("not sent: bad_amount" in line for line in said)
