"""A real process death (os._exit at a chosen commit) and a fresh process on the same files:
SQLite's durability and the service's recovery together, as on a device whose power fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from protocol.crypto import KeyRing
from protocol.envelope import receive_result
from protocol.messages import PayChannel, PayStatus
from terminal.config import Polling, dump_config
from tests.terminal.conftest import new_order_no
from tests.terminal.helpers import KEY, His, make_config

POLLING = {PayChannel.WECHAT: Polling(0.05, 0.8), PayChannel.ALIPAY: Polling(0.05, 0.8)}


def run_child(tmp_path, envelope, code, cut=None):
    path = tmp_path / f"{envelope.msg_id}.json"
    path.write_bytes(envelope.to_bytes())
    args = [sys.executable, "-m", "tests.terminal.crash_child", str(tmp_path / "pos.json"), str(tmp_path / "journal.db"),
            str(path), code, *(cut or ())]
    proc = subprocess.run(args, capture_output=True, timeout=150, cwd=os.getcwd())
    return proc.returncode, proc.stdout.decode()


@pytest.mark.parametrize(("kind", "label", "phase"), [
    ("collect", "collect:awaiting_scan->paying", "after"),  # about to pay: the call never left
    ("collect", "collect:paying->finished", "before"),  # paid at the channel, result not yet journaled
    ("refund", "refund:awaiting_supervisor->refunding", "after"),  # reserved, refund never requested
    ("refund", "refund:refunding->finished", "before"),  # refunded at the channel, not journaled
])
def test_killed_process_then_restarted(tmp_path, sandbox, channel_settings, kind, label, phase):
    config = tmp_path / "pos.json"
    config.write_text(dump_config(make_config(polling=POLLING)))
    os.chmod(config, 0o600)
    # The POS's crash semantics with direct channel clients (the gateway has its own tests).
    (tmp_path / "channels.json").write_text(json.dumps(channel_settings))
    his, order = His(), new_order_no()
    code = str(sandbox.issue_code("ALIPAY", "100.00", "success")["code"])
    if kind == "refund":
        assert run_child(tmp_path, his.envelope(order, "+10.00"), code)[0] == 0
    envelope = his.envelope(order, "+10.00" if kind == "collect" else "-4.00")
    status, out = run_child(tmp_path, envelope, code, (label, phase))
    assert status == 137 and out == ""  # it died where we asked, before any result left
    status, out = run_child(tmp_path, envelope, code)  # power back: the bridge sends the instruction again
    assert status == 0
    result = receive_result(json.loads(out.splitlines()[0])["result"], KeyRing([KEY]), now=time.time()).message
    balance = sandbox.account(code)["balance_fen"]
    if kind == "collect":
        expected = (PayStatus.CLOSED, 100_00) if label.endswith("->paying") else (PayStatus.SUCCESS, 100_00 - 1000)
    else:
        expected = (PayStatus.REFUNDED, 100_00 - 1000 + 400)
    assert (result.pay_status, balance) == expected
