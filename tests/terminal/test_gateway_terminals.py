"""A POS that serves several HIS terminal IDs pays, through the gateway, for the terminal each
instruction names, not for the first one of its configuration (issue 13: multi-terminal).

Real parts: the terminal service with the clients `terminal.factory` builds from its configuration
(device-signed requests), the gateway serving on loopback (SQLite), the channel sandbox process."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

from firmware_sim.demo_gateway import DemoGateway
from gateway.tenancy import Mode
from protocol.keyfile import format_keyfile
from protocol.messages import PayChannel, PayStatus
from protocol.registry import DeviceRecord
from protocol.signing import public_key
from terminal.config import GatewaySettings
from terminal.factory import gateway_clients
from terminal.service import ScanStatus
from tests.terminal.helpers import DEVICE_ID, DEVICE_SEED, KEY, Bridge, His, make_config, open_service


def test_a_pos_serving_two_terminals_pays_for_the_one_each_instruction_names(tmp_path, sandbox) -> None:
    config = make_config()
    assert [t.terminal_id for t in config.terminals] == ["T0001", "T0002"]
    gateway = DemoGateway(tmp_path / "gateway")
    gateway.onboard(Path(sandbox.credentials_path), format_keyfile([KEY]))
    gateway.enroll(DeviceRecord(DEVICE_ID, "HIS-POS-1", "SN000123", public_key(DEVICE_SEED)), config.terminals)
    url = gateway.serve_in_thread({"read_timeout_s": 2.0})
    config = dataclasses.replace(config, gateway=GatewaySettings(url))
    clients = gateway_clients(config, device_key_seed=DEVICE_SEED, firmware="test", state_dir=tmp_path)
    service = open_service(tmp_path / "journal.db", config, clients)
    bridge, his = Bridge(service), His()
    try:
        paid: dict[str, str] = {}
        for terminal in ("T0002", "T0001"):
            order_no = "MZ" + uuid.uuid4().hex[:12]
            envelope = his.envelope(order_no, "+12.50", terminal_id=terminal)
            service.submit_instruction(envelope)
            code = str(sandbox.issue_code(PayChannel.WECHAT.value)["code"])
            assert service.scan(code).status is ScanStatus.ACCEPTED
            assert bridge.result(envelope.msg_id).pay_status is PayStatus.SUCCESS
            paid[order_no] = terminal
        with gateway.db.transaction(write=False) as tx:
            recorded = dict(tx.all("SELECT order_no, terminal_id FROM payments WHERE state = 'succeeded'"))
        assert recorded == paid  # each collection counted against its own window (daily limits, reconciliation)
    finally:
        service.close()
        gateway.close()


def test_the_gateways_limit_refuses_what_a_stale_device_let_through_with_bad_amount(tmp_path, sandbox) -> None:
    """Issue 11 item 2: the hospital's limit in the gateway is the one source and the gateway always
    enforces it. A POS provisioned before the hospital lowered it (its config still says 5,000.00)
    lets +12.50 through; the gateway refuses it, nothing is charged, and the cashier and HIS see
    bad_amount, the code the bridge and the POS give when they refuse it first. No other code can
    help, so the instruction ends at once (no scan again, no cancel needed)."""
    from terminal.view import Screen
    from tests.terminal.helpers import wait_for_view

    config = make_config()
    assert config.limit_fen == 5_000_00
    gateway = DemoGateway(tmp_path / "gateway")
    gateway.tenancy.add_hospital(gateway.hospital_id, "City", mode=Mode.DIRECT, actor="test", txn_limit_fen=10_00)
    gateway.onboard(Path(sandbox.credentials_path), format_keyfile([KEY]))
    gateway.enroll(DeviceRecord(DEVICE_ID, "HIS-POS-1", "SN000123", public_key(DEVICE_SEED)), config.terminals)
    url = gateway.serve_in_thread({"read_timeout_s": 2.0})
    config = dataclasses.replace(config, gateway=GatewaySettings(url))
    service = open_service(tmp_path / "journal.db", config, gateway_clients(config, device_key_seed=DEVICE_SEED, firmware="test",
                                                                            state_dir=tmp_path))
    bridge, his = Bridge(service), His()
    try:
        envelope = his.envelope("MZ" + uuid.uuid4().hex[:12], "+12.50")
        service.submit_instruction(envelope)
        assert service.scan(str(sandbox.issue_code(PayChannel.WECHAT.value)["code"])).status is ScanStatus.ACCEPTED
        result = bridge.result(envelope.msg_id)
        assert (result.pay_status, result.error_code) == (PayStatus.FAILED, "bad_amount")
        assert "limit" in (result.error_message or "")
        shown = wait_for_view(service, lambda v: v.screen is Screen.RESULT, 20.0)
        assert shown is not None and shown.screen is Screen.RESULT
        with gateway.db.transaction(write=False) as tx:
            assert tx.all("SELECT order_no FROM payments") == []  # refused before the channel: nothing to reverse
    finally:
        service.close()
        gateway.close()
