"""End to end over real HTTP: pay and refund through the channel clients against channel-sandbox,
journal the results with the bridge's Journal API, then `reconcile --channel-settings` downloads
the day's bills through the same clients and reconciles them."""

from __future__ import annotations

import datetime
import uuid

import pytest

from bridge.journal import Journal, NewInstruction, StoredResult
from firmware_sim.sandbox.launcher import SandboxProcess
from protocol.amount import format_yuan
from protocol.messages import PayChannel
from reconcile.cli import main
from gateway.channels import build_clients, settings_from_sandbox
from terminal.channels.base import PayState, RefundState

FAST = {"query_interval_s": 0.2, "pay_deadline_s": 5.0}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    process = SandboxProcess(str(tmp_path_factory.mktemp("reconcile-sandbox")))
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_bills_downloaded_through_the_channel_clients_reconcile(sandbox, tmp_path, capsys):
    day = datetime.date(2026, 11, 22)
    sandbox.control("POST", "/clock", {"today": day.isoformat()})
    clients = build_clients(settings_from_sandbox(sandbox.credentials_path, wechat=FAST, alipay=FAST))
    journal = Journal(tmp_path / "journal.db", synchronous="NORMAL")
    his = ["order_no,msg_id,direction,amount,status,pay_channel,pay_order_no,finished_at"]

    def now() -> int:
        return int(datetime.datetime.fromisoformat(str(sandbox.control("GET", "/clock")["now"])).timestamp())

    def record(msg: str, order: str, amount: str, status: str, channel: PayChannel, pay_no: str, his_status: str = "SUCCESS") -> None:
        journal.accept(NewInstruction(msg, "k1", msg.encode(), b"{}", now(), "T0001", "D-SN-1", order, amount))
        journal.store_result(msg, StoredResult("R" + msg, b"{}", status, channel.value, pay_no, amount, now(), None))
        his.append(f"{order},{msg},{amount[0]},{amount[1:]},{his_status},{channel.value},{pay_no},")

    for k, channel in enumerate((PayChannel.WECHAT, PayChannel.ALIPAY, PayChannel.WECHAT)):
        client = clients[channel]
        code = str(sandbox.issue_code(channel.value, "500.00")["code"])
        otn = "P" + uuid.uuid4().hex[:26] + "01"
        paid = client.pay(out_trade_no=otn, auth_code=code, total_fen=20000, subject="门诊缴费")
        assert paid.state is PayState.SUCCESS and paid.channel_txn_id
        order = f"MZ{k}"
        # The third payment's write-back to HIS failed: HIS still shows it pending.
        record(f"HIS-{k}", order, "+200.00", "SUCCESS", channel, paid.channel_txn_id, "PENDING" if k == 2 else "SUCCESS")
        # Insurance settled later: two partial refunds back to the patient, through HIS.
        for j, part in enumerate((6000, 1500)):
            refund = client.refund(out_trade_no=otn, out_refund_no="R" + uuid.uuid4().hex[:31], total_fen=20000, refund_fen=part, reason="医保结算")
            assert refund.state in (RefundState.SUCCESS, RefundState.PROCESSING) and refund.channel_refund_id
            record(f"HIS-{k}-R{j}", order, "-" + format_yuan(part), "REFUNDED", channel, refund.channel_refund_id)
    journal.close()
    (tmp_path / "his.csv").write_text("\n".join(his) + "\n", encoding="utf-8")
    sandbox.control("POST", "/clock", {"today": (day + datetime.timedelta(days=1)).isoformat()})  # the bill is ready next morning

    out = tmp_path / "out"
    status = main(["--date", day.isoformat(), "--his", str(tmp_path / "his.csv"), "--journal", str(tmp_path / "journal.db"),
                   "--channel-settings", sandbox.credentials_path, "--out", str(out)])
    printed = capsys.readouterr()
    assert status == 1, printed
    assert "平账 Matched 8, 长款 Long 1" in printed.out
    assert (out / "bills" / f"wechat-{day}.csv").exists() and (out / "bills" / f"alipay-{day}.zip").exists()
    rows = (out / f"reconcile-{day}.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(rows) == 2 and ",long,长款 Long,his_not_paid,WECHAT,+,MZ2,HIS-2," in rows[1]
    sandbox.control("POST", "/clock", {"today": None})
