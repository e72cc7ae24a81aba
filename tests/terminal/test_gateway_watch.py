"""terminal/gateway_watch.py alone: what the POS knows about its gateway, from a real TCP probe on
127.0.0.1 and from the replies of a real GatewayConnection to a real HTTP server on loopback."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from terminal.gateway_client import GatewayConnection
from terminal.gateway_watch import GatewayState, GatewayWatch


class Changes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_the_probe_tells_a_listening_gateway_from_none(listener: str) -> None:
    changes = Changes()
    watch = GatewayWatch(listener, changes)
    assert watch.state is GatewayState.UNKNOWN
    assert watch.probe_once() is GatewayState.REACHABLE and changes.count == 1
    assert watch.probe_once() is GatewayState.REACHABLE and changes.count == 1  # no change, no call
    gone = GatewayWatch(f"http://127.0.0.1:{_free_port()}", changes)
    assert gone.probe_once() is GatewayState.UNREACHABLE


def test_only_a_reply_tells_that_the_device_is_disabled_or_enabled_again(listener: str) -> None:
    watch = GatewayWatch(listener, Changes())
    watch.reply(403, "device_disabled")
    assert watch.state is GatewayState.DISABLED
    assert watch.probe_once() is GatewayState.DISABLED  # a TCP connect cannot say it is enabled again
    watch.reply(403, "wrong_terminal")  # another refusal: the device itself is accepted
    assert watch.state is GatewayState.REACHABLE
    watch.reply(0, "network")
    assert watch.state is GatewayState.UNREACHABLE
    watch.reply(200, None)
    assert watch.state is GatewayState.REACHABLE


def test_no_gateway_configured_is_never_probed() -> None:
    watch = GatewayWatch(None, Changes())
    watch.start()  # no thread: nothing to reach
    assert watch.probe_once() is GatewayState.UNKNOWN


class _Disabled(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": {"code": "device_disabled", "message": "disabled by the operator"}}).encode()
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_connection_reports_every_reply_to_the_watch() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Disabled)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        watch = GatewayWatch(url, Changes())
        connection = GatewayConnection(url, device_id="D-1", seed=bytes(32))
        stop = connection.add_reply_observer(watch.reply)
        status, _ = connection.post("/v1/query", {"out_trade_no": "X"})
        assert status == 403 and watch.state is GatewayState.DISABLED
        stop()
    finally:
        server.shutdown()
        server.server_close()
    dead = GatewayConnection(f"http://127.0.0.1:{_free_port()}", device_id="D-1", seed=bytes(32))
    watch = GatewayWatch(url, Changes())
    dead.add_reply_observer(watch.reply)
    assert dead.post("/v1/query", {"out_trade_no": "X"})[0] == 0 and watch.state is GatewayState.UNREACHABLE
