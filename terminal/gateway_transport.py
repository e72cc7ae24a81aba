"""How the POS's requests reach the gateway: kept-alive `http.client` connections.

    transport = GatewayTransport("https://gw.example.cn", pinned_cert="/data/config/gateway.pem")
    status, body, date = transport.post("/v1/pay", body, headers, timeout=(5.0, 20.0))   # or raises TransportError

One connection per request in flight, kept for the next request (no TCP or TLS handshake per
payment); an idle connection the gateway has closed (its idle timeout) is noticed before it is used
and replaced. TLS is verified against the pinned certificate alone, with the hostname checked, as
`requests` did with `verify=<pin>`. requests itself cost the POS ~1.5 ms of CPU per call in its
adapters and hooks (docs/gateway.md, Performance); it is still used when the device has a proxy
configured (HTTP(S)_PROXY, ALL_PROXY: requests honours them and NO_PROXY) or a session is given.
Nothing is retried here: a request whose answer is lost is the caller's to send again, newly signed
(terminal.gateway_client), since the gateway refuses a nonce it has seen.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import urllib.request
from urllib.parse import urlsplit

# Idle connections kept (a POS has a few requests in flight at most: a payment, a query, its mark).
IDLE_MAX = 4
# A reply is a few hundred bytes; anything this large is not the gateway's.
MAX_REPLY_BYTES = 1024 * 1024


class TransportError(Exception):
    """No (complete) answer. `tls`: the gateway's certificate is not the pinned one (or TLS failed)."""

    def __init__(self, reason: str, *, tls: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tls = tls


class _Connection(http.client.HTTPConnection):
    """http.client sends a request's head and its body in two writes: two TCP segments with
    TCP_NODELAY, and the gateway woken twice for one request. A bytes body goes out with its head in
    one write here (`_buffer` is the head http.client has built)."""

    _buffer: list[bytes]

    def _send_output(self, message_body: object = None, encode_chunked: bool = False) -> None:
        if not isinstance(message_body, bytes) or encode_chunked:
            super()._send_output(message_body, encode_chunked)  # type: ignore[misc]  # http.client's own (not in typeshed)
            return
        self._buffer.extend((b"", message_body))
        request = b"\r\n".join(self._buffer)
        del self._buffer[:]
        self.send(request)


class _TlsConnection(_Connection, http.client.HTTPSConnection):
    pass


def proxied() -> bool:
    """Whether the process has a proxy configured (then requests carries the calls)."""
    return bool(urllib.request.getproxies())


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """The gateway closed this idle connection (EOF or data pending on it): never send on it."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class GatewayTransport:
    def __init__(self, url: str, *, pinned_cert: str | None) -> None:
        parts = urlsplit(url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        self._netloc = parts.netloc
        self._base = parts.path.rstrip("/")
        self._context: ssl.SSLContext | None = None
        if self._tls:
            self._context = ssl.create_default_context(cafile=pinned_cert)  # the pin alone; hostname checked
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _take(self) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if not _dropped(conn):
                return conn
            conn.close()

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < IDLE_MAX:
                self._idle.append(conn)
                return
        conn.close()

    def post(self, path: str, body: bytes, headers: dict[str, str], *, timeout: tuple[float, float]) -> tuple[int, bytes, str | None]:
        """The gateway's status, reply body and Date header."""
        conn = self._take()
        try:
            if conn is None:
                if self._tls:
                    conn = _TlsConnection(self._host, self._port, timeout=timeout[0], context=self._context)
                else:
                    conn = _Connection(self._host, self._port, timeout=timeout[0])
                conn.connect()
                assert conn.sock is not None
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert conn.sock is not None
            conn.sock.settimeout(timeout[1])
            # The head and the body in one write (_Connection).
            conn.request("POST", self._base + path, body=body,
                         headers={"Host": self._netloc, "Accept-Encoding": "identity", "Content-Length": str(len(body))} | headers)
            response = conn.getresponse()
            data = response.read(MAX_REPLY_BYTES + 1)
            if len(data) > MAX_REPLY_BYTES:
                raise TransportError("the reply is too large")
            status, date = response.status, response.getheader("Date")
            if response.will_close or not response.isclosed():
                conn.close()
            else:
                self._give_back(conn)
            conn = None
            return status, data, date
        except ssl.SSLError as exc:  # SSLCertVerificationError included
            raise TransportError(exc.__class__.__name__, tls=True) from None
        except (OSError, http.client.HTTPException) as exc:  # timeouts, refused, reset, a broken reply
            raise TransportError(exc.__class__.__name__) from None
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
