"""Issue 14, finer withheld ACK (docs/link-protocol.md §7): the receiver's owner could not keep a
message (its journal cannot be written), so `Link.refuse` withdraws that frame's ACK, and those of
the frames after it in the same read, before they reach the wire. The sender retransmits on the same
session and the frame is delivered anew, not taken for a duplicate; nothing is lost or doubled."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.link.frame import FrameType
from protocol.link.session import LinkState, Received
from tests.budget import examples
from tests.protocol.link.harness import run, send
from tests.protocol.link.test_session import started

ACK = bytes([0xA5, 0x5A, 0x01, FrameType.ACK])


def test_a_refused_frame_is_not_acknowledged_and_is_delivered_again_on_the_same_session() -> None:
    host, device, t = started()
    send(device, b"result-1", t)
    events = host.link.receive_bytes(device.link.data_to_send(), t)
    [got] = [e for e in events if isinstance(e, Received)]
    assert got.payload == b"result-1"
    assert host.link.refuse(got.counter)  # the journal could not take it
    assert ACK not in host.link.data_to_send()  # no ACK on the wire
    assert host.link.stats.refused == 1
    run(host, device, 60, t0=t)  # the device retransmits after its timeout; this time it is kept
    assert host.received == [b"result-1"] and host.link.stats.duplicates == 0
    assert device.delivered == [b"result-1"] and device.link.stats.retransmissions >= 1
    assert host.ups == device.ups == 1 and host.link.state is LinkState.UP  # the same session


def test_frames_after_a_refused_one_in_the_same_read_are_refused_with_it() -> None:
    host, device, t = started()
    for i in range(4):
        send(device, b"m%d" % i, t)
    events = [e for e in host.link.receive_bytes(device.link.data_to_send(), t) if isinstance(e, Received)]
    assert [e.payload for e in events] == [b"m0", b"m1", b"m2", b"m3"]
    host.received += [b"m0"]  # the owner kept m0, could not keep m1: m2, m3 are ignored with it
    assert host.link.refuse(events[1].counter)
    assert host.link.data_to_send().count(ACK) == 1  # m0's ACK only
    run(host, device, 80, t0=t)
    assert host.received == [b"m0", b"m1", b"m2", b"m3"]
    assert sorted(device.delivered) == [b"m0", b"m1", b"m2", b"m3"]


def test_an_ack_already_on_the_wire_cannot_be_refused() -> None:
    host, device, t = started()
    send(device, b"late", t)
    [got] = [e for e in host.link.receive_bytes(device.link.data_to_send(), t) if isinstance(e, Received)]
    assert ACK in host.link.data_to_send()
    assert not host.link.refuse(got.counter)  # the owner must end the session instead


@settings(max_examples=examples(40), deadline=None)
@given(refusals=st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=12), n=st.integers(min_value=1, max_value=6))
def test_refusing_any_pattern_loses_and_doubles_nothing(refusals: list[int], n: int) -> None:
    """Whatever the owner refuses, every message is kept exactly once and in order. A message refused
    more often than the sender tries ends the session; the sender's owner sends what came back
    unacknowledged (LinkDown.unacked) again after the next link-up, as the POS does with results."""
    host, device, t = started()
    kept: list[bytes] = []
    budget = list(refusals)

    def take(events) -> None:
        for e in events:
            if isinstance(e, Received):
                if budget and budget[0] > 0 and host.link.refuse(e.counter):
                    budget[0] -= 1
                    return  # the rest of this read is refused with it
                if budget:
                    budget.pop(0)
                if e.payload not in kept:  # the owner's dedupe by msg_id (a resend after a new link-up)
                    kept.append(e.payload)
            else:
                host.handle([e])

    for i in range(n):
        send(device, b"msg-%d" % i, t)
    for _ in range(2000):
        chunk = device.link.data_to_send()
        if chunk:
            take(host.link.receive_bytes(chunk, t))
        device.handle(device.link.receive_bytes(host.link.data_to_send(), t))
        take(host.link.poll(t))
        device.handle(device.link.poll(t))
        if device.lost and device.link.state is LinkState.UP:
            for payload in device.lost:
                send(device, payload, t)
            device.lost.clear()
        t += 0.05
        if len(kept) == n and not device.lost and len(set(device.delivered)) == n:
            break
    assert kept == [b"msg-%d" % i for i in range(n)]
    assert set(device.delivered) == set(kept)
