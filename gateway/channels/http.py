"""One bounded HTTP exchange with a channel.

Channel replies are small; a reply that keeps streaming, never arrives or is not a 200 becomes an
`HttpFailure`, never an exception, so the clients can turn it into an UNKNOWN outcome. Redirects
are not followed (a payment API never redirects; following one would send a signed request to a
host nobody configured).

Transport: `SessionPool.get()` gives a `ConnectionPool`, kept-alive `http.client` connections per
channel host, unless the process has a proxy configured (HTTP(S)_PROXY / ALL_PROXY: then requests,
which honours them and NO_PROXY) or a client was given a `requests.Session` (tests). requests costs
about 1.5 ms of CPU per call in its adapters and hooks: at the gateway, which makes every channel
call of every POS, that was most of its CPU per payment (docs/gateway.md, Performance). TLS is
verified as requests does: against certifi's CA bundle, or REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, or
the `verify` path a merchant's settings give; client certificates (WeChat's /secapi) the same way.
"""

from __future__ import annotations

import enum
import http.client
import os
import select
import socket
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Iterator, Mapping, cast
from urllib.parse import urlsplit

import requests

# A payment API reply is a few KiB; a bill can be large (a busy hospital: tens of thousands of rows).
MAX_REPLY_BYTES = 256 * 1024
MAX_BILL_BYTES = 64 * 1024 * 1024


class HttpFailure(enum.Enum):
    TIMEOUT = "timeout"  # no (complete) reply in time: the request may or may not have been acted on
    CONNECTION = "connection"  # could not connect, or the connection broke
    STATUS = "status"  # a reply that is not 200
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)  # case-insensitive (ReplyHeaders, or requests' CaseInsensitiveDict)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float
    read_s: float

    def total_s(self) -> float:
        # A reply trickling in below the per-read timeout must still end: bound the whole exchange.
        return self.connect_s + 3 * self.read_s


class _Session(requests.Session):
    """A requests.Session that reads the environment's proxy and CA-bundle settings once per host.

    requests re-reads them (HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...) from os.environ on every
    call: about 1 ms of CPU per channel request at the gateway. A daemon's environment does not
    change while it runs, so the merged settings are kept per (scheme, host, and the call's own
    stream / verify / cert / proxies)."""

    def __init__(self) -> None:
        super().__init__()
        self._merged: dict[tuple, dict] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, tuple(sorted((proxies or {}).items())), stream, verify, cert)
        merged = self._merged.get(key)
        if merged is None:
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if len(self._merged) < 256:
                self._merged[key] = merged
        return dict(merged, proxies=dict(merged["proxies"]))


# An idle kept-alive connection older than this is not reused (servers drop idle ones after ~60 s).
IDLE_MAX_S = 30.0
# Idle connections kept per channel host (more may be open while that many calls run at once).
IDLE_PER_ORIGIN = 8


# A channel's reply head: at most this many header lines, each at most this long (as http.client).
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100


class ReplyHeaders(Mapping[str, str]):
    """A reply's header fields, case-insensitive; a repeated field's values joined by ", " (as
    requests does). Also what http.client.HTTPResponse asks of its `headers` (get, get_all, items)."""

    __slots__ = ("_fields", "_values")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        values: dict[str, str] = {}
        for name, value in fields:
            key = name.lower()
            values[key] = f"{values[key]}, {value}" if key in values else value
        self._values = values

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get_all(self, name: str, failobj: list[str] | None = None) -> list[str] | None:
        key = name.lower()
        found = [value for field_name, value in self._fields if field_name.lower() == key]
        return found or failobj


def _read_head(fp) -> list[tuple[str, str]]:
    """The header lines after the status line, up to the empty line: (name, value) pairs; a line
    folded onto the next (obs-fold) is joined to it. A malformed head is an HTTPException."""
    fields: list[tuple[str, str]] = []
    while True:
        line = fp.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n"):
            return fields
        if not line:
            raise http.client.IncompleteRead(b"", None)  # the connection ended inside the head
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if not text:
            raise http.client.HTTPException("a bare carriage return in the head")
        if text[0] in " \t":
            if not fields:
                raise http.client.HTTPException("a folded header line without a header")
            name, value = fields.pop()
            fields.append((name, f"{value} {text.strip()}"))
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip():
            raise http.client.HTTPException("malformed header line")
        fields.append((name, value.strip()))
        if len(fields) > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")


class _LeanResponse(http.client.HTTPResponse):
    """http.client's response with its head read by `_read_head` into `ReplyHeaders` instead of the
    email package's parser (about 0.8 ms of CPU per channel call at the gateway: a sixth of its CPU
    per payment). The body (Content-Length, chunked, or to the connection's end) is read by
    http.client as before; `begin` decides which exactly as HTTPResponse.begin does."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            _read_head(self.fp)  # an interim 100 Continue: its head is skipped
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        headers = ReplyHeaders(_read_head(self.fp))
        self.headers = self.msg = headers
        encoding = headers.get("transfer-encoding")
        self.chunked = bool(encoding) and encoding.lower() == "chunked"
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = headers.get("content-length")
        if length and not self.chunked:
            first = length.split(",")[0].strip()  # repeated fields were joined; http.client takes the first
            self.length = int(first) if first.isdigit() else None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class _LeanHTTPConnection(http.client.HTTPConnection):
    """http.client sends a request's head and its body in two writes: two TCP segments with
    TCP_NODELAY, and a second wake-up of the channel's server for the same request. A bytes body
    goes out with its head in one write here (`_buffer` is the head http.client has built). Its
    replies are `_LeanResponse`s."""

    response_class = _LeanResponse
    _buffer: list[bytes]

    def _send_output(self, message_body: object = None, encode_chunked: bool = False) -> None:
        if not isinstance(message_body, bytes) or encode_chunked:
            super()._send_output(message_body, encode_chunked)  # type: ignore[misc]  # http.client's own (not in typeshed)
            return
        self._buffer.extend((b"", message_body))
        request = b"\r\n".join(self._buffer)
        del self._buffer[:]
        self.send(request)


class _LeanHTTPSConnection(_LeanHTTPConnection, http.client.HTTPSConnection):
    pass


def _proxied() -> bool:
    return bool(urllib.request.getproxies())


def _tls_context(verify: bool | str, cert: tuple[str, str] | None) -> ssl.SSLContext:
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        bundle = verify if isinstance(verify, str) else (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"))
        if bundle is None:
            import certifi  # requests' own CA bundle (a dependency of requests)

            bundle = certifi.where()
        context = ssl.create_default_context(capath=bundle) if os.path.isdir(bundle) else ssl.create_default_context(cafile=bundle)
    if cert is not None:
        context.load_cert_chain(cert[0], cert[1])
    return context


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """The server closed this idle connection (EOF or data pending on it): never send a payment on it."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class ConnectionPool:
    """Kept-alive http.client connections per (scheme, host, port, TLS settings); thread-safe: a
    connection is used by one call at a time, taken from and given back to the idle list."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple, list[tuple[float, http.client.HTTPConnection]]] = {}
        self._contexts: dict[tuple, ssl.SSLContext] = {}

    def _context(self, verify: bool | str, cert: tuple[str, str] | None) -> ssl.SSLContext:
        key = (verify, cert)
        with self._lock:
            context = self._contexts.get(key)
        if context is None:
            context = _tls_context(verify, cert)
            with self._lock:
                self._contexts[key] = context
        return context

    def _take(self, origin: tuple) -> http.client.HTTPConnection | None:
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                if not idle:
                    return None
                since, conn = idle.pop()
            if now - since <= IDLE_MAX_S and not _dropped(conn):
                return conn
            conn.close()

    def _give_back(self, origin: tuple, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < IDLE_PER_ORIGIN:
                idle.append((time.monotonic(), conn))
                return
        conn.close()

    def exchange(self, method: str, url: str, *, timeouts: Timeouts, body: bytes | None, headers: dict[str, str] | None,
                 max_bytes: int, cert: tuple[str, str] | None, verify: bool | str, any_status: bool = False) -> HttpReply | HttpFailure:
        started = time.monotonic()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return HttpFailure.CONNECTION
        port = parts.port or (443 if parts.scheme == "https" else 80)
        tls = parts.scheme == "https"
        origin = (parts.scheme, parts.hostname, port, verify if tls else None, cert if tls else None)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = self._take(origin)
        try:
            if conn is None:
                if tls:
                    conn = _LeanHTTPSConnection(parts.hostname, port, timeout=timeouts.connect_s, context=self._context(verify, cert))
                else:
                    conn = _LeanHTTPConnection(parts.hostname, port, timeout=timeouts.connect_s)
                conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(timeouts.read_s)
            sent = {"Host": parts.netloc, "Accept-Encoding": "identity", "Content-Length": str(len(body or b""))} | (headers or {})
            conn.request(method, target, body=body, headers=sent)
            response = conn.getresponse()
            chunks: list[bytes] = []
            size = 0
            while True:
                chunk = response.read1(64 * 1024) if size < max_bytes else response.read(1)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    conn.close()
                    return HttpFailure.TOO_LARGE
                chunks.append(chunk)
                if time.monotonic() - started > timeouts.total_s():
                    conn.close()
                    return HttpFailure.TIMEOUT
            if response.length:  # the connection ended before the Content-Length promised (read1 does not say so)
                return HttpFailure.CONNECTION
            head = cast(ReplyHeaders, response.headers)  # a _LeanResponse's
            reply = HttpReply(response.status, b"".join(chunks), head.get("Content-Type", ""), head)
            response.close()  # read to its end: the connection is ready for the next request
            if response.will_close:
                conn.close()
            else:
                self._give_back(origin, conn)
            conn = None
            return reply if reply.status == 200 or any_status else HttpFailure.STATUS
        except (TimeoutError, socket.timeout):
            return HttpFailure.TIMEOUT
        except (OSError, http.client.HTTPException, ssl.SSLError):
            return HttpFailure.CONNECTION
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for _, conn in conns:
                conn.close()


class SessionPool:
    """What a channel client sends its calls through: the shared `ConnectionPool` (thread-safe), or
    with a proxy configured or a `requests.Session` given, one requests.Session per thread (a Session
    is not documented as thread-safe, and one order may be queried while the next payment starts)."""

    def __init__(self, shared: requests.Session | None = None) -> None:
        self._shared = shared
        self._local = threading.local()
        self._pool = ConnectionPool() if shared is None and not _proxied() else None

    def get(self) -> requests.Session | ConnectionPool:
        if self._shared is not None:
            return self._shared
        if self._pool is not None:
            return self._pool
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = _Session()
        return session


def exchange(
    session: requests.Session | ConnectionPool,
    method: str,
    url: str,
    *,
    timeouts: Timeouts,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    max_bytes: int = MAX_REPLY_BYTES,
    cert: tuple[str, str] | None = None,
    verify: bool | str = True,
    any_status: bool = False,
) -> HttpReply | HttpFailure:
    """`any_status`: a reply with any status is returned (WeChat APIv3 answers errors as 4xx/5xx
    with a JSON body); otherwise only a 200 is, and anything else is HttpFailure.STATUS."""
    if isinstance(session, ConnectionPool):
        return session.exchange(method, url, timeouts=timeouts, body=body, headers=headers, max_bytes=max_bytes, cert=cert, verify=verify,
                                any_status=any_status)
    started = time.monotonic()
    try:
        response = session.request(
            method,
            url,
            data=body,
            headers=headers,
            timeout=(timeouts.connect_s, timeouts.read_s),
            stream=True,
            allow_redirects=False,
            cert=cert,
            verify=verify,
        )
    except requests.exceptions.Timeout:
        return HttpFailure.TIMEOUT
    except requests.exceptions.RequestException:
        return HttpFailure.CONNECTION
    try:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                return HttpFailure.TOO_LARGE
            chunks.append(chunk)
            if time.monotonic() - started > timeouts.total_s():
                return HttpFailure.TIMEOUT
        if response.status_code != 200 and not any_status:
            return HttpFailure.STATUS
        return HttpReply(response.status_code, b"".join(chunks), response.headers.get("Content-Type", ""), response.headers)
    except requests.exceptions.Timeout:
        return HttpFailure.TIMEOUT
    except requests.exceptions.RequestException:
        return HttpFailure.CONNECTION
    finally:
        response.close()


def mask_code(code: str) -> str:
    """A payment code for logs: first 4 and last 4 digits at most (codes are bearer credentials)."""
    if len(code) < 12:
        return "*" * min(len(code), 24)
    return code[:4] + "*" * (len(code) - 8) + code[-4:]
