"""The sandbox keeps connections alive (HTTP/1.1), as the channels' servers do: the gateway's pool
then pays without a TCP handshake per call. Every reply says its length, so the next request on
the connection is read correctly; a request whose body is not read closes its connection. Checked
with http.client on one real connection to the sandbox process."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from firmware_sim.sandbox.launcher import SandboxProcess


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with SandboxProcess(str(tmp_path_factory.mktemp("keepalive") / "sb")) as process:
        yield process


def _connection(sandbox: SandboxProcess) -> http.client.HTTPConnection:
    parts = urlsplit(sandbox.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    conn.connect()
    return conn


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes, bool]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read(), response.will_close


def test_requests_and_refusals_share_one_kept_alive_connection(sandbox) -> None:
    conn = _connection(sandbox)
    first = conn.sock.getsockname()
    status, body, closing = _post(conn, "/sandbox/v1/codes", json.dumps({"channel": "WECHAT", "balance": "10.00"}).encode())
    assert (status, closing) == (201, False) and json.loads(body)["code"]
    # A refusal (an unknown endpoint, a WeChat call that does not parse) keeps the connection too.
    status, _, closing = _post(conn, "/no/such/endpoint", b"{}")
    assert (status, closing) == (404, False)
    status, body, closing = _post(conn, "/pay/micropay", b"<xml><not-signed/></xml>")
    assert (status, closing) == (200, False) and b"<xml>" in body
    status, body, _ = _post(conn, "/sandbox/v1/codes", json.dumps({"channel": "ALIPAY", "balance": "1.00"}).encode())
    assert status == 201 and json.loads(body)["code"]
    assert conn.sock is not None and conn.sock.getsockname() == first, "all four on the first connection"
    conn.close()


def test_a_request_whose_body_is_not_read_closes_its_connection(sandbox) -> None:
    conn = _connection(sandbox)
    status, _, closing = _post(conn, "/pay/micropay", b"x" * (64 * 1024 + 1))
    assert (status, closing) == (413, True)
    conn.close()
