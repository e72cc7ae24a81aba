"""`socket://HOST:PORT`: the link over TCP (the simulator, tests, a serial-over-LAN adapter).

One socket, used by a reader thread and a writer at the same time: reads wait in `select` (which
works for sockets on Windows too) so the socket's own timeout can serve writes alone.
"""

from __future__ import annotations

import select
import socket

from bridge.transport.base import TransportClosed, TransportError

CONNECT_TIMEOUT_S = 3.0
WRITE_TIMEOUT_S = 2.0


class TcpTransport:
    def __init__(self, host: str, port: int, *, write_timeout_s: float = WRITE_TIMEOUT_S) -> None:
        self.host = host
        self.port = port
        self.url = f"socket://{host}:{port}"
        self.write_timeout_s = write_timeout_s
        self._sock: socket.socket | None = None

    def open(self) -> None:
        self.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            raise TransportError(f"cannot connect to {self.url}: {exc}; is the simulator (pos-sim) running?") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.write_timeout_s)
        self._sock = sock

    def _require(self) -> socket.socket:
        if self._sock is None:
            raise TransportClosed(f"{self.url} is not open")
        return self._sock

    def read(self, max_bytes: int, timeout: float) -> bytes:
        sock = self._require()
        try:
            ready, _, _ = select.select([sock], [], [], max(0.0, timeout))
            if not ready:
                return b""
            data = sock.recv(max_bytes)
        except (OSError, ValueError) as exc:
            raise TransportClosed(f"{self.url}: read failed ({exc})") from None
        if not data:
            raise TransportClosed(f"{self.url}: the peer closed the connection")
        return data

    def write(self, data: bytes) -> None:
        sock = self._require()
        try:
            sock.sendall(data)
        except socket.timeout:
            raise TransportClosed(f"{self.url}: the peer stopped reading (write timed out)") from None
        except OSError as exc:
            raise TransportClosed(f"{self.url}: write failed ({exc})") from None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
