"""The reliable link state machine: handshake, acknowledgements, retransmission, duplicates,
keepalive, resets, and what the application is told when something could not be delivered."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import signing
from protocol.link.frame import FrameType, NakReason, encode_frame
from protocol.link.session import HandshakeRefused, LinkNotUp, LinkState, LinkTimers, Received
from tests.protocol.link.harness import IDENTITY, Faults, both_up, make_pair, run, send
from tests.budget import examples


def started(seed=0, **kw):
    host, device = make_pair(seed, **kw)
    host.handle(host.link.start(0.0))
    device.handle(device.link.start(0.0))
    t = run(host, device, 5)
    assert both_up(host, device)
    return host, device, t


def test_handshake_proves_the_device_and_brings_both_sides_up():
    host, device, _ = started()
    assert host.link.peer == IDENTITY
    assert host.ups == device.ups == 1


def test_a_device_with_the_wrong_key_gets_nothing():
    host, device = make_pair(device_seed=bytes(32))  # valid device_id, wrong key
    refused = []
    host.link.start(0.0)
    device.link.start(0.0)
    for _ in range(3):
        for chunk in [host.link.data_to_send()]:
            device.handle(device.link.receive_bytes(chunk, 0.0))
        events = host.link.receive_bytes(device.link.data_to_send(), 0.0)
        refused += [e for e in events if isinstance(e, HandshakeRefused)]
        host.link.poll(10.0)
    assert refused and "failed the key proof" in refused[0].reason
    assert host.link.state is LinkState.HANDSHAKE and host.link.peer is None
    with pytest.raises(LinkNotUp):
        host.link.send(FrameType.DATA, b"instruction", 0.0)


def test_an_unregistered_device_gets_nothing():
    host, device = make_pair(registry={})
    host.link.start(0.0)
    device.link.start(0.0)
    device.link.receive_bytes(host.link.data_to_send(), 0.0)
    events = host.link.receive_bytes(device.link.data_to_send(), 0.0)
    assert [type(e) for e in events] == [HandshakeRefused]
    assert "not in the device registry" in events[0].reason


def test_a_replayed_hello_does_not_pass_a_new_challenge():
    host, device = make_pair()
    host.link.start(0.0)
    device.link.start(0.0)
    device.link.receive_bytes(host.link.data_to_send(), 0.0)
    recorded = device.link.data_to_send()
    host.link.poll(5.0)  # the host gives up on that attempt and sends a fresh challenge
    host.link.data_to_send()
    events = host.link.receive_bytes(recorded, 5.0)
    assert [type(e) for e in events] == [HandshakeRefused]


def test_messages_both_ways_are_delivered_once_and_acknowledged():
    host, device, t = started()
    for i in range(20):
        send(host, b"to-device-%d" % i, t)
        send(device, b"to-host-%d" % i, t)
    run(host, device, 20, t0=t)
    assert device.received == [b"to-device-%d" % i for i in range(20)]
    assert sorted(host.received) == sorted(b"to-host-%d" % i for i in range(20))
    assert len(host.delivered) == len(device.delivered) == 20


def test_window_limits_frames_in_flight():
    host, device, t = started(timers=LinkTimers(window=3))
    for i in range(10):
        send(host, b"m%d" % i, t)
    wire = host.link.data_to_send()
    assert wire.count(b"\xa5\x5a\x01\x10") == 3
    device.handle(device.link.receive_bytes(wire, t))
    host.handle(host.link.receive_bytes(device.link.data_to_send(), t))
    assert host.link.data_to_send().count(b"\xa5\x5a\x01\x10") == 3


def test_lost_frame_is_retransmitted_after_the_timeout():
    host, device, t = started()
    send(host, b"lost once", t)
    host.link.data_to_send()  # the wire eats it
    host.handle(host.link.poll(t + 0.1))
    assert host.link.data_to_send() == b""  # not yet
    run(host, device, 30, t0=t + 0.4)
    assert device.received == [b"lost once"] and host.link.stats.retransmissions == 1


def test_nak_for_a_corrupted_frame_resends_at_once():
    host, device, t = started()
    send(host, b"corrupt me", t)
    wire = bytearray(host.link.data_to_send())
    wire[-6] ^= 0x01  # inside the payload
    device.handle(device.link.receive_bytes(bytes(wire), t))
    nak = device.link.data_to_send()
    assert nak[3] == FrameType.NAK and nak[10] == NakReason.CORRUPT
    host.handle(host.link.receive_bytes(nak, t))
    device.handle(device.link.receive_bytes(host.link.data_to_send(), t))
    assert device.received == [b"corrupt me"]


def test_a_duplicated_frame_is_acknowledged_again_but_delivered_once():
    host, device, t = started()
    send(host, b"once", t)
    wire = host.link.data_to_send()
    device.handle(device.link.receive_bytes(wire + wire, t))
    assert device.received == [b"once"] and device.link.stats.duplicates == 1
    assert device.link.data_to_send().count(bytes([0xA5, 0x5A, 0x01, FrameType.ACK])) == 2


def test_bounded_tries_then_link_down_with_the_unacked_messages_returned():
    host, device, t = started(timers=LinkTimers(max_tries=3))
    send(host, b"m1", t)
    send(host, b"m2", t)
    # The device is unplugged: nothing comes back.
    for step in range(200):
        host.handle(host.link.poll(t + step * 0.1))
        host.link.data_to_send()
    assert host.downs == 1 and host.lost == [b"m1", b"m2"]
    assert host.link.state is LinkState.HANDSHAKE
    assert host.link.stats.retransmissions == 4  # 2 frames x 2 retries


def test_keepalive_detects_a_silent_peer_and_pings_an_idle_one():
    host, device, t = started()
    run(host, device, 300, t0=t, dt=0.05)  # 15 s idle but both alive: pings keep it up
    assert both_up(host, device) and host.downs == 0
    for step in range(200):
        host.handle(host.link.poll(t + 20 + step * 0.05))
        host.link.data_to_send()
    assert host.downs == 1 and host.down_reasons == ["no frames from the peer for 6 s"]


def test_device_reboot_is_noticed_and_the_session_restarts():
    host, device, t = started()
    # The device restarts: a fresh Link that knows nothing of the session.
    _, fresh = make_pair()
    fresh.link.start(t)
    send(host, b"after reboot", t)
    run(host, fresh, 200, t0=t)
    assert host.downs == 1 and host.lost == [b"after reboot"]
    assert both_up(host, fresh)
    assert send(host, b"resent", t + 5)
    run(host, fresh, 20, t0=t + 5)
    assert fresh.received == [b"resent"]


def test_host_restart_takes_the_device_through_a_new_handshake():
    host, device, t = started()
    new_host, _ = make_pair(seed=9)
    new_host.handle(new_host.link.start(t))
    run(new_host, device, 10, t0=t)
    assert device.downs == 1 and device.ups == 2 and both_up(new_host, device)


def test_stray_frames_before_the_handshake_get_not_ready():
    host, device = make_pair()
    device.link.start(0.0)
    events = device.link.receive_bytes(encode_frame(FrameType.DATA, 0, b"early"), 0.0)
    assert events == []
    nak = device.link.data_to_send()
    assert nak[3] == FrameType.NAK and nak[10] == NakReason.NOT_READY


def test_send_refuses_unreliable_types_and_oversize():
    host, device, t = started()
    with pytest.raises(ValueError):
        host.link.send(FrameType.PING, b"", t)
    with pytest.raises(ValueError):
        host.link.send(FrameType.DATA, bytes(70_000), t)


def test_boot_range_frames_are_reliable():
    host, device, t = started()
    host.link.send(0x81, b"chunk", t, tag="c")
    run(host, device, 5, t0=t)
    assert host.delivered == ["c"]


@settings(max_examples=examples(60), deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    corrupt=st.sampled_from([0.0, 0.05, 0.2]),
    duplicate=st.sampled_from([0.0, 0.1]),
)
def test_under_faults_nothing_is_silently_lost_or_delivered_twice_in_a_session(seed, loss, corrupt, duplicate):
    host, device = make_pair(seed)
    host.link.start(0.0)
    device.link.start(0.0)
    faults = Faults(loss, corrupt, duplicate)
    sent_h, sent_d = [], []
    counter = iter(range(10**6))

    def traffic(t):
        if int(t * 50) % 7 == 0:
            for side, log, prefix in ((host, sent_h, b"h"), (device, sent_d, b"d")):
                payload = prefix + b"%d" % next(counter)
                if send(side, payload, t):
                    log.append(payload)

    t = run(host, device, 1500, faults=faults, seed=seed, each_step=traffic)
    # Then the faults stop: the link must come back and the queues drain.
    run(host, device, 1500, t0=t)
    assert both_up(host, device)
    for sender, receiver, sent in ((host, device, sent_h), (device, host, sent_d)):
        accounted = set(sender.delivered) | set(sender.lost)
        assert accounted == set(sent), "every message is either acknowledged or handed back"
        assert set(sender.delivered) <= set(receiver.received), "acknowledged means received"
        assert receiver.dup_in_session == 0, "never delivered twice within a session"


def test_frames_queued_behind_others_on_a_slow_wire_are_not_retransmitted_early():
    # Eight 16 KiB flash chunks on a paced 115200-baud wire: the last leaves ~11 s after the first.
    timers = LinkTimers(byte_rate=11_520.0)
    host, device, t = started(timers=timers)
    for i in range(8):
        host.link.send(0x81, bytes([i]) * 16_384, t, tag=i)
    wire = bytearray()
    dt = 0.01
    for _ in range(3000):
        wire += host.link.data_to_send()
        n = int(timers.byte_rate * dt)
        chunk, wire[:n] = bytes(wire[:n]), b""
        device.handle(device.link.receive_bytes(chunk, t))
        host.handle(host.link.receive_bytes(device.link.data_to_send(), t))
        host.handle(host.link.poll(t))
        device.handle(device.link.poll(t))
        t += dt
    assert host.delivered == list(range(8))
    assert host.link.stats.retransmissions == 0


def test_a_fast_wire_does_not_inflate_the_timeouts():
    # The wire (a pty, say) is far faster than the configured byte_rate: after a long burst, a lost
    # frame is still retransmitted within about one timeout, not after the imagined backlog.
    timers = LinkTimers(byte_rate=11_520.0)
    host, device, t = started(timers=timers)
    for i in range(400):
        send(host, b"x" * 1000 + b"%d" % i, t)
        run(host, device, 1, t0=t)
    send(host, b"lost", t)
    host.link.data_to_send()  # eaten by the wire
    run(host, device, 100, t0=t + 0.01, dt=0.01)  # one second later
    assert b"lost" in device.received


def test_restarting_a_link_drops_bytes_meant_for_the_old_wire():
    host, device = make_pair()
    host.link.start(0.0)
    for step in range(5):
        host.link.poll(1.0 + step)  # HELLO_REQUESTs pile up while nothing drains the port
    host.link.start(10.0)
    assert host.link.data_to_send().count(b"\xa5\x5a\x01\x01") == 1
    host.link.close()
    assert host.link.data_to_send() == b""
