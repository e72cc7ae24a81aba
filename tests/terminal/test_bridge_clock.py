"""A POS whose clock drifted from the bridge's still gets its results through; one far off refuses
new work before anyone is charged."""

import time

from protocol.crypto import KeyRing
from protocol.envelope import receive_result
from protocol.errors import ErrorCode
from protocol.link.app import ResultMsg
from protocol.messages import PayStatus
from terminal.link.service_handler import bridge_clock
from tests.terminal.helpers import DEVICE_KEYS, KEY, His, open_service

T = 1_795_000_000.0


def _drain_until(service, kind, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = service.outbox.get(timeout=0.05)
        if isinstance(message, kind):
            return message
    raise AssertionError(f"no {kind.__name__}")


def test_results_are_stamped_with_the_bridge_time_when_the_pos_clock_drifted(tmp_path):
    service = open_service(tmp_path / "j.db", clock=lambda: T + 600)  # the POS is 10 minutes ahead
    service.link_up(bridge_clock=T)
    his = His(clock=lambda: T)
    envelope = his.envelope("MZ1", "+12.50")
    service.submit_instruction(envelope)
    service.cancel()
    message = _drain_until(service, ResultMsg)
    # What the bridge and HIS do with their clocks at T: the result is neither from the future nor stale.
    result = receive_result(message.envelope, KeyRing([KEY]), now=T + 1, instruction_ts=envelope.ts).message
    assert result.pay_status is PayStatus.CLOSED
    assert abs(message.envelope.ts - T) <= 1 and abs(result.finished_at - T) <= 1
    service.close()


def test_a_pos_clock_beyond_its_window_refuses_before_anything_is_shown(tmp_path):
    service = open_service(tmp_path / "j.db", clock=lambda: T + 2 * 86400)
    service.link_up(bridge_clock=T)
    service.submit_instruction(His(clock=lambda: T).envelope("MZ2", "+12.50"))  # HIS and the bridge agree on T
    refused = receive_result(_drain_until(service, ResultMsg).envelope, KeyRing([KEY]), now=T, device_keys=DEVICE_KEYS).message
    assert (refused.pay_status.value, refused.error_code) == ("FAILED", "clock_skew") and "off the bridge clock" in refused.error_message
    assert service.view().screen.value == "idle"
    service.close()


def test_bridge_clock_is_read_from_the_hello_ack():
    assert bridge_clock(b'{"bridge":"his-bridge","clock":1795000000}') == 1795000000.0
    for junk in (b"", b"not json", b'{"clock":true}', b'{"clock":"1"}', b'{"clock":NaN}', b"[1]"):
        assert bridge_clock(junk) is None
