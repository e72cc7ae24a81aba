"""The link's security costs: handshake time, per-frame authentication cost, added bytes per frame.

- handshake: a whole HELLO_REQUEST / HELLO / HELLO_ACK between a HOST and a DEVICE `Link` in this
  process (sans-I/O, no wire): two X25519 key pairs and exchanges, two Ed25519 signatures and two
  verifications, HKDF; what a (re)connection adds to the wire time of its three frames;
- per frame: sealing a DATA frame and opening it on the other side (ChaCha20-Poly1305 + the session
  logic), and the same for the ACK's tag, at 300 bytes (an instruction) and 16 KiB (a flash chunk);
  the baseline is the same exchange's framing and CRCs without the keys (bare `encode_frame` + decode);
- bytes: what authentication adds to each frame on the wire (the round trip at 115200 baud, with
  those bytes counted, is bench_bridge's `paced_round_trip_ratio_p50`).
"""

from __future__ import annotations

import os
import statistics
import time

from protocol import signing
from protocol.link.decoder import FrameDecoder
from protocol.link.frame import OVERHEAD, FrameType, encode_frame, wire_time_s
from protocol.link.handshake import DeviceIdentity, HostTrust
from protocol.link.secure import TAG_SIZE
from protocol.link.session import DeviceHandshake, HostHandshake, Link, LinkState, Role

DEVICE_SEED = os.urandom(32)
HOST_SEED = os.urandom(32)
IDENTITY = DeviceIdentity("D-BENCH-1", "HIS-POS-1", "BENCH1", "bench", ("pay", "refund", "flash"))


def _pair() -> tuple[Link, Link]:
    host = Link(Role.HOST, host=HostHandshake({IDENTITY.device_id: signing.public_key(DEVICE_SEED)}.get, HOST_SEED,
                                              lambda: b'{"bridge":"his-bridge","clock":1795000000}'))
    device = Link(Role.DEVICE, device=DeviceHandshake(IDENTITY, DEVICE_SEED,
                                                      HostTrust(bridges=frozenset({signing.public_key(HOST_SEED)}))))
    return host, device


def _handshake() -> tuple[Link, Link, int]:
    host, device = _pair()
    host.start(0.0)
    device.start(0.0)
    wire = 0
    for _ in range(3):
        out = host.data_to_send()
        wire += len(out)
        device.receive_bytes(out, 0.0)
        back = device.data_to_send()
        wire += len(back)
        host.receive_bytes(back, 0.0)
    assert host.state is LinkState.UP and device.state is LinkState.UP
    return host, device, wire


def _exchange_us(host: Link, device: Link, payload: bytes, n: int) -> float:
    """One DATA frame sealed by the host, opened and ACKed by the device, the ACK checked by the host."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        host.send(FrameType.DATA, payload, 0.0)
        device.receive_bytes(host.data_to_send(), 0.0)
        host.receive_bytes(device.data_to_send(), 0.0)
        times.append(time.perf_counter_ns() - t0)
    assert host.in_flight == 0
    return statistics.median(times) / 1000


def _bare_us(payload: bytes, n: int) -> float:
    """Baseline: the same frame and ACK encoded and decoded with no keys (framing and CRCs only)."""
    decoder = FrameDecoder()
    times = []
    for seq in range(n):
        t0 = time.perf_counter_ns()
        decoder.feed(encode_frame(FrameType.DATA, seq % 65536, payload))
        decoder.feed(encode_frame(FrameType.ACK, seq % 65536))
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000


def run(quick: bool) -> dict[str, object]:
    rounds = 20 if quick else 200
    n = 500 if quick else 5000
    handshakes = []
    wire_bytes = 0
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        host, device, wire_bytes = _handshake()
        handshakes.append((time.perf_counter_ns() - t0) / 1e6)
    figures: dict[str, float] = {
        "handshake_ms_p50": round(statistics.median(handshakes), 2),
        "handshake_ms_max": round(max(handshakes), 2),
        "handshake_wire_bytes": wire_bytes,
        "handshake_wire_ms_115200": round(wire_time_s(wire_bytes, 115_200) * 1000, 1),
        "added_bytes_per_data_frame": TAG_SIZE,
        "added_bytes_per_ack_frame": TAG_SIZE,
        "frame_overhead_bytes_with_auth": OVERHEAD + TAG_SIZE,
    }
    baseline: dict[str, float] = {}
    for label, size in (("300B", 300), ("16KiB", 16 * 1024)):
        payload = os.urandom(size)
        figures[f"authenticated_exchange_us_{label}"] = round(_exchange_us(host, device, payload, n // (4 if size > 1000 else 1)), 1)
        baseline[f"bare_frame_and_ack_us_{label}"] = round(_bare_us(payload, n // (4 if size > 1000 else 1)), 1)
        figures[f"auth_cost_us_{label}"] = round(figures[f"authenticated_exchange_us_{label}"] - baseline[f"bare_frame_and_ack_us_{label}"], 1)
    targets = {"handshake_ms_p50": "<= 50 (well under the 1 s handshake retry)",
               "auth_cost_us_300B": "<= 100 (under 1% of the 26 ms a 300-byte frame takes at 115200 baud)",
               "added_bytes_per_data_frame": "<= 16"}
    met = {"handshake_ms_p50": figures["handshake_ms_p50"] <= 50,
           "auth_cost_us_300B": figures["auth_cost_us_300B"] <= 100,
           "added_bytes_per_data_frame": figures["added_bytes_per_data_frame"] <= 16}
    return {"figures": figures, "baseline": baseline, "targets": targets, "met": met}
