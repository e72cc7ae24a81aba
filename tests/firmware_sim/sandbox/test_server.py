"""The channel-sandbox process: command line, credentials file, control API, shutdown, restart."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import requests
from PIL import Image

from firmware_sim.sandbox.launcher import SandboxProcess
from protocol.messages import PayChannel
from gateway.channels import build_clients, settings_from_sandbox
from terminal.channels.base import PayState


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firmware_sim.sandbox.server", *args], capture_output=True, text=True, timeout=60)


def test_help_explains_the_options():
    result = _run("--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--data-dir", "--wechat-key", "--alipay-key", "--config", "--allow-remote"):
        assert option in result.stdout


def test_refuses_a_non_loopback_address_unless_forced(tmp_path):
    result = _run("--host", "0.0.0.0", "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "--allow-remote" in result.stderr


def test_refuses_a_bad_wechat_key(tmp_path):
    result = _run("--wechat-key", "short", "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "32" in result.stderr


@pytest.fixture()
def sandbox(tmp_path):
    with SandboxProcess(str(tmp_path / "sb")) as process:
        yield process


def test_credentials_file_has_what_a_client_needs(sandbox):
    creds = sandbox.credentials
    assert creds["url"] == sandbox.url and creds["control_url"] == sandbox.url + "/sandbox/v1"
    wechat, alipay = creds["channels"]["wechat"], creds["channels"]["alipay"]
    assert set(wechat) == {"base_url", "appid", "mch_id", "api_key"} and len(wechat["api_key"]) == 32
    assert set(alipay) == {"gateway", "app_id", "private_key_pem", "alipay_public_key_pem"}
    assert os.path.isfile(alipay["private_key_pem"]) and alipay["gateway"].endswith("/gateway.do")
    assert oct(os.stat(sandbox.credentials_path).st_mode & 0o777) == "0o600"


def test_control_api_issues_codes_with_qr_and_reports_accounts(sandbox):
    issued = sandbox.issue_code("ALIPAY", "12.34", "userpaying:5")
    code = str(issued["code"])
    assert 16 <= len(code) <= 24 and code[:2] in ("25", "26", "27", "28", "29", "30")
    image = Image.open(io.BytesIO(requests.get(f"{sandbox.url}/sandbox/v1/codes/{code}/qr.png", timeout=10).content))
    assert image.format == "PNG" and os.path.isfile(str(issued["qr_path"]))
    account = sandbox.account(code)
    assert (account["balance"], account["balance_fen"], account["behaviour"], account["orders"]) == ("12.34", 1234, "userpaying:5", [])
    wechat = str(sandbox.issue_code("WECHAT")["code"])
    assert len(wechat) == 18 and wechat[:2] in ("10", "11", "12", "13", "14", "15")
    assert sandbox.control("GET", "/health")["status"] == "ok"


@pytest.mark.parametrize("body, fragment", [
    ({"channel": "VISA"}, "channel"),
    ({"channel": "WECHAT", "balance": "12.5"}, "two decimals"),
    ({"channel": "WECHAT", "balance": "-1.00"}, "amount"),
    ({"channel": "WECHAT", "behaviour": "slow"}, "slow:N"),
    ({"channel": "WECHAT", "behaviour": "explode"}, "not one of"),
    ({"channel": "WECHAT", "colour": "red"}, "unknown field"),
])
def test_control_api_refuses_bad_requests_with_a_clear_message(sandbox, body, fragment):
    response = requests.post(f"{sandbox.url}/sandbox/v1/codes", json=body, timeout=10)
    assert response.status_code in (400, 422)
    assert fragment in response.json()["error"]["message"]


def test_unknown_accounts_and_paths_are_404(sandbox):
    assert requests.get(f"{sandbox.url}/sandbox/v1/accounts/134567890123456789", timeout=10).status_code == 404
    assert requests.get(f"{sandbox.url}/nowhere", timeout=10).status_code == 404


def test_stops_promptly_on_sigterm_while_a_silent_code_holds_a_connection(sandbox):
    clients = build_clients(settings_from_sandbox(sandbox.credentials_path))
    code = str(sandbox.issue_code("WECHAT", behaviour="noreply")["code"])
    # Send the payment on a raw socket so the connection stays open while the sandbox stops.
    from gateway.channels.wechat_codec import sign, to_xml

    config = clients[PayChannel.WECHAT].config
    fields = {"appid": config.appid, "mch_id": config.mch_id, "nonce_str": "n", "sign_type": "HMAC-SHA256", "body": "x",
              "out_trade_no": "HOLD00001", "total_fee": "1", "spbill_create_ip": "127.0.0.1", "auth_code": code}
    fields["sign"] = sign(fields, config.api_key)
    body = to_xml(fields)
    host, port = sandbox.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as held:
        held.sendall(b"POST /pay/micropay HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.3)
        assert sandbox.process is not None
        sandbox.process.terminate()
        assert sandbox.process.wait(timeout=10) == 0
        assert held.recv(1024) == b""  # closed without an answer


def test_restart_keeps_the_ledger_and_the_keys(tmp_path):
    data_dir = str(tmp_path / "sb")
    with SandboxProcess(data_dir) as first:
        settings = settings_from_sandbox(first.credentials_path)
        code = str(first.issue_code("WECHAT", "50.00")["code"])
        client = build_clients(settings)[PayChannel.WECHAT]
        assert client.pay(out_trade_no="KEEP00001", auth_code=code, total_fen=500, subject="x").state is PayState.SUCCESS
    with SandboxProcess(data_dir) as second:
        moved = json.loads(json.dumps(settings))
        moved["wechat"]["base_url"] = second.url
        moved["alipay"]["gateway"] = second.url + "/gateway.do"
        client = build_clients(moved)[PayChannel.WECHAT]  # the old credentials still work
        assert client.query("KEEP00001").state is PayState.SUCCESS
        assert second.account(code)["balance_fen"] == 4500
