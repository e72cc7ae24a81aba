"""A recording HTTP proxy between the vendor's HIS and the bridge.

Everything HIS sends is forwarded unchanged to the bridge and recorded (method, path, bodies,
status, time), so a scenario can check what HIS did: which envelopes it sent, whether it re-asked
with GET, whether it sent a new instruction for an order that was still being settled. A scenario
may arm a one-shot `tamper` for a msg_id: the next 200 carrying that instruction's result reaches
HIS altered (HIS must refuse it in step 6 and ask again); later answers pass unchanged.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import requests

MAX_BODY = 64 * 1024  # the bridge's own limit: anything larger is refused there anyway
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass(frozen=True)
class Exchange:
    at: float
    method: str
    path: str  # without the query
    query: str
    request_body: bytes
    status: int  # 0: the request has arrived (recorded at once: a long poll answers much later)
    response_body: bytes  # what HIS received (after any tampering)
    tampered: bool = False


@dataclass
class Recorder:
    exchanges: list[Exchange] = field(default_factory=list)
    tampers: dict[str, Callable[[bytes], bytes]] = field(default_factory=dict)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def add(self, exchange: Exchange) -> None:
        with self.lock:
            self.exchanges.append(exchange)
            self.lock.notify_all()

    def wait_for(self, predicate: Callable[[Exchange], bool], timeout_s: float, since: int = 0) -> Exchange | None:
        """The first exchange from index `since` on that satisfies `predicate`, waiting up to timeout_s."""
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while True:
                for exchange in self.exchanges[since:]:
                    if predicate(exchange):
                        return exchange
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.lock.wait(left)

    def after(self, exchange: Exchange) -> int:
        """The index just past `exchange`: what came after it, however soon."""
        with self.lock:
            return next(i for i, x in enumerate(self.exchanges) if x is exchange) + 1

    def mark(self) -> int:
        with self.lock:
            return len(self.exchanges)

    def since(self, index: int) -> list[Exchange]:
        with self.lock:
            return list(self.exchanges[index:])


class _Handler(BaseHTTPRequestHandler):
    server: "ConformanceProxy"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._forward("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._forward("POST")

    def _forward(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_BODY)) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        self.server.recorder.add(Exchange(time.time(), method, path, query, body, 0, b""))
        try:
            upstream = self.server.session.request(method, self.server.bridge_url + self.path, data=body or None,
                                                   headers=headers, timeout=self.server.timeout_s)
            status, content, ctype = upstream.status_code, upstream.content, upstream.headers.get("Content-Type", "")
        except requests.RequestException as exc:
            status, content, ctype = 502, f'{{"error": {{"code": "bridge_unreachable", "message": "{type(exc).__name__}"}}}}'.encode(), "application/json"
        tampered = False
        if status == 200:
            tamper = self.server.take_tamper(method, path, body, content)
            if tamper is not None:
                content, tampered = tamper(content), True
        self.server.recorder.add(Exchange(time.time(), method, path, query, body, status, content, tampered))
        self.send_response(status)
        self.send_header("Content-Type", ctype or "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet: the report is the output
        pass


class ConformanceProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, bridge_url: str, *, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 130.0,
                 msg_id_of: Callable[[str, str, bytes], str | None]) -> None:
        super().__init__((host, port), _Handler)
        self.bridge_url = bridge_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.recorder = Recorder()
        self.msg_id_of = msg_id_of  # which instruction an exchange is about (POST envelope or GET path)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def arm_tamper(self, msg_id: str, tamper: Callable[[bytes], bytes]) -> None:
        with self.recorder.lock:
            self.recorder.tampers[msg_id] = tamper

    def take_tamper(self, method: str, path: str, body: bytes, content: bytes) -> Callable[[bytes], bytes] | None:
        msg_id = self.msg_id_of(method, path, body)
        with self.recorder.lock:
            return self.recorder.tampers.pop(msg_id, None) if msg_id else None

    def start(self) -> "ConformanceProxy":
        self._thread = threading.Thread(target=self.serve_forever, name="conformance-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
