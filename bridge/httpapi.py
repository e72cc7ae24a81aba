"""The HIS-facing HTTP API (his-interface-v1 section 2) on the standard library's ThreadingHTTPServer.

    POST /v1/instructions?wait=N     GET /v1/results/{msg_id}?wait=N     GET /v1/health

Why threads and not asyncio: every request is short CPU work (AES-GCM, a SQLite commit) plus, at
most, one blocking wait on a threading.Event for a long poll; a thread per connection keeps that
code straight-line and the journal/link code synchronous. What a thread per connection would
otherwise risk is bounded here: each request must arrive whole within `request_timeout_s` (a client
dribbling one byte a second is cut off and answered 408), an idle kept-alive connection is closed
after `idle_timeout_s`, and at most `max_connections` are served at once (more wait in the listen
backlog, they are not refused). Body limit 64 KiB: refused from Content-Length before reading (413).

Every answer has a JSON body; errors are exactly ProtocolError.to_json_obj().
"""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from protocol.envelope import MAX_ENVELOPE_BYTES
from protocol.errors import ErrorCode, ProtocolError
from protocol.strictjson import dumps_compact

from bridge.config import HttpConfig
from bridge.logjson import log_event
from bridge.relay import MAX_WAIT_S, Answer, Relay, error_answer

log = logging.getLogger("bridge.http")

MAX_BODY = MAX_ENVELOPE_BYTES  # 64 KiB, the spec's limit
WRITE_TIMEOUT_S = 10.0
DISCARD_LIMIT = 1 << 20  # bytes of an over-limit body read and thrown away so the client sees its 413
ROUTES = {"/v1/instructions": "POST", "/v1/health": "GET"}
RESULTS_PREFIX = "/v1/results/"
_STATUS_CODES = {400: ErrorCode.BAD_REQUEST, 404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED,
                 408: ErrorCode.REQUEST_TIMEOUT, 413: ErrorCode.TOO_LARGE, 500: ErrorCode.INTERNAL_ERROR,
                 501: ErrorCode.METHOD_NOT_ALLOWED}


class _DeadlineReader(io.RawIOBase):
    """Socket reads bounded by one deadline per request, not per recv: slow drips cannot hold a thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = float("inf")
        self.request_timeout = 10.0
        self.started = False

    def begin(self, idle_timeout: float, request_timeout: float) -> None:
        self.deadline = time.monotonic() + idle_timeout
        self.request_timeout = request_timeout
        self.started = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self.sock.settimeout(left)
        n = self.sock.recv_into(buffer)
        if n and not self.started:
            self.started = True
            self.deadline = min(self.deadline, time.monotonic() + self.request_timeout)
        return n


class BridgeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's default of 5 resets bursts of simultaneous HIS clients

    def __init__(self, config: HttpConfig, relay: Relay, health: Callable[[], dict[str, object]]) -> None:
        self.config = config
        self.relay = relay
        self.health = health
        self.allowed = [ipaddress.ip_network(a, strict=False) for a in config.allow_clients]
        self.stopping = False
        self._slots = threading.BoundedSemaphore(config.max_connections)
        self._lock = threading.Condition()
        self._in_flight = 0
        self._connections: set[socket.socket] = set()
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        super().__init__((config.host, config.port), BridgeHandler)

    # A slot per connection; when all are taken the accept loop waits (clients queue in the backlog).
    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        while not self._slots.acquire(timeout=0.2):
            if self.stopping:
                self.shutdown_request(request)
                return
        with self._lock:
            self._connections.add(request)
        try:
            super().process_request(request, client_address)
        except Exception:
            self._release(request)
            raise

    def shutdown_request(self, request):  # type: ignore[no-untyped-def]
        super().shutdown_request(request)

    def _release(self, request: socket.socket) -> None:
        with self._lock:
            if request in self._connections:
                self._connections.discard(request)
                self._slots.release()

    def process_request_thread(self, request, client_address):  # type: ignore[no-untyped-def]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request)

    def request_started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def request_finished(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait for requests being answered to finish, then close every connection."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._in_flight > 0 and time.monotonic() < deadline:
                self._lock.wait(0.1)
            done = self._in_flight == 0
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return done

    def client_allowed(self, host: str) -> bool:
        if not self.allowed:
            return True
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allowed)


class BridgeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "his-bridge/1"
    sys_version = ""
    # Small answers written as they are made would meet the client's delayed ACK (40 ms a response).
    disable_nagle_algorithm = True
    server: BridgeHTTPServer

    def setup(self) -> None:
        super().setup()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader, 8192)
        self._responded = False

    # ------------------------------------------------------------ request cycle

    def handle_one_request(self) -> None:
        cfg = self.server.config
        self._reader.begin(cfg.idle_timeout_s, cfg.request_timeout_s)
        self._responded = False
        self._started = time.perf_counter()
        self.command, self.path, self.request_version = "", "", "HTTP/1.1"  # until parse_request sets them
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
                self._error(ProtocolError(ErrorCode.BAD_REQUEST, "request line longer than 64 KiB"), close=True)
                return
            if not self.parse_request():
                return
            self.server.request_started()
            try:
                self._dispatch()
            finally:
                self.server.request_finished()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True
            if self._reader.started and not self._responded:
                self._error(ProtocolError(ErrorCode.REQUEST_TIMEOUT,
                                          f"the request did not arrive within {cfg.request_timeout_s:g} s"), close=True)
        except (ConnectionError, OSError):
            self.close_connection = True

    def _dispatch(self) -> None:
        try:
            if not self.server.client_allowed(self.client_address[0]):
                raise ProtocolError(ErrorCode.FORBIDDEN, f"client {self.client_address[0]} is not in [http] allow_clients")
            if self.server.stopping:
                self.close_connection = True
                raise ProtocolError(ErrorCode.SHUTTING_DOWN, "the bridge is shutting down; retry shortly")
            split = urlsplit(self.path)
            path = split.path
            if path.startswith(RESULTS_PREFIX):
                expected = "GET"
            else:
                expected = ROUTES.get(path, "")
                if not expected:
                    raise ProtocolError(ErrorCode.NOT_FOUND, f"no such endpoint {path[:100]!r}; see docs/his-interface.md")
            if self.command != expected:
                self._error(ProtocolError(ErrorCode.METHOD_NOT_ALLOWED, f"{path} takes {expected}, not {self.command}"),
                            headers={"Allow": expected})
                return
            query = _query(split.query, allowed=("wait",) if path != "/v1/health" else ())
            wait = _wait_seconds(query)
            if path == "/v1/instructions":
                answer = self.server.relay.submit(self._read_body(), wait)
            elif path == "/v1/health":
                answer = Answer(200, dumps_compact(self.server.health()))
            else:
                answer = self.server.relay.query(unquote(path[len(RESULTS_PREFIX):]), wait)
            self._send(answer)
        except ProtocolError as exc:
            self._error(exc, close=exc.code in (ErrorCode.TOO_LARGE, ErrorCode.SHUTTING_DOWN))
            if exc.code is ErrorCode.TOO_LARGE:
                self._discard_body()
        except TimeoutError:
            raise
        except (ConnectionError, BrokenPipeError):
            raise
        except Exception:  # the one place an unexpected bug becomes a 500, logged with its traceback
            incident = os.urandom(4).hex()
            log.exception("internal error", extra={"event": "internal_error",
                                                   "fields": {"incident": incident, "path": self.path[:200]}})
            self._error(ProtocolError(ErrorCode.INTERNAL_ERROR,
                                      f"internal error, incident {incident}: the bridge log has the details"), close=True)

    def _read_body(self) -> bytes:
        content_type = self.headers.get("Content-Type")
        if content_type is not None and content_type.split(";")[0].strip().lower() != "application/json":
            self.close_connection = True
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"Content-Type {content_type[:60]!r}: send application/json")
        if "Transfer-Encoding" in self.headers:
            self.close_connection = True
            raise ProtocolError(ErrorCode.BAD_REQUEST, "chunked bodies are not accepted; send Content-Length")
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit() or not length_text.isascii():
            self.close_connection = True
            raise ProtocolError(ErrorCode.BAD_REQUEST, "a POST needs a Content-Length header with the body size")
        length = int(length_text)
        if length > MAX_BODY:
            self._unread = length
            raise ProtocolError(ErrorCode.TOO_LARGE, f"body of {length} bytes is over the {MAX_BODY} byte limit")
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise ConnectionError("client closed before the body was complete")
        return body

    def _discard_body(self) -> None:
        """After a 413, swallow a moderate unread body (never stored) so the client reads our answer
        instead of a connection reset; a huge one is simply cut off."""
        left = getattr(self, "_unread", 0)
        if left > DISCARD_LIMIT:
            return
        try:
            while left > 0:
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except (TimeoutError, OSError):
            pass

    # ------------------------------------------------------------ answers

    def _send(self, answer: Answer, headers: dict[str, str] | None = None) -> None:
        self.connection.settimeout(WRITE_TIMEOUT_S)
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(answer.body) if self.command != "HEAD" else 0))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        # Headers and body in one write: one segment on the wire for a typical answer.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(answer.body)
        self.wfile.write(b"".join(self._headers_buffer))
        self._headers_buffer = []
        self._responded = True

    def _error(self, exc: ProtocolError, *, close: bool = False, headers: dict[str, str] | None = None) -> None:
        if close:
            self.close_connection = True
        if self._responded:
            return
        try:
            self._send(error_answer(exc), headers)
        except OSError:
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, too many headers...) as JSON too."""
        error = _STATUS_CODES.get(code, ErrorCode.BAD_REQUEST)
        if self.request_version == "HTTP/0.9":  # unparseable request line: answer with headers anyway
            self.request_version = "HTTP/1.1"
        self._error(ProtocolError(error, message or explain or f"HTTP {code}"), close=True)

    def log_request(self, code: object = "-", size: object = "-") -> None:
        status = code.value if hasattr(code, "value") else code  # type: ignore[union-attr]
        log_event(log, "http_request", client=self.client_address[0], method=getattr(self, "command", ""),
                  path=urlsplit(getattr(self, "path", "")).path[:120], status=status,
                  ms=round((time.perf_counter() - self._started) * 1000, 2))

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        log.debug(format % args, extra={"event": "http_server"})


def _query(text: str, allowed: tuple[str, ...]) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=8)
    except ValueError:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"query {text[:80]!r} is not name=value pairs") from None
    query: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"unknown query parameter {name[:40]!r}" +
                                (f"; this endpoint takes {', '.join(allowed)}" if allowed else ""))
        if name in query:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"query parameter {name} given twice")
        query[name] = value
    return query


def _wait_seconds(query: dict[str, str]) -> float:
    text = query.get("wait")
    if text is None:
        return 0.0
    if not (text.isascii() and text.isdigit()) or len(text) > 3 or int(text) > MAX_WAIT_S:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"wait={text[:20]!r} must be whole seconds from 0 to {MAX_WAIT_S}")
    return float(int(text))
