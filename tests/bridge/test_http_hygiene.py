"""HTTP hygiene (HIS interface 1.1 part D; issue 12 findings 5 and 6), over raw sockets as a vendor's
client or an attacker on the LAN would speak it: a kept-alive connection after an error, request
framing that two parsers could read differently, idle sockets that would starve HIS, and clients
outside the allowlist."""

from __future__ import annotations

import json
import socket

import pytest
import requests

from tests.bridge.conftest import World

IDLE_SOCKETS = 250


class Conn:
    """One kept-alive connection; reads answers one at a time exactly as their Content-Length says."""

    def __init__(self, address: tuple[str, int], timeout: float = 10.0, source: str | None = None) -> None:
        self.sock = socket.create_connection(address, timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def answer(self) -> tuple[int, dict[str, str], dict[str, object]]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed before an answer; got {self.buffer[:200]!r}")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            if not self._fill():
                raise ConnectionError("closed inside an answer's body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, json.loads(body)

    def closed_by_peer(self) -> bool:
        try:
            return self.buffer == b"" and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def _request(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bridge\r\n{extra}"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


ENVELOPE = json.dumps({"v": 1, "type": "instruction", "msg_id": "HIS-1", "ct": "A" * 200}).encode()


@pytest.fixture
def bridge(world: World):
    return world.bridge(["socket://127.0.0.1:9"])


@pytest.mark.parametrize(("first", "status"), [
    (_request("POST", "/v1/nowhere", ENVELOPE), 404),  # finding 6: the body of a 404 was left unread
    (_request("POST", "/v1/health", ENVELOPE), 405),
    (_request("POST", "/v1/results/HIS-1", ENVELOPE), 405),
    (_request("POST", "/v1/instructions?wait=x", ENVELOPE), 400),
    (_request("GET", "/v1/nowhere", ENVELOPE), 404),
    (_request("GET", "/v1/health", b"{}"), 200),  # a body on a GET is read out too
])
def test_a_kept_alive_connection_after_an_answer_reads_the_next_request_correctly(bridge, first, status) -> None:
    conn = Conn(bridge.http.server_address[:2])
    try:
        conn.send(first)
        got, headers, body = conn.answer()
        assert got == status, body
        if headers.get("connection", "").lower() == "close":
            assert conn.closed_by_peer()  # closing is the other correct answer
            return
        conn.send(_request("GET", "/v1/health"))
        got, _, body = conn.answer()
        assert got == 200 and body["status"] in ("ok", "degraded"), body
    finally:
        conn.close()


def test_a_404_and_then_the_next_request_in_the_same_packet(bridge) -> None:
    conn = Conn(bridge.http.server_address[:2])
    try:
        conn.send(_request("POST", "/v1/nowhere", ENVELOPE) + _request("GET", "/v1/health"))
        assert conn.answer()[0] == 404
        status, _, body = conn.answer()
        assert status == 200 and "devices" in body
    finally:
        conn.close()


@pytest.mark.parametrize("framing", [
    "Content-Length: 5\r\nContent-Length: 5\r\n",  # finding 6: two Content-Length headers were accepted
    "Content-Length: 5\r\nContent-Length: 7\r\n",
    "Content-Length: 5\r\ncontent-length: 5\r\n",
    "Content-Length: 5, 5\r\n",
    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Content-Length : 5\r\n",  # whitespace before the colon
    "X-Note: a\r\n folded\r\nContent-Length: 5\r\n",  # obsolete line folding
    "Bad Header Line\r\nContent-Length: 5\r\n",  # a line that is no header used to hide the rest
])
@pytest.mark.parametrize("method,path", [("POST", "/v1/instructions"), ("GET", "/v1/health")])
def test_ambiguous_framing_is_refused_with_400_and_the_connection_closed(bridge, framing, method, path) -> None:
    conn = Conn(bridge.http.server_address[:2])
    try:
        conn.send(f"{method} {path} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n{framing}\r\n".encode()
                  + b"{}{}{GET /v1/health HTTP/1.1\r\n\r\n")
        status, headers, body = conn.answer()
        assert status == 400 and body["error"]["code"] == "bad_request", body
        assert headers.get("connection", "").lower() == "close"
        assert conn.closed_by_peer()
    finally:
        conn.close()


def test_his_is_answered_while_250_idle_sockets_are_open(world: World) -> None:
    """Finding 5: 210 idle loopback sockets made HIS wait 27 s (each held a slot for the 30 s idle
    timeout). Now they are closed for room, or after 2 s of silence at the latest."""
    bridge = world.bridge(["socket://127.0.0.1:9"], http={"max_connections": 64})
    address = bridge.http.server_address[:2]
    idle = [socket.create_connection(address, timeout=30) for _ in range(IDLE_SOCKETS)]
    try:
        # A generous functional bound, not a timing figure (bench/bench_http.py has those): far
        # below the 30 s an idle socket used to hold its slot.
        response = requests.get(bridge.url + "/v1/health", timeout=10)
        assert response.status_code == 200
    finally:
        for sock in idle:
            sock.close()


def test_kept_alive_idle_connections_make_room_for_his(world: World) -> None:
    """Idle connections are evicted, longest-idle first: 250 kept-alive connections (each asked once,
    then fell silent, so only the 30 s idle timeout would close them) do not keep HIS out."""
    bridge = world.bridge(["socket://127.0.0.1:9"], http={"max_connections": 64, "idle_timeout_s": 30.0})
    address = bridge.http.server_address[:2]
    idle: list[Conn] = []
    try:
        for _ in range(IDLE_SOCKETS):
            conn = Conn(address, timeout=30)
            idle.append(conn)
            conn.send(_request("GET", "/v1/health"))
            assert conn.answer()[0] == 200
        response = requests.get(bridge.url + "/v1/health", timeout=10)  # well inside their 30 s idle timeout
        assert response.status_code == 200
        assert idle[0].closed_by_peer()  # the longest idle made room
    finally:
        for conn in idle:
            conn.close()


def test_a_connection_that_says_nothing_is_closed_after_the_first_byte_timeout(world: World) -> None:
    bridge = world.bridge(["socket://127.0.0.1:9"], http={"first_byte_timeout_s": 0.5, "idle_timeout_s": 60.0})
    conn = Conn(bridge.http.server_address[:2], timeout=30)
    try:
        assert conn.closed_by_peer()  # a socket.timeout here would mean it waited for idle_timeout_s
    finally:
        conn.close()


def test_the_first_byte_timeout_is_at_most_2_s(world: World) -> None:
    from bridge.config import BridgeConfigError, parse_config
    with pytest.raises(BridgeConfigError, match="first_byte_timeout_s"):
        parse_config({"http": {"first_byte_timeout_s": 2.5}})


def _local_non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_on_a_lan_address_the_allowlist_applies_when_the_connection_is_accepted(world: World) -> None:
    """Finding 5: an unlisted client used to hold a connection slot until it sent a request."""
    lan = _local_non_loopback_address()
    if lan is None:
        pytest.skip("this machine has no non-loopback IPv4 address to listen on")
    bridge = world.bridge(["socket://127.0.0.1:9"], http={"host": lan, "port": 0, "allow_clients": [f"{lan}/32"],
                                                         "max_connections": 4})
    address = bridge.http.server_address[:2]
    unlisted = [Conn(address, timeout=10, source="127.0.0.1") for _ in range(20)]
    try:
        assert all(conn.closed_by_peer() for conn in unlisted)  # closed at once, before saying anything
        listed = Conn(address, timeout=10, source=lan)
        listed.send(_request("GET", "/v1/health"))
        assert listed.answer()[0] == 200
        listed.close()
    finally:
        for conn in unlisted:
            conn.close()
