"""The POS's requests travel on kept-alive connections (terminal.gateway_transport), and a connection
the gateway closed while it was idle is replaced, not used: against a real HTTP/1.1 server on
127.0.0.1 that records which client connection each request came on."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from terminal.gateway_transport import GatewayTransport, TransportError
from tests.sockets import CountedWrites


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.client_address[1], self.path, body))
        reply = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
        # An idle timeout on the server's side: the connection ends without a word to the client.
        self.close_connection = self.server.drop_after_reply

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[int, str, bytes]] = []
        self.drop_after_reply = False
        self.closed = threading.Semaphore(0)  # released each time the server has closed a connection

    def shutdown_request(self, request) -> None:
        super().shutdown_request(request)
        self.closed.release()


@pytest.fixture
def server():
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(httpd: _Server) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def test_consecutive_requests_share_one_connection(server) -> None:
    transport = GatewayTransport(_url(server), pinned_cert=None)
    for n in range(3):
        status, body, date = transport.post("/v1/query", json.dumps({"n": n}).encode(), {"X-Test": "1"}, timeout=(5, 5))
        assert (status, json.loads(body)) == (200, {"ok": True}) and date
    ports = {port for port, _, _ in server.seen}
    assert len(server.seen) == 3 and len(ports) == 1, "one TCP connection for the three requests"
    assert [b for _, _, b in server.seen] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    transport.close()


def test_a_connection_the_gateway_dropped_while_idle_is_replaced(server) -> None:
    server.drop_after_reply = True
    transport = GatewayTransport(_url(server), pinned_cert=None)
    for _ in range(3):
        status, _, _ = transport.post("/v1/pay", b"{}", {}, timeout=(5, 5))
        assert status == 200
        assert server.closed.acquire(timeout=10)  # the gateway has closed it: the next request finds it dropped
    assert len({port for port, _, _ in server.seen}) == 3, "each request on a fresh connection, none lost"


def test_no_gateway_is_a_transport_error_not_an_exception_of_the_socket(server) -> None:
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    transport = GatewayTransport(f"http://127.0.0.1:{port}", pinned_cert=None)
    with pytest.raises(TransportError) as caught:
        transport.post("/v1/pay", b"{}", {}, timeout=(2, 2))
    assert not caught.value.tls


def test_a_request_goes_out_in_one_write_head_and_body_together(server) -> None:
    """Two writes are two TCP segments (TCP_NODELAY) and the gateway woken twice per request."""
    from terminal.gateway_transport import _Connection

    conn = _Connection("127.0.0.1", server.server_address[1], timeout=5)
    conn.connect()
    conn.sock = CountedWrites(conn.sock)
    body = json.dumps({"amount_fen": 1250}).encode()
    conn.request("POST", "/v1/pay", body=body, headers={"Content-Length": str(len(body))})
    response = conn.getresponse()
    assert (response.status, json.loads(response.read())) == (200, {"ok": True})
    (write,) = conn.sock.writes
    assert write.startswith(b"POST /v1/pay HTTP/1.1\r\n") and write.endswith(b"\r\n\r\n" + body)
    assert server.seen[-1][1:] == ("/v1/pay", body)
    conn.close()
