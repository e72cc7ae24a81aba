"""The HIS-facing HTTP API (his-interface-v1 section 2) on the standard library's ThreadingHTTPServer.

    POST /v1/instructions?wait=N     GET /v1/results/{msg_id}?wait=N     GET /v1/health
    POST /v1/instructions/{msg_id}/cancel?wait=N   (his-interface 1.1 C: withdrawal)

Why threads and not asyncio: every request is short CPU work (AES-GCM, a SQLite commit) plus, at
most, one blocking wait on a threading.Event for a long poll; a thread per connection keeps that
code straight-line and the journal/link code synchronous.

What a thread per connection would otherwise risk is bounded here (HIS interface 1.1 part D):
- a new connection that sends nothing within `first_byte_timeout_s` (at most 2 s) is closed, a
  kept-alive one with no new request within `idle_timeout_s`;
- at most `max_connections` are open at once; when another arrives, the longest-idle connection is
  closed to make room (one that never sent a request first), so idle sockets cannot keep HIS out.
  Only when every connection is busy with a request does a new one wait in the listen backlog;
- on a non-loopback address, a client outside `allow_clients` is closed as it is accepted;
- each request must arrive whole within `request_timeout_s` of its first byte (408 otherwise);
- the request head is parsed strictly (bridge.httphead): one Content-Length, no Transfer-Encoding,
  nothing a second parser could frame differently (400 and the connection closed);
- after any answer, a body the request declared and nobody read is read out (up to 1 MiB; beyond,
  or when the client waits for `100 Continue`, the connection is closed), so the next request on a
  kept-alive connection is never read from the middle of the previous one.
Body limit 64 KiB: refused from Content-Length before reading (413).

Every answer has a JSON body; errors are exactly ProtocolError.to_json_obj().
"""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from protocol.envelope import MAX_ENVELOPE_BYTES
from protocol.errors import ErrorCode, ProtocolError
from protocol.strictjson import dumps_compact

from bridge.config import HttpConfig, is_loopback
from bridge.httphead import MAX_HEAD_BYTES, RequestHead, parse_request_head
from bridge.logjson import log_event
from bridge.relay import MAX_WAIT_S, Answer, Relay, error_answer

log = logging.getLogger("bridge.http")

MAX_BODY = MAX_ENVELOPE_BYTES  # 64 KiB, the spec's limit
WRITE_TIMEOUT_S = 10.0
DISCARD_LIMIT = 1 << 20  # bytes of an unread body read and thrown away so the connection stays in step
LINGER_S = 1.0  # after an error that closes, how long unread input is drained so our answer is not reset
ROUTES = {"/v1/instructions": "POST", "/v1/health": "GET"}
RESULTS_PREFIX = "/v1/results/"
INSTRUCTIONS_PREFIX = "/v1/instructions/"
CANCEL_SUFFIX = "/cancel"
_STATUS_CODES = {400: ErrorCode.BAD_REQUEST, 404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED,
                 408: ErrorCode.REQUEST_TIMEOUT, 413: ErrorCode.TOO_LARGE, 500: ErrorCode.INTERNAL_ERROR,
                 501: ErrorCode.METHOD_NOT_ALLOWED}


class _DeadlineReader(io.RawIOBase):
    """Socket reads bounded by one deadline per request, not per recv: slow drips cannot hold a thread."""

    def __init__(self, sock: socket.socket, on_first_byte: Callable[[], None]) -> None:
        self.sock = sock
        self.on_first_byte = on_first_byte
        self.deadline = float("inf")
        self.request_timeout = 10.0
        self.started = False

    def begin(self, wait_timeout: float, request_timeout: float) -> None:
        self.deadline = time.monotonic() + wait_timeout
        self.request_timeout = request_timeout
        self.started = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # RawIOBase declares a wider buffer type; the server hands it a memoryview
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self.sock.settimeout(left)
        n = self.sock.recv_into(buffer)
        if n and not self.started:
            self.started = True
            self.on_first_byte()
            self.deadline = min(self.deadline, time.monotonic() + self.request_timeout)
        return n


@dataclass(slots=True)
class _Connection:
    """What the accept loop knows of an open connection, to choose which one to close for room."""

    sock: socket.socket
    idle_since: float
    requests: int = 0  # requests started on it
    busy: bool = False  # a request is being read or answered
    evicted: bool = False


def _has_input(sock: socket.socket) -> bool:
    """Bytes (or an EOF) wait to be read: the connection is about to become busy, not idle."""
    if not hasattr(select, "poll"):  # Windows: no cheap check; the oldest idle one goes regardless
        return False
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


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
        # On a LAN address an unlisted client must not even hold a connection (HIS 1.1 part D); on
        # loopback only this PC's programs connect, and they get a 403 that says what to change.
        self.filter_at_accept = bool(self.allowed) and not is_loopback(config.host)
        self.stopping = False
        self._lock = threading.Condition()
        self._in_flight = 0
        self._connections: dict[socket.socket, _Connection] = {}
        self._open = 0  # connections in _connections not yet evicted
        self.evictions = 0
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        super().__init__((config.host, config.port), BridgeHandler)

    def verify_request(self, request, client_address) -> bool:
        if self.filter_at_accept and not self.client_allowed(client_address[0]):
            log_event(log, "http_client_refused", client=client_address[0], why="not in [http] allow_clients")
            return False
        return True

    # Room for every new connection: the longest-idle one is closed when max_connections are open;
    # only when all of them are busy answering does the accept loop wait (clients queue in the backlog).
    def process_request(self, request, client_address):
        with self._lock:
            while self._open >= self.config.max_connections and not self._evict_idle():
                if self.stopping:
                    self.shutdown_request(request)
                    return
                self._lock.wait(0.2)
            self._connections[request] = _Connection(request, time.monotonic())
            self._open += 1
        try:
            super().process_request(request, client_address)
        except Exception:
            self._release(request)
            raise

    def _evict_idle(self) -> bool:
        """Under the lock: close the connection idle the longest, one that never sent a request first."""
        idle = sorted((c for c in self._connections.values() if not c.busy and not c.evicted),
                      key=lambda c: (c.requests > 0, c.idle_since))
        for conn in idle:
            if _has_input(conn.sock):
                continue
            conn.evicted = True
            self._open -= 1
            self.evictions += 1
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)  # its thread's recv returns b"" and the thread ends
            except OSError:
                pass
            log.debug("idle connection closed to make room", extra={"event": "http_evicted"})
            return True
        return False

    def connection_busy(self, request: socket.socket, busy: bool) -> None:
        with self._lock:
            conn = self._connections.get(request)
            if conn is None:
                return
            if busy and not conn.busy:
                conn.requests += 1
            conn.busy = busy
            if not busy:
                conn.idle_since = time.monotonic()

    def _release(self, request: socket.socket) -> None:
        with self._lock:
            conn = self._connections.pop(request, None)
            if conn is not None and not conn.evicted:
                self._open -= 1
            self._lock.notify_all()

    def process_request_thread(self, request, client_address):
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
    head: RequestHead | None

    def setup(self) -> None:
        super().setup()
        self._reader = _DeadlineReader(self.connection, lambda: self.server.connection_busy(self.connection, True))
        self.rfile = io.BufferedReader(self._reader, 8192)
        self._responded = False
        self._requests = 0
        self._linger = False

    def finish(self) -> None:
        super().finish()
        if self._linger:
            self._lingering_close()

    # ------------------------------------------------------------ request cycle

    def handle_one_request(self) -> None:
        cfg = self.server.config
        first = self._requests == 0
        self.server.connection_busy(self.connection, False)
        self._reader.begin(cfg.first_byte_timeout_s if first else cfg.idle_timeout_s, cfg.request_timeout_s)
        self._responded = False
        self._started = time.perf_counter()
        self.command, self.path, self.request_version = "", "", "HTTP/1.1"  # until the head is parsed
        self.head = None
        self._body_left = 0
        self._expect_continue = False
        self._continue_sent = False
        try:
            raw = self._read_head()
            if raw is None:
                self.close_connection = True
                return
            self._requests += 1
            self.server.connection_busy(self.connection, True)  # a pipelined request never reached recv
            self.requestline = raw.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")[:200]
            try:
                head = parse_request_head(raw)
            except ProtocolError as exc:
                self._error(exc, close=True)
                return
            self.head = head
            self.command, self.path, self.request_version = head.method, head.target, head.version
            self.close_connection = not head.keep_alive
            self._body_left = head.content_length
            self._expect_continue = head.expect_continue
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

    def _read_head(self) -> bytes | None:
        """The request line and headers up to the empty line; None if the client closed first."""
        head = bytearray()
        while True:
            line = self.rfile.readline(MAX_HEAD_BYTES + 1)
            if not line:
                if not head:
                    return None
                raise ConnectionError("the client closed inside the request head")
            if not head and line in (b"\r\n", b"\n"):
                continue  # RFC 9112 2.2: empty lines before a request line are ignored
            head += line
            if len(head) > MAX_HEAD_BYTES:
                self._error(ProtocolError(ErrorCode.BAD_REQUEST, f"request head longer than {MAX_HEAD_BYTES // 1024} KiB"),
                            close=True)
                raise ConnectionError("request head too long")
            if line in (b"\r\n", b"\n"):
                return bytes(head)

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
            elif path.startswith(INSTRUCTIONS_PREFIX) and path.endswith(CANCEL_SUFFIX):
                expected = "POST"
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
            elif path.startswith(INSTRUCTIONS_PREFIX):
                msg_id = unquote(path[len(INSTRUCTIONS_PREFIX):-len(CANCEL_SUFFIX)])
                answer = self.server.relay.cancel(msg_id, self._read_body(), wait)
            else:
                answer = self.server.relay.query(unquote(path[len(RESULTS_PREFIX):]), wait)
            self._send(answer)
        except ProtocolError as exc:
            self._error(exc, close=exc.code in (ErrorCode.TOO_LARGE, ErrorCode.SHUTTING_DOWN))
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
        assert self.head is not None
        content_type = self.head.get("content-type")
        if content_type is not None and content_type.split(";")[0].strip().lower() != "application/json":
            self.close_connection = True
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"Content-Type {content_type[:60]!r}: send application/json")
        if self.head.get("content-length") is None:
            self.close_connection = True
            raise ProtocolError(ErrorCode.BAD_REQUEST, "a POST needs a Content-Length header with the body size")
        length = self._body_left
        if length > MAX_BODY:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"body of {length} bytes is over the {MAX_BODY} byte limit")
        self._send_continue()
        body = self.rfile.read(length)
        self._body_left = 0
        if len(body) != length:
            self.close_connection = True
            raise ConnectionError("client closed before the body was complete")
        return body

    def _send_continue(self) -> None:
        if self._expect_continue and not self._continue_sent:
            self._continue_sent = True
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

    def _settle_body(self) -> None:
        """Before any answer: read out a declared body nobody read (the next request starts after
        it), or close the connection if that is too much or the client is still waiting to send it."""
        left, self._body_left = self._body_left, 0
        if left == 0:
            return
        if left > DISCARD_LIMIT or (self._expect_continue and not self._continue_sent):
            self.close_connection = True
            return
        try:
            while left > 0:
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except (TimeoutError, OSError):
            pass
        if left:
            self.close_connection = True

    def _lingering_close(self) -> None:
        """Closing with unread input makes the kernel send a reset that can destroy our answer
        before the client reads it: say we are done writing, then read briefly what still comes."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_S
            taken = 0
            while taken < DISCARD_LIMIT:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.connection.settimeout(left)
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                taken += len(chunk)
        except OSError:
            pass

    # ------------------------------------------------------------ answers

    def _send(self, answer: Answer, headers: dict[str, str] | None = None) -> None:
        self._settle_body()
        self.connection.settimeout(WRITE_TIMEOUT_S)
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(answer.body) if self.command != "HEAD" else 0))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "keep-alive")
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
            self._linger = True
        if self._responded:
            return
        try:
            self._send(error_answer(exc), headers)
        except OSError:
            self.close_connection = True
        if self.close_connection:
            self._linger = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals, should any remain reachable, as JSON too."""
        error = _STATUS_CODES.get(code, ErrorCode.BAD_REQUEST)
        self._error(ProtocolError(error, message or explain or f"HTTP {code}"), close=True)

    def log_request(self, code: object = "-", size: object = "-") -> None:
        status = code.value if hasattr(code, "value") else code
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
