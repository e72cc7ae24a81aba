"""`socket://HOST:PORT` at the device end: listen on TCP for the bridge (benchmarks, a POS reached
over a LAN adapter, the simulator). One host connection at a time; a new one starts a new session.
"""

from __future__ import annotations

import select
import socket
import threading

from terminal.link.wire import WireReset


class TcpWire:
    """Listens on 127.0.0.1 (an ephemeral port unless given); one host connection at a time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._listener = socket.create_server((host, port))
        self.address = self._listener.getsockname()[:2]
        self._conn: socket.socket | None = None
        self._plugged = True
        self._lock = threading.Lock()

    @property
    def bridge_url(self) -> str:
        return f"socket://{self.address[0]}:{self.address[1]}"

    def read(self, max_bytes: int, timeout: float) -> bytes:
        conn = self._conn
        if conn is None:
            ready, _, _ = select.select([self._listener], [], [], timeout)
            if not ready:
                return b""
            try:
                new, _ = self._listener.accept()
            except OSError:
                return b""
            if not self._plugged:
                new.close()  # "no device there": the host's connection drops at once
                return b""
            new.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = new
            raise WireReset("a host connected")
        try:
            ready, _, _ = select.select([conn], [], [], timeout)
            if not ready:
                return b""
            data = conn.recv(max_bytes)
        except (OSError, ValueError):
            data = b""
        if not data:
            self._drop(conn)
            raise WireReset("the host disconnected")
        return data

    def _drop(self, conn: socket.socket) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None
        try:
            conn.close()
        except OSError:
            pass

    def write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.sendall(data)
        except OSError:
            self._drop(conn)

    def unplug(self) -> None:
        self._plugged = False
        conn = self._conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._drop(conn)

    def replug(self) -> None:
        self._plugged = True

    def close(self) -> None:
        self.unplug()
        self._listener.close()
