"""Two Links joined by a simulated wire with faults and a simulated clock (no I/O, no sleeping)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from protocol import signing
from protocol.link.frame import FrameType
from protocol.link.handshake import DeviceIdentity, HostTrust
from protocol.link.session import (
    Delivered,
    DeviceHandshake,
    HostHandshake,
    Link,
    LinkDown,
    LinkState,
    LinkTimers,
    LinkUp,
    Received,
    Role,
)

DEVICE_SEED = bytes(range(32))
HOST_SEED = bytes(range(100, 132))
TRUST = HostTrust(bridges=frozenset({signing.public_key(HOST_SEED)}))
IDENTITY = DeviceIdentity("D-SN-000123", "HP-POS-1", "SN000123", "1.2.0", ("pay", "refund"))


@dataclass
class Faults:
    loss: float = 0.0  # probability a chunk of bytes vanishes
    corrupt: float = 0.0  # probability one byte of a chunk is flipped
    duplicate: float = 0.0  # probability a chunk is delivered twice


@dataclass
class Side:
    link: Link
    received: list[bytes] = field(default_factory=list)
    delivered: list[object] = field(default_factory=list)
    lost: list[object] = field(default_factory=list)
    ups: int = 0
    downs: int = 0
    session_received: list[set[bytes]] = field(default_factory=lambda: [set()])
    dup_in_session: int = 0
    down_reasons: list[str] = field(default_factory=list)

    def handle(self, events) -> None:
        for e in events:
            if isinstance(e, Received):
                self.received.append(e.payload)
                if e.payload in self.session_received[-1]:
                    self.dup_in_session += 1
                self.session_received[-1].add(e.payload)
            elif isinstance(e, Delivered):
                self.delivered.append(e.tag)
            elif isinstance(e, LinkDown):
                self.downs += 1
                self.down_reasons.append(e.reason)
                self.lost.extend(e.unacked)
                self.session_received.append(set())
            elif isinstance(e, LinkUp):
                self.ups += 1


def make_pair(seed: int = 0, timers: LinkTimers = LinkTimers(), device_seed: bytes = DEVICE_SEED, registry=None,
              host_seed: bytes = HOST_SEED, trust: HostTrust = TRUST):
    rng = random.Random(seed)
    public = signing.public_key(DEVICE_SEED)
    registry = registry if registry is not None else {IDENTITY.device_id: public}
    host = Link(
        Role.HOST,
        host=HostHandshake(registry.get, host_seed, lambda: b'{"time":1795000000}', rng.randbytes),
        timers=timers,
    )
    device_rng = random.Random(seed + 1)
    device = Link(Role.DEVICE, device=DeviceHandshake(IDENTITY, device_seed, trust, device_rng.randbytes), timers=timers)
    return Side(host), Side(device)


class Wire:
    def __init__(self, rng: random.Random, faults: Faults) -> None:
        self.rng = rng
        self.faults = faults

    def carry(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        f = self.faults
        if self.rng.random() < f.loss:
            return []
        if self.rng.random() < f.corrupt:
            b = bytearray(data)
            b[self.rng.randrange(len(b))] ^= 1 << self.rng.randrange(8)
            data = bytes(b)
        return [data, data] if self.rng.random() < f.duplicate else [data]


def run(host: Side, device: Side, steps: int, *, t0: float = 0.0, dt: float = 0.02, faults: Faults = Faults(), seed: int = 0, each_step=None) -> float:
    rng = random.Random(seed)
    to_device, to_host = Wire(rng, faults), Wire(rng, faults)
    t = t0
    for _ in range(steps):
        for chunk in to_device.carry(host.link.data_to_send()):
            device.handle(device.link.receive_bytes(chunk, t))
        for chunk in to_host.carry(device.link.data_to_send()):
            host.handle(host.link.receive_bytes(chunk, t))
        host.handle(host.link.poll(t))
        device.handle(device.link.poll(t))
        if each_step is not None:
            each_step(t)
        t += dt
    return t


def both_up(host: Side, device: Side) -> bool:
    return host.link.state is LinkState.UP and device.link.state is LinkState.UP


def send(side: Side, payload: bytes, t: float) -> bool:
    if side.link.state is not LinkState.UP:
        return False
    side.link.send(FrameType.DATA, payload, t, tag=payload)
    return True
