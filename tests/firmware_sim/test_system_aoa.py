"""`make run LINK=aoa`: the whole system with the simulated POS as an Android device. The bridge runs
in its own process on the simulated USB bus (firmware_sim.usb_cable), switches the POS to accessory
mode, the configuration is flashed over the accessory, and a payment goes through."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.firmware_sim.test_system import BIN, Launcher, alive
from tests.waiting import wait_until


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the launcher's children")
def test_the_system_on_the_android_accessory_path(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    system = Launcher(workdir, "--link", "aoa")
    try:
        demo = json.loads((workdir / "demo.json").read_text())
        assert demo["device_link"].startswith("aoa://1209:7D02/")
        (device,) = requests.get(demo["bridge_url"] + "/v1/health", timeout=10).json()["devices"]
        assert device["port"] == demo["device_link"] and device["link"] == "up"
        status = requests.get(demo["sim_url"] + "/v1/status", timeout=10).json()
        assert status["power"] == "on"  # configured over the accessory, running

        order = f"MZA{os.getpid()}"
        pay = subprocess.Popen([str(BIN / "his-client"), "--demo", str(workdir / "demo.json"), "pay", "+3.20", "--order",
                                order, "--wait", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            code = requests.post(demo["sandbox_url"] + "/sandbox/v1/codes", json={"channel": "ALIPAY"}, timeout=10).json()["code"]
            wait_until(lambda: requests.get(demo["sim_url"] + "/v1/screen", timeout=10).json()["screen"] == "awaiting_scan",
                       30, "the POS to ask for the payment code")
            scan = subprocess.run([str(BIN / "pos-sim"), "scan", code, "--storage", str(workdir / "device")],
                                  capture_output=True, text=True, timeout=30)
            assert scan.returncode == 0, scan.stderr
            out, err = pay.communicate(timeout=60)
        finally:
            if pay.poll() is None:
                pay.kill()
        assert pay.returncode == 0, err
        assert "SUCCESS ALIPAY +3.20" in out
        assert system.stop(signal.SIGINT) == 0
        assert not any(alive(pid) for pid in system.children)
    finally:
        system.kill()
