"""The link's security, sans-I/O: what a man-in-the-middle on the cable can and cannot do after the
handshake, and what a host whose key the device does not pin gets (nothing)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import signing
from protocol.link.decoder import FrameDecoder
from protocol.link.frame import FrameType, NakReason, encode_frame
from protocol.link.handshake import HostRole, HostTrust
from protocol.link.secure import frame_nonce, reconstruct_counter
from protocol.link.session import HandshakeRefused, LinkNotUp, LinkState, LinkTimers, LinkUp
from tests.budget import examples
from tests.protocol.link.harness import HOST_SEED, both_up, make_pair, run, send


def started(seed=0, **kw):
    host, device = make_pair(seed, **kw)
    host.handle(host.link.start(0.0))
    device.handle(device.link.start(0.0))
    t = run(host, device, 5)
    assert both_up(host, device)
    return host, device, t


def frames(data: bytes):
    return FrameDecoder().feed(data)


def test_the_device_learns_the_hosts_pinned_role():
    host, device, _ = started()
    assert device.link.host_peer is not None
    assert device.link.host_peer.role is HostRole.BRIDGE
    assert device.link.host_peer.public_key == signing.public_key(HOST_SEED)


def test_nothing_sent_after_the_handshake_is_readable_on_the_wire():
    host, device, t = started()
    send(host, b'{"kind":"instruction","amount":"+88.00"}', t)
    wire = host.link.data_to_send()
    assert b"+88.00" not in wire and b"instruction" not in wire
    device.handle(device.link.receive_bytes(wire, t))
    assert device.received == [b'{"kind":"instruction","amount":"+88.00"}']


def test_an_injected_frame_with_valid_crcs_is_dropped_and_counted():
    host, device, t = started()
    # The attacker knows the framing and the next sequence number, not the keys.
    device.handle(device.link.receive_bytes(encode_frame(FrameType.DATA, 0, b'{"kind":"result"}' + bytes(16)), t))
    assert device.received == [] and device.link.stats.rejected_frames == 1
    assert device.link.data_to_send() == b""  # not acknowledged either
    send(host, b"genuine", t)
    device.handle(device.link.receive_bytes(host.link.data_to_send(), t))
    assert device.received == [b"genuine"]


def test_a_replaced_payload_is_dropped_and_the_genuine_one_still_arrives():
    host, device, t = started()
    send(device, b"SUCCESS +30.00", t)
    (frame,) = frames(device.link.data_to_send())
    body = bytearray(frame.payload)
    body[0] ^= 0x20  # flip one bit of the ciphertext, CRCs recomputed
    host.handle(host.link.receive_bytes(encode_frame(frame.type, frame.seq, bytes(body)), t))
    assert host.received == [] and host.link.stats.rejected_frames == 1
    run(host, device, 60, t0=t + 0.01)  # the device retransmits the genuine frame
    assert host.received == [b"SUCCESS +30.00"] and device.delivered == [b"SUCCESS +30.00"]


def test_suppress_and_acknowledge_fails_the_result_stays_with_the_device():
    host, device, t = started()
    send(device, b"result", t)
    (frame,) = frames(device.link.data_to_send())  # the attacker swallows it...
    forged_ack = encode_frame(FrameType.ACK, frame.seq, bytes(16))  # ...and acknowledges it
    device.handle(device.link.receive_bytes(forged_ack, t))
    assert device.delivered == [] and device.link.stats.rejected_frames == 1
    # An empty ACK (the version 1 form) or a forged NAK "too large" do no better.
    device.handle(device.link.receive_bytes(encode_frame(FrameType.ACK, frame.seq, b""), t))
    device.handle(device.link.receive_bytes(encode_frame(FrameType.NAK, frame.seq, bytes([NakReason.TOO_LARGE]) + bytes(16)), t))
    assert device.delivered == [] and device.link.in_flight == 1
    run(host, device, 60, t0=t + 0.01)
    assert host.received == [b"result"] and device.delivered == [b"result"]


def test_an_ack_recorded_in_an_earlier_session_does_not_count():
    host, device, t = started()
    send(device, b"first", t)
    host.handle(host.link.receive_bytes(device.link.data_to_send(), t))
    recorded_ack = host.link.data_to_send()  # ACK of frame 0, session 1
    device.handle(device.link.receive_bytes(recorded_ack, t))
    assert device.delivered == [b"first"]
    host.handle(host.link.start(t))  # a new session: new keys, sequence numbers from 0 again
    t = run(host, device, 10, t0=t)
    assert both_up(host, device)
    send(device, b"second", t)
    device.link.data_to_send()  # swallowed; the attacker replays the old ACK of frame 0
    device.handle(device.link.receive_bytes(recorded_ack, t))
    assert device.delivered == [b"first"] and device.link.stats.rejected_frames == 1


def test_a_duplicate_is_acknowledged_again_and_a_reordered_frame_is_dropped():
    host, device, t = started()
    send(host, b"m0", t)
    send(host, b"m1", t)
    f0, f1 = frames(host.link.data_to_send())
    device.handle(device.link.receive_bytes(f1.encode(), t))  # ahead of m0: held back by the attacker
    assert device.received == [] and device.link.stats.reordered == 1 and device.link.data_to_send() == b""
    device.handle(device.link.receive_bytes(f0.encode() + f0.encode(), t))
    assert device.received == [b"m0"] and device.link.stats.duplicates == 1
    assert len(frames(device.link.data_to_send())) == 2  # the duplicate is acknowledged again
    device.handle(device.link.receive_bytes(f1.encode(), t))
    assert device.received == [b"m0", b"m1"]


def test_a_rogue_host_gets_no_session_and_no_result():
    rogue, device = make_pair(host_seed=bytes(range(1, 33)))  # a PC with a key of its own, not pinned
    rogue.handle(rogue.link.start(0.0))
    device.handle(device.link.start(0.0))
    refusals = []
    t = 0.0
    for _ in range(20):
        device.handle(device.link.receive_bytes(rogue.link.data_to_send(), t))
        events = device.link.receive_bytes(b"", t)
        refusals += [e for e in events if isinstance(e, HandshakeRefused)]
        rogue.handle(rogue.link.receive_bytes(device.link.data_to_send(), t))
        rogue.handle(rogue.link.poll(t))
        device.handle(device.link.poll(t))
        t += 0.05
    assert device.link.state is LinkState.HANDSHAKE and device.ups == 0
    assert device.link.stats.refused_handshakes >= 1
    with pytest.raises(LinkNotUp):
        device.link.send(FrameType.DATA, b"result", t)


def test_a_device_that_pins_no_host_refuses_every_host():
    host, device = make_pair(trust=HostTrust())
    host.handle(host.link.start(0.0))
    device.handle(device.link.start(0.0))
    run(host, device, 20)
    assert device.ups == 0 and device.link.stats.refused_handshakes >= 1


def test_a_maintenance_key_opens_a_maintenance_session():
    seed = bytes(range(7, 39))
    trust = HostTrust(maintenance=frozenset({signing.public_key(seed)}))
    host, device = make_pair(host_seed=seed, trust=trust)
    host.handle(host.link.start(0.0))
    device.handle(device.link.start(0.0))
    ups = []
    original = device.handle
    device.handle = lambda events: (ups.extend(e for e in events if isinstance(e, LinkUp)), original(events))
    run(host, device, 10)
    assert ups and ups[0].host is not None and ups[0].host.role is HostRole.MAINTENANCE


def test_sequence_numbers_wrap_without_reusing_a_nonce():
    host, device, t = started(timers=LinkTimers(window=8))
    host.link._tx_counter = device.link._rx_expected = 0xFFFE  # fast-forward both ends of one direction
    for i in range(4):
        send(host, b"m%d" % i, t)
    run(host, device, 10, t0=t)
    assert device.received == [b"m0", b"m1", b"m2", b"m3"]
    assert host.link._tx_counter == 0x10002


@pytest.mark.parametrize(("seq", "expected", "full"), [
    (0, 0, 0), (5, 3, 5), (0xFFFF, 0, 0xFFFF), (0, 0xFFFF, 0x10000), (0xFFFE, 0x10001, 0xFFFE), (3, 0x10000, 0x10003),
])
def test_counter_reconstruction(seq, expected, full):
    assert reconstruct_counter(seq, expected) == full


def test_nonces_never_collide_across_frame_kinds():
    assert len({frame_nonce(t, a, c) for t in (FrameType.DATA, FrameType.ACK, FrameType.NAK, 0x80) for a in (0, 1, 3)
                for c in (0, 1, 0x10000)}) == 4 * 3 * 3


@settings(max_examples=examples(60), deadline=None)
@given(st.data())
def test_any_tampering_with_a_sealed_frame_is_rejected(data):
    """Whatever the attacker changes in a sealed frame (payload bytes, seq, type), with CRCs made good
    again, it is never delivered and never acknowledged."""
    host, device, t = started()
    send(host, b"instruction +12.50", t)
    (frame,) = frames(host.link.data_to_send())
    payload = bytearray(frame.payload)
    index = data.draw(st.integers(0, len(payload) - 1))
    payload[index] ^= data.draw(st.integers(1, 255))
    seq = data.draw(st.sampled_from([frame.seq, frame.seq + 1, 0xFFFF]))
    ftype = data.draw(st.sampled_from([FrameType.DATA, 0x80, 0xBF]))
    device.handle(device.link.receive_bytes(encode_frame(ftype, seq, bytes(payload)), t))
    assert device.received == [] and device.link.data_to_send() == b""
    assert device.link.stats.rejected_frames == 1


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.tuples(st.sampled_from([FrameType.DATA, FrameType.ACK, FrameType.NAK, 0x81]),
                          st.integers(0, 0xFFFF), st.binary(max_size=64)), max_size=8))
def test_injected_frames_never_deliver_or_acknowledge_anything(injected):
    host, device, t = started()
    send(device, b"result", t)
    device.link.data_to_send()  # swallowed by the attacker
    for ftype, seq, payload in injected:
        device.handle(device.link.receive_bytes(encode_frame(ftype, seq, payload), t))
    assert device.received == [] and device.delivered == []
    assert device.link.state is LinkState.UP and device.link.in_flight == 1


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(0, 2), st.data())
def test_an_altered_handshake_never_brings_a_session_up(which, data):
    """A man in the middle who changes any byte of HELLO_REQUEST, HELLO or HELLO_ACK (CRCs made
    good again) gets no session: the side that checks the altered part refuses it, or the two ends
    end up with different keys and nothing authenticates. Either way nothing is delivered."""
    host, device = make_pair(seed=data.draw(st.integers(0, 1000)))
    host.handle(host.link.start(0.0))
    device.handle(device.link.start(0.0))
    frames_seen = 0
    for _ in range(3):
        for sender, receiver in ((host, device), (device, host)):
            out = sender.link.data_to_send()
            if not out:
                continue
            (frame,) = frames(out)
            if frames_seen == which:
                body = bytearray(frame.payload)
                body[data.draw(st.integers(0, len(body) - 1))] ^= data.draw(st.integers(1, 255))
                out = encode_frame(frame.type, frame.seq, bytes(body))
            frames_seen += 1
            receiver.handle(receiver.link.receive_bytes(out, 0.0))
    assert not both_up(host, device)
    if host.link.state is LinkState.UP:
        send(host, b"instruction", 0.0)
        device.handle(device.link.receive_bytes(host.link.data_to_send(), 0.0))
        assert device.received == []
