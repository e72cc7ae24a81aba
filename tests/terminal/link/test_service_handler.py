"""The service on a real device link: DeviceEndpoint over TCP, a HOST link playing the bridge, the
channel sandbox behind. Results are ACKed, re-sent after a reconnect, never executed twice."""

from __future__ import annotations

import os
import time

from protocol import signing
from protocol.envelope import receive_result
from protocol.link.app import InstructionMsg, ProgressMsg, ResultMsg, decode_app, encode_app
from protocol.link.frame import FrameType
from protocol.link.handshake import DeviceIdentity, HostTrust
from protocol.link.session import HostHandshake, Link, LinkTimers, Received, Role
from protocol.messages import PayChannel, PayStatus, Progress

from bridge.transport import open_transport
from terminal.link.endpoint import DeviceEndpoint
from terminal.link.tcp_wire import TcpWire
from protocol.crypto import KeyRing
from terminal.link.service_handler import ServiceLinkHandler
from terminal.service import ScanStatus
from tests.terminal.conftest import new_order_no
from tests.terminal.helpers import DEVICE_ID, KEY

TIMERS = LinkTimers(rto_base_s=0.1, keepalive_s=0.5, dead_after_s=3.0, hello_retry_s=0.2)
SEED = bytes(range(100, 132))
HOST_SEED = bytes(range(150, 182))
HOST_TRUST = HostTrust(bridges=frozenset({signing.public_key(HOST_SEED)}))
IDENTITY = DeviceIdentity(DEVICE_ID, "HIS-POS-1", "SN000123", "1.0.0")


class Host:
    """The bridge's side of the link, minus the bridge."""

    def __init__(self, endpoint: DeviceEndpoint) -> None:
        self.transport = open_transport(endpoint.bridge_url)
        keys = {DEVICE_ID: signing.public_key(SEED)}
        self.link = Link(Role.HOST, timers=TIMERS, host=HostHandshake(keys.get, HOST_SEED, lambda: b"{}"))
        self.events: list[object] = list(self.link.start(time.monotonic()))
        self.flush()

    def flush(self) -> None:
        out = self.link.data_to_send()
        if out:
            self.transport.write(out)

    def send(self, envelope) -> None:
        self.link.send(FrameType.DATA, encode_app(InstructionMsg(envelope)), time.monotonic(), tag=envelope.msg_id)
        self.flush()

    def pump(self, predicate, timeout: float = 15.0, *, ack: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; messages: {self.messages()}"
            data = self.transport.read(65536, 0.02)
            now = time.monotonic()
            if data:
                self.events += self.link.receive_bytes(data, now)
            self.events += self.link.poll(now)
            if ack:
                self.flush()
            else:
                self.link.data_to_send()  # lost on the way

    def messages(self) -> list[object]:
        return [decode_app(e.payload) for e in self.events if isinstance(e, Received) and e.type == FrameType.DATA]

    def results(self) -> list[ResultMsg]:
        return [m for m in self.messages() if isinstance(m, ResultMsg)]

    def close(self) -> None:
        self.transport.close()


def test_collect_over_the_link_with_a_reconnect_before_the_ack(tmp_path, sandbox, channel_settings):
    from tests.terminal.conftest import make_pos

    pos = make_pos(tmp_path / "j.db", sandbox, channel_settings)
    pos.service.link_down()  # the link handler decides from now on
    handler = ServiceLinkHandler(pos.service)
    endpoint = DeviceEndpoint(TcpWire(), handler, identity=IDENTITY, device_key_seed=SEED, host_trust=HOST_TRUST,
                              timers=TIMERS).start()
    host = Host(endpoint)
    try:
        host.pump(lambda: host.link.state.value == "up")
        code = pos.issue(PayChannel.WECHAT)
        envelope = pos.his.envelope(new_order_no(), "+12.50")
        host.send(envelope)
        host.pump(lambda: ProgressMsg(envelope.msg_id, Progress.AWAITING_SCAN) in host.messages())
        assert pos.service.scan(code).status is ScanStatus.ACCEPTED
        host.pump(lambda: host.results(), ack=False)  # the result arrives; our ACK is lost
        assert len(pos.service.journal.undelivered()) == 1
        host.close()  # the bridge restarts before acknowledging
        host = Host(endpoint)
        host.pump(lambda: host.results() and not pos.service.journal.undelivered())
        result = receive_result(host.results()[0].envelope.to_json_obj(), KeyRing([KEY]), now=time.time()).message
        assert result.pay_status is PayStatus.SUCCESS and pos.balance(code) == 100_00 - 1250
        host.send(envelope)  # the bridge sends the instruction again: answered from storage
        host.pump(lambda: len(host.results()) == 2)
        assert host.results()[0].envelope == host.results()[1].envelope
        assert pos.balance(code) == 100_00 - 1250
    finally:
        host.close()
        endpoint.stop()
        handler.close()
        pos.service.close()
