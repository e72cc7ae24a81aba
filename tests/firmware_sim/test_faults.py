"""Fault descriptions and the byte filter: parsing with clear refusals, exact "next N bytes", and a
faulty wire between a real TCP socket and the device endpoint's view of it."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.link.tcp_wire import TcpWire
from terminal.link.wire import WireReset
from firmware_sim.faults import (
    ByteFault, ByteFaultKind, ByteFilter, ClockSkew, Direction, FaultyWire, PowerCutFault, Unplug, describe_fault, parse_fault,
)
from firmware_sim.simerrors import SimCode, SimError
from terminal.journal import CommitPoint


def refused(spec: object) -> str:
    with pytest.raises(SimError) as info:
        parse_fault(spec)
    assert info.value.code is SimCode.BAD_FAULT
    return info.value.message


def test_parse_each_fault_and_describe_it_back() -> None:
    specs = [
        {"fault": "unplug"}, {"fault": "unplug", "for_s": 1.5}, {"fault": "replug"}, {"fault": "clear"}, {"fault": "power_on"},
        {"fault": "drop", "direction": "to_bridge", "probability": 0.25, "seed": 7},
        {"fault": "corrupt", "direction": "both", "next_bytes": 40},
        {"fault": "duplicate", "direction": "to_device", "next_bytes": 3},
        {"fault": "delay", "direction": "both", "probability": 1.0, "ms": 50},
        {"fault": "power_cut"}, {"fault": "power_cut", "at": "paying", "phase": "before", "off_for_s": 2.0},
        {"fault": "power_cut", "at": "collect:awaiting_scan->paying", "phase": "after"},
        {"fault": "power_cut", "after_bytes": 300, "direction": "to_bridge"},
        {"fault": "clock_skew", "seconds": -3600.0},
    ]
    for spec in specs:
        assert describe_fault(parse_fault(spec)) == spec
    assert parse_fault({"fault": "delay", "ms": 5}) == ByteFault(ByteFaultKind.DELAY, Direction.BOTH, 1.0, None, 5)
    assert parse_fault({"fault": "clock_skew", "seconds": 60}) == ClockSkew(60.0)
    assert parse_fault({"fault": "unplug"}) == Unplug(None)


def test_bad_faults_are_refused_with_what_is_wrong() -> None:
    assert "unknown fault 'earthquake'" in refused({"fault": "earthquake"})
    assert "a fault is a JSON object" in refused(["unplug"])
    assert "takes no field 'seconds'" in refused({"fault": "unplug", "seconds": 3})
    assert "exactly one of probability" in refused({"fault": "drop"})
    assert "exactly one of probability" in refused({"fault": "drop", "probability": 0.1, "next_bytes": 3})
    assert "probability must be from 0 to 1" in refused({"fault": "corrupt", "probability": 1.5})
    assert "must be a number" in refused({"fault": "corrupt", "probability": True})
    assert "whole number" in refused({"fault": "drop", "next_bytes": 2.5})
    assert "direction must be one of" in refused({"fault": "drop", "probability": 0.1, "direction": "sideways"})
    assert "delay needs ms" in refused({"fault": "delay"})
    assert "not a state" in refused({"fault": "power_cut", "at": "dancing"})
    assert "not a journal commit label" in refused({"fault": "power_cut", "at": "collect:PAYING"})
    assert "not both" in refused({"fault": "power_cut", "at": "paying", "after_bytes": 3})
    assert "phase must be" in refused({"fault": "power_cut", "at": "paying", "phase": "during"})
    assert "phase applies only with at" in refused({"fault": "power_cut", "phase": "after"})
    assert "direction applies only with after_bytes" in refused({"fault": "power_cut", "direction": "both"})
    assert "clock_skew needs seconds" in refused({"fault": "clock_skew"})
    assert "must be from" in refused({"fault": "unplug", "for_s": -1})


def test_power_cut_matches_states_and_exact_labels() -> None:
    by_state = parse_fault({"fault": "power_cut", "at": "paying"})
    by_label = parse_fault({"fault": "power_cut", "at": "refund:awaiting_supervisor->refunding", "phase": "before"})
    assert isinstance(by_state, PowerCutFault) and isinstance(by_label, PowerCutFault)
    assert by_state.matches(CommitPoint(3, "collect:awaiting_scan->paying", "after"))
    assert by_state.matches(CommitPoint(9, "collect:declined->paying", "after"))
    assert not by_state.matches(CommitPoint(3, "collect:awaiting_scan->paying", "before"))
    assert not by_state.matches(CommitPoint(4, "collect:paying->finished", "after"))
    assert by_label.matches(CommitPoint(5, "refund:awaiting_supervisor->refunding", "before"))
    assert not by_label.matches(CommitPoint(5, "refund:refunding->finished", "before"))


@given(data=st.binary(min_size=0, max_size=300), n=st.integers(1, 200), split=st.integers(1, 50))
def test_next_bytes_affects_exactly_n_bytes_whatever_the_chunking(data: bytes, n: int, split: int) -> None:
    for kind in (ByteFaultKind.DROP, ByteFaultKind.CORRUPT, ByteFaultKind.DUPLICATE):
        filt = ByteFilter()
        filt.add(ByteFault(kind, next_bytes=n, seed=1))
        out = b"".join(filt.apply(data[i:i + split])[0] for i in range(0, len(data), split))
        hit = min(n, len(data))
        if kind is ByteFaultKind.DROP:
            assert out == data[hit:] and filt.stats.dropped == hit
        elif kind is ByteFaultKind.CORRUPT:
            assert len(out) == len(data) and out[hit:] == data[hit:]
            assert all(a != b for a, b in zip(out[:hit], data[:hit])) and filt.stats.corrupted == hit
        else:
            assert out == b"".join(bytes((b, b)) for b in data[:hit]) + data[hit:] and filt.stats.duplicated == hit
        assert (filt.faults == []) == (len(data) >= n)  # spent faults go away


@given(seed=st.integers(0, 2**32), p=st.floats(0.0, 1.0))
def test_probabilistic_faults_are_reproducible_from_their_seed(seed: int, p: float) -> None:
    data = bytes(range(256)) * 4
    outs = []
    for _ in range(2):
        filt = ByteFilter()
        filt.add(ByteFault(ByteFaultKind.CORRUPT, probability=p, seed=seed))
        filt.add(ByteFault(ByteFaultKind.DROP, probability=p / 2, seed=seed + 1))
        outs.append(filt.apply(data)[0])
    assert outs[0] == outs[1]
    if p == 0.0:
        assert outs[0] == data


def test_delay_holds_chunks_for_the_next_bytes_only() -> None:
    filt = ByteFilter()
    filt.add(ByteFault(ByteFaultKind.DELAY, next_bytes=10, delay_ms=40))
    assert filt.apply(b"x" * 6) == (b"x" * 6, 0.04)
    assert filt.apply(b"y" * 6) == (b"y" * 6, 0.04)
    assert filt.apply(b"z" * 6) == (b"z" * 6, 0.0)
    assert filt.stats.delayed_chunks == 2


class _Host:
    """The bridge's end of a TCP wire: a plain socket."""

    def __init__(self, wire: TcpWire) -> None:
        self.sock = socket.create_connection(wire.address, timeout=5)
        self.sock.settimeout(0.5)

    def read_all(self, want: int, timeout: float = 3.0) -> bytes:
        got, deadline = b"", time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                break
            got += chunk
        return got


def _device_read(wire: FaultyWire, timeout: float = 2.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = wire.read(4096, 0.05)
        except WireReset:
            continue  # the host's connection was accepted
        if data:
            return data
    return b""


def test_faulty_wire_filters_each_direction_and_cuts_after_a_byte_budget() -> None:
    cuts: list[PowerCutFault] = []
    wire = FaultyWire(TcpWire(), on_budget_spent=cuts.append)
    host = _Host(wire.inner)  # type: ignore[arg-type]  # the inner wire is the TcpWire this test made
    try:
        wire.add(ByteFault(ByteFaultKind.DROP, Direction.TO_DEVICE, next_bytes=2))
        host.sock.sendall(b"abcdef")
        assert _device_read(wire) == b"cdef"
        wire.add(ByteFault(ByteFaultKind.DUPLICATE, Direction.TO_BRIDGE, next_bytes=3))
        wire.write(b"xyz!")
        assert host.read_all(7) == b"xxyyzz!"
        budget = parse_fault({"fault": "power_cut", "after_bytes": 5, "direction": "to_bridge"})
        assert isinstance(budget, PowerCutFault)
        wire.arm_budget(budget)
        wire.write(b"123")
        wire.write(b"4567890")
        assert host.read_all(10, timeout=0.5) == b"12345"  # the rest never left: the power was gone
        assert cuts == [budget] and wire.silent
        wire.write(b"more")
        host.sock.sendall(b"ignored")
        assert host.read_all(1, timeout=0.3) == b"" and wire.read(100, 0.05) == b""
        status = wire.describe()
        assert status["to_device"]["stats"]["dropped"] == 2 and status["to_bridge"]["stats"]["duplicated"] == 3
        wire.unsilence()
        wire.write(b"back")
        assert host.read_all(4) == b"back"
    finally:
        host.sock.close()
        wire.close(final=True)
