"""The service on a real device link: DeviceEndpoint over TCP, a HOST link playing the bridge, the
channel sandbox behind. Results are ACKed, re-sent after a reconnect, never executed twice."""

from __future__ import annotations

import time

from protocol import signing
from protocol.envelope import receive_result
from protocol.link.app import ProgressMsg
from protocol.link.handshake import DeviceIdentity, HostTrust
from protocol.link.session import LinkTimers
from protocol.messages import PayChannel, PayStatus, Progress

from terminal.link.endpoint import DeviceEndpoint
from tests.terminal.link.fake_bridge import Host as FakeBridge
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


def bridge_to(endpoint: DeviceEndpoint) -> FakeBridge:
    return FakeBridge(endpoint, device_id=DEVICE_ID, device_key_seed=SEED, host_seed=HOST_SEED, timers=TIMERS)


def test_collect_over_the_link_with_a_reconnect_before_the_ack(tmp_path, sandbox, channel_settings):
    from tests.terminal.conftest import make_pos

    pos = make_pos(tmp_path / "j.db", sandbox, channel_settings)
    pos.service.link_down()  # the link handler decides from now on
    handler = ServiceLinkHandler(pos.service)
    endpoint = DeviceEndpoint(TcpWire(), handler, identity=IDENTITY, device_key_seed=SEED, host_trust=HOST_TRUST,
                              timers=TIMERS).start()
    host = bridge_to(endpoint)
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
        host = bridge_to(endpoint)
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
