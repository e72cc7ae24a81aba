"""The device endpoint and the echo responder, driven by a HOST link over each real wire."""

from __future__ import annotations

import os
import time

import pytest

from protocol import signing
from protocol.amount import parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import receive_result, seal_instruction
from protocol.errors import ErrorCode
from protocol.link.app import InstructionMsg, NotTakenMsg, ProgressMsg, ResultMsg, encode_app
from protocol.link.frame import FrameType, wire_time_s
from protocol.link.handshake import DeviceIdentity, HostTrust
from protocol.link.session import Delivered, LinkDown, LinkTimers, LinkUp, Received
from protocol.messages import Instruction, PayStatus

from terminal.link.endpoint import DeviceEndpoint
from tests.terminal.link.fake_bridge import Host as FakeBridge
from firmware_sim.wires import PtyWire, UsbWire
from terminal.link.tcp_wire import TcpWire
from firmware_sim.responder import Responder, ResponderMode

TIMERS = LinkTimers(rto_base_s=0.1, keepalive_s=0.5, dead_after_s=3.0, hello_retry_s=0.2)
KEY = SharedKey("k1", "AES-256-GCM", bytes(range(32)))
SEED = bytes(range(100, 132))
HOST_SEED = bytes(range(150, 182))
HOST_TRUST = HostTrust(bridges=frozenset({signing.public_key(HOST_SEED)}))
IDENTITY = DeviceIdentity("D1", "SIM-POS", "SN-1", "1.2.3")


def bridge_to(endpoint: DeviceEndpoint) -> FakeBridge:
    return FakeBridge(endpoint, device_id="D1", device_key_seed=SEED, host_seed=HOST_SEED, timers=TIMERS,
                      host_info=b'{"clock":1}')


def instruction(msg_id: str, terminal: str = "T1", amount: str = "+12.50", key: SharedKey = KEY) -> InstructionMsg:
    plain = Instruction(terminal, "MZ1", parse_amount(amount))
    return InstructionMsg(seal_instruction(plain, key=key, msg_id=msg_id, ts=int(time.time()), nonce=os.urandom(12)))


def make(wire_kind: str, handler, **kwargs) -> DeviceEndpoint:
    wire = {"pty": PtyWire, "tcp": TcpWire, "usb": UsbWire}[wire_kind]()
    return DeviceEndpoint(wire, handler, identity=IDENTITY, device_key_seed=SEED, host_trust=HOST_TRUST, timers=TIMERS,
                          **kwargs).start()


@pytest.mark.parametrize("wire_kind", ["pty", "tcp", "usb"])
def test_handshake_instruction_result_and_ack_over_each_wire(wire_kind: str) -> None:
    responder = Responder(KeyRing([KEY]), "D1", device_key_seed=SEED)
    endpoint = make(wire_kind, responder)
    host = bridge_to(endpoint)
    try:
        host.pump(lambda: any(isinstance(e, LinkUp) for e in host.events))
        up = next(e for e in host.events if isinstance(e, LinkUp))
        assert up.peer == IDENTITY
        host.link.send(FrameType.DATA, encode_app(instruction("M1")), time.monotonic(), tag="M1")
        host.flush()
        host.pump(lambda: any(isinstance(m, ResultMsg) for m in host.messages()))
        result = next(m for m in host.messages() if isinstance(m, ResultMsg))
        received = receive_result(result.envelope.to_json_obj(), KeyRing([KEY]), now=time.time())
        assert received.envelope.reply_to == "M1" and received.message.pay_status is PayStatus.SUCCESS
        assert received.message.pay_order_no.startswith("ECHO-")
        host.pump(lambda: responder.pending_answers == 0)  # our ACK reached it: the device may forget
        assert endpoint.host_info == b'{"clock":1}' and endpoint.link_up
        assert any(isinstance(e, Delivered) and e.tag == "M1" for e in host.events)
    finally:
        host.close()
        endpoint.stop()


def test_an_unacknowledged_result_is_sent_again_after_the_link_restarts() -> None:
    responder = Responder(KeyRing([KEY]), "D1", device_key_seed=SEED)
    endpoint = make("tcp", responder)
    host = bridge_to(endpoint)
    try:
        host.pump(lambda: host.link.state.value == "up")
        host.link.send(FrameType.DATA, encode_app(instruction("M1")), time.monotonic(), tag="M1")
        host.flush()
        host.pump(lambda: any(isinstance(m, ResultMsg) for m in host.messages()), ack=False)
        assert responder.pending_answers == 1
        host.close()  # the bridge "crashes" before its ACK left
        host = bridge_to(endpoint)
        host.pump(lambda: any(isinstance(m, ResultMsg) for m in host.messages()))
        host.pump(lambda: responder.pending_answers == 0)
        assert responder.executions["M1"] == 1
        # The bridge re-sends the instruction (always safe): the device answers from storage.
        host.link.send(FrameType.DATA, encode_app(instruction("M1")), time.monotonic(), tag="again")
        host.flush()
        host.pump(lambda: sum(isinstance(m, ResultMsg) for m in host.messages()) == 2)
        assert responder.executions["M1"] == 1 and responder.received["M1"] == 2
    finally:
        host.close()
        endpoint.stop()


def test_refusals_silence_and_release() -> None:
    responder = Responder(KeyRing([KEY]), "D1", device_key_seed=SEED, terminals={"T1"})
    endpoint = make("tcp", responder)
    host = bridge_to(endpoint)
    try:
        host.pump(lambda: host.link.state.value == "up")
        wrong_key = SharedKey("k1", "AES-256-GCM", os.urandom(32))
        for message in (instruction("BAD-KEY", key=wrong_key), instruction("OTHER-T", terminal="T9")):
            host.link.send(FrameType.DATA, encode_app(message), time.monotonic())
        responder.mode = ResponderMode.SILENT
        host.link.send(FrameType.DATA, encode_app(instruction("HELD")), time.monotonic())
        host.flush()
        host.pump(lambda: sum(isinstance(m, (NotTakenMsg, ProgressMsg, ResultMsg)) for m in host.messages()) == 3)
        # A key it does not share cannot be answered with a sealed result: NotTaken, which ends nothing.
        assert {m.msg_id: m.code for m in host.messages() if isinstance(m, NotTakenMsg)} == {"BAD-KEY": ErrorCode.AUTH_FAILED}
        # A refusal it can seal is a result signed by the device (his-interface 1.1 A).
        (refusal,) = [m for m in host.messages() if isinstance(m, ResultMsg)]
        result = receive_result(refusal.envelope, KeyRing([KEY]), now=time.time(), device_keys={"D1": signing.public_key(SEED)}.get).message
        assert (refusal.envelope.reply_to, result.pay_status.value, result.error_code) == ("OTHER-T", "FAILED", "unknown_terminal")
        responder.release()
        host.pump(lambda: sum(isinstance(m, ResultMsg) for m in host.messages()) == 2)
        assert responder.executions == {"HELD": 1}
    finally:
        host.close()
        endpoint.stop()


class BootRecorder:
    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.delivered: list[object] = []

    def on_boot_frame(self, frame_type: int, payload: bytes, endpoint: DeviceEndpoint) -> None:
        self.frames.append((frame_type, payload))
        endpoint.send_boot(frame_type + 1, b"ok:" + payload[:8], tag=("boot-reply", frame_type))

    def on_delivered(self, tag: object, endpoint: DeviceEndpoint) -> None:
        self.delivered.append(tag)

    def on_link_down(self, unacked: tuple[object, ...], endpoint: DeviceEndpoint) -> None:
        pass


def test_bootloader_frames_go_to_the_boot_handler_and_pacing_follows_the_baud_rate() -> None:
    boot = BootRecorder()
    endpoint = make("pty", Responder(KeyRing([KEY]), "D1", device_key_seed=SEED), boot_handler=boot, baud=115200)
    host = bridge_to(endpoint)
    try:
        host.pump(lambda: host.link.state.value == "up")
        image = os.urandom(4000)
        started = time.monotonic()
        host.link.send(0x81, image, time.monotonic())
        host.flush()
        host.pump(lambda: any(isinstance(e, Received) and e.type == 0x82 for e in host.events))
        elapsed = time.monotonic() - started
        assert boot.frames == [(0x81, image)]
        assert elapsed >= wire_time_s(len(image) + 14, 115200)  # 4 KB cannot cross a 115200 baud line faster
        host.pump(lambda: boot.delivered == [("boot-reply", 0x81)])
        with pytest.raises(ValueError):
            endpoint.send_boot(FrameType.DATA, b"")
    finally:
        host.close()
        endpoint.stop()


def test_link_down_reaches_the_handler_with_the_unacknowledged_tags() -> None:
    class Recorder(Responder):
        downs: list[tuple[object, ...]]

        def on_link_down(self, unacked, endpoint) -> None:
            self.downs.append(unacked)

    responder = Recorder(KeyRing([KEY]), "D1", device_key_seed=SEED)
    responder.downs = []
    endpoint = make("usb", responder)
    host = bridge_to(endpoint)
    try:
        host.pump(lambda: host.link.state.value == "up")
        host.link.send(FrameType.DATA, encode_app(instruction("M1")), time.monotonic())
        host.flush()
        host.pump(lambda: any(isinstance(m, ResultMsg) for m in host.messages()), ack=False)
        endpoint.unplug()
        assert responder.downs and responder.downs[-1] == ("M1",)
        assert not endpoint.link_up
        host.close()
        endpoint.replug()
        host = bridge_to(endpoint)
        host.pump(lambda: any(isinstance(m, ResultMsg) for m in host.messages()))
        host.pump(lambda: responder.pending_answers == 0)
        assert responder.executions["M1"] == 1
    finally:
        host.close()
        endpoint.stop()


class FlakyOnce(Responder):
    """Fails the first time it handles an instruction, as a bug or a full disk would."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.failures = 0

    def on_instruction(self, envelope, endpoint) -> None:
        if self.failures == 0:
            self.failures += 1
            raise OSError("disk full")
        super().on_instruction(envelope, endpoint)


def test_a_failing_handler_does_not_acknowledge_what_it_did_not_handle_and_the_endpoint_lives_on() -> None:
    responder = FlakyOnce(KeyRing([KEY]), "D1", device_key_seed=SEED)
    endpoint = make("tcp", responder)
    host = bridge_to(endpoint)
    try:
        host.pump(lambda: host.link.state.value == "up")
        host.link.send(FrameType.DATA, encode_app(instruction("M1")), time.monotonic(), tag="M1")
        host.flush()
        # The device restarts the session instead of acknowledging: the bridge gets M1 back as unacknowledged.
        host.pump(lambda: any(isinstance(e, LinkDown) and "M1" in e.unacked for e in host.events))
        assert not any(isinstance(e, Delivered) and e.tag == "M1" for e in host.events)
        host.pump(lambda: host.link.state.value == "up")
        host.link.send(FrameType.DATA, encode_app(instruction("M1")), time.monotonic(), tag="M1 again")
        host.flush()
        host.pump(lambda: any(isinstance(m, ResultMsg) for m in host.messages()))
        assert responder.failures == 1 and responder.executions["M1"] == 1
    finally:
        host.close()
        endpoint.stop()
