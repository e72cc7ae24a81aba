"""The one fake bridge of the link tests: the bridge's side of a device link, minus the bridge.

A HOST `Link` (the sans-I/O link core the real bridge runs) over a real transport to a
`DeviceEndpoint`: the tests send instructions, read what the device sends, and choose whether the
device ever sees the host's acknowledgements.
"""

from __future__ import annotations

import time
from typing import Callable

from bridge.transport import open_transport
from protocol import signing
from protocol.envelope import Envelope
from protocol.link.app import AppMessage, InstructionMsg, ResultMsg, decode_app, encode_app
from protocol.link.frame import FrameType
from protocol.link.session import Event, HostHandshake, Link, LinkTimers, Received, Role
from terminal.link.endpoint import DeviceEndpoint


class Host:
    """A HOST link to `endpoint`, trusting `device_id`'s key (from `device_key_seed`), as `host_seed`."""

    def __init__(self, endpoint: DeviceEndpoint, *, device_id: str, device_key_seed: bytes, host_seed: bytes,
                 timers: LinkTimers, host_info: bytes = b"{}") -> None:
        backend = getattr(endpoint.wire, "backend", None)  # a USB wire's virtual bus
        self.transport = open_transport(endpoint.bridge_url, usb_backend=backend)
        keys = {device_id: signing.public_key(device_key_seed)}
        self.link = Link(Role.HOST, timers=timers, host=HostHandshake(keys.get, host_seed, lambda: host_info))
        self.events: list[Event] = list(self.link.start(time.monotonic()))
        self.flush()

    def flush(self) -> None:
        out = self.link.data_to_send()
        if out:
            self.transport.write(out)

    def send(self, envelope: Envelope) -> None:
        """Send an instruction, tagged with its msg_id."""
        self.link.send(FrameType.DATA, encode_app(InstructionMsg(envelope)), time.monotonic(), tag=envelope.msg_id)
        self.flush()

    def pump(self, predicate: Callable[[], object], timeout: float = 15.0, *, ack: bool = True) -> None:
        """Move bytes both ways until `predicate()` holds; with ack=False the device never sees our ACKs."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; events: {self.events}"
            data = self.transport.read(65536, 0.02)  # blocks until bytes come, at most 20 ms
            now = time.monotonic()
            if data:
                self.events += self.link.receive_bytes(data, now)
            self.events += self.link.poll(now)
            if ack:
                self.flush()
            else:
                self.link.data_to_send()  # lost on the way

    def messages(self) -> list[AppMessage]:
        return [decode_app(e.payload) for e in self.events if isinstance(e, Received) and e.type == FrameType.DATA]

    def results(self) -> list[ResultMsg]:
        return [m for m in self.messages() if isinstance(m, ResultMsg)]

    def close(self) -> None:
        self.transport.close()
