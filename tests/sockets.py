"""A connected socket that records each write made on it (how many segments a request takes)."""

from __future__ import annotations


class CountedWrites:
    def __init__(self, sock) -> None:
        self.sock = sock
        self.writes: list[bytes] = []

    def sendall(self, data) -> None:
        self.writes.append(bytes(data))
        self.sock.sendall(data)

    def __getattr__(self, name: str):
        return getattr(self.sock, name)
