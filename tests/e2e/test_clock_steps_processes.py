"""Issue 14, finding 1, reproduced as the issue wrote it, against the real processes of `make run`:

    pos-sim fault skew 400; his-client pay +7.00 --order REPRO1; pos-sim scan <code>;
    pos-sim fault skew 0; pos-sim fault unplug --for 1; his-client status <msg_id>

The POS clock steps 400 s ahead while the link is up (the offset it measured at link-up is stale
from then on). The payment goes through; HIS must get its verified SUCCESS, and the patient must
have paid exactly once. Before the fix the bridge dropped the result as clock_skew but acknowledged
the frame, the POS marked it delivered, and HIS saw `202 paying` for ever.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.firmware_sim.test_system import BIN, Launcher, tool

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the launcher's children are found in /proc")


def test_pos_clock_step_of_400_s_while_the_link_is_up_loses_no_result(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    system = Launcher(workdir)
    try:
        demo, storage, his = system.demo, system.storage, system.his
        assert tool("pos-sim", "fault", "skew", "400", *storage).returncode == 0
        msg_id = f"T0001-REPRO1-{int(time.time())}"
        pay = subprocess.Popen([str(BIN / his[0]), *his[1:], "pay", "+7.00", "--order", "REPRO1", "--msg-id", msg_id,
                                "--wait", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            code = requests.post(demo["sandbox_url"] + "/sandbox/v1/codes", json={"channel": "WECHAT"}, timeout=10).json()["code"]
            deadline = time.monotonic() + 30
            while (scan := tool("pos-sim", "scan", code, *storage)).returncode != 0 and time.monotonic() < deadline:
                time.sleep(0.2)  # the instruction is on its way to the POS
            assert scan.returncode == 0, scan.stderr
            pay.communicate(timeout=60)
        finally:
            if pay.poll() is None:
                pay.kill()
        assert tool("pos-sim", "fault", "skew", "0", *storage).returncode == 0
        assert tool("pos-sim", "fault", "unplug", "--for", "1", *storage).returncode == 0
        deadline = time.monotonic() + 30
        while True:
            status = tool(*his, "status", msg_id, "--wait", "5")
            answer = json.loads(status.stdout or "{}")
            if answer.get("result") or time.monotonic() > deadline:
                break
        assert answer.get("result", {}).get("pay_status") == "SUCCESS", (answer, status.stderr)
        assert answer["result"]["amount"] == "+7.00"
        balance = requests.get(f"{demo['sandbox_url']}/sandbox/v1/accounts/{code}", timeout=10).json()["balance"]
        assert balance == "93.00"  # paid once
    finally:
        system.kill()
