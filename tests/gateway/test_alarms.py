"""Issue 17: needs-person cases are stored by the gateway and listed by `gateway-admin alarms list`
with what to do. The whole chain, real parts: a POS service paying through a real gateway server
(device-signed HTTP), the gateway calling the real sandbox with a hospital's WRONG settings, the
operator's CLI on the same database (SQLite and a real PostgreSQL server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from Crypto.PublicKey import RSA

from gateway.admin import main
from gateway.alarms import AlarmKind, Alarms
from protocol.messages import PayChannel, PayStatus
from terminal.gateway_client import GatewayAlarms, GatewayChannelClient
from terminal.machine import State
from terminal.service import ScanStatus
from tests.gateway.fleet import ACTOR
from tests.gateway.test_api import gw, onboard, order, sandbox  # noqa: F401 - fixtures
from tests.terminal.helpers import Bridge, His, make_config, open_service


def _wrong_alipay_public_key(fleet, sandbox) -> None:
    """The operator pasted the app's own public key where Alipay's belongs (a classic)."""
    alipay = sandbox.credentials["channels"]["alipay"]
    app_private = Path(alipay["private_key_pem"]).read_text()
    fleet.directory.set_merchant_key("H001", PayChannel.ALIPAY, alipay["app_id"], {
        "gateway": alipay["gateway"], "private_key_pem": app_private,
        "alipay_public_key_pem": RSA.import_key(app_private).public_key().export_key().decode()}, actor=ACTOR)


@pytest.fixture
def pos_service(gw, tmp_path):  # noqa: F811
    connection = gw.pos()
    clients = {c: GatewayChannelClient(connection, c, terminal_id="T0001") for c in (PayChannel.WECHAT, PayChannel.ALIPAY)}
    service = open_service(tmp_path / "pos.db", make_config(), clients, alarms=GatewayAlarms(connection))
    yield service
    service.close()


def test_a_pos_hand_over_is_listed_by_gateway_admin_with_what_to_do(gw, pos_service, capsys):  # noqa: F811
    _wrong_alipay_public_key(gw.fleet, gw.sandbox)
    bridge, his, order_no = Bridge(pos_service), His(), order()
    pos_service.submit_instruction(his.envelope(order_no, "+12.50"))
    assert pos_service.scan(gw.code("ALIPAY")).status is ScanStatus.ACCEPTED
    view = pos_service.wait_until(lambda v: v.state is State.PAYMENT_NEEDS_PERSON, 20)
    assert view is not None, pos_service.view()
    bridge.pump()
    assert bridge.results == {} and bridge.progress[-1].event.code == "needs_person"

    by_kind = {a.kind: a for a in Alarms(gw.fleet.directory.db).list()}
    pos_alarm = by_kind[AlarmKind.COLLECT]
    assert (pos_alarm.reason, pos_alarm.order_no, pos_alarm.amount_fen, pos_alarm.device_id, pos_alarm.channel) == (
        "unverified_reply", order_no, 1250, "H001-POS1", "ALIPAY")
    assert (by_kind[AlarmKind.MERCHANT].reason, by_kind[AlarmKind.MERCHANT].reference) == ("unverified_reply", "ALIPAY")

    url = gw.fleet.directory.db.url
    if not url.startswith("sqlite:"):  # the test server's conninfo is no URL the CLI takes; the table is the same
        resolved = Alarms(gw.fleet.directory.db).resolve(pos_alarm.alarm_id, actor="alice", note="key fixed")
        assert resolved.resolved_by == "alice" and pos_alarm.alarm_id not in {a.alarm_id for a in Alarms(gw.fleet.directory.db).list()}
        return
    assert main(["--db", url, "alarms", "list"]) == 0
    out = capsys.readouterr().out
    assert f"#{pos_alarm.alarm_id}  unverified_reply  hospital H001  collect {order_no} 12.50" in out
    assert "what to do:" in out and "merchant rotate" in out and "Check again" in out
    assert main(["--db", url, "--actor", "alice", "alarms", "resolve", str(pos_alarm.alarm_id), "--note", "key fixed, payment checked"]) == 0
    capsys.readouterr()
    assert main(["--db", url, "alarms", "list"]) == 0
    assert f"#{pos_alarm.alarm_id} " not in capsys.readouterr().out
    assert main(["--db", url, "alarms", "list", "--all"]) == 0
    assert "by alice: key fixed, payment checked" in capsys.readouterr().out
    assert main(["--db", url, "alarms", "resolve", str(pos_alarm.alarm_id), "--note", "again"]) == 1  # once only


def test_a_rejected_merchant_key_ends_the_payment_and_raises_one_merchant_alarm(gw, pos_service):  # noqa: F811
    wechat = gw.sandbox.credentials["channels"]["wechat"]
    gw.fleet.directory.set_merchant_key("H001", PayChannel.WECHAT, wechat["mch_id"], {
        "appid": wechat["appid"], "api_key": "0" * 32, "base_url": wechat["base_url"]}, actor=ACTOR)
    bridge, his = Bridge(pos_service), His()
    for _ in range(2):
        code = gw.code("WECHAT")
        envelope = his.envelope(order(), "+3.00")
        pos_service.submit_instruction(envelope)
        assert pos_service.scan(code).status is ScanStatus.ACCEPTED
        assert pos_service.wait_until(lambda v: v.state is State.DECLINED, 20) is not None
        pos_service.cancel()
        result = bridge.result(envelope.msg_id)
        assert (result.pay_status, result.error_code) == (PayStatus.FAILED, "merchant_config")
    [alarm] = Alarms(gw.fleet.directory.db).list()
    assert (alarm.kind, alarm.reason, alarm.reference, alarm.count) == (AlarmKind.MERCHANT, "merchant_config", "WECHAT", 2)
    assert "签名错误" in alarm.message
