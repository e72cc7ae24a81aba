"""Daily bills: downloaded through the real clients, parsed the way reconciliation will, totals match."""

from __future__ import annotations

import datetime
import io
import uuid
import zipfile
from typing import Iterator

import pytest

from firmware_sim.sandbox import bills
from firmware_sim.sandbox.launcher import SandboxProcess
from protocol.amount import parse_yuan
from protocol.messages import PayChannel
from gateway.channels import build_clients, settings_from_sandbox
from gateway.channels.errors import BillDownloadError

DAY = datetime.date(2031, 3, 4)


def _otn() -> str:
    return "B" + uuid.uuid4().hex[:20]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxProcess, dict, dict[str, int]]]:
    """A sandbox with one business day of activity on both channels, and the expected totals."""
    with SandboxProcess(str(tmp_path_factory.mktemp("bills"))) as sandbox:
        clients = build_clients(settings_from_sandbox(sandbox.credentials_path))
        sandbox.control("POST", "/clock", {"today": DAY.isoformat()})
        expected: dict[str, int] = {}
        for channel in (PayChannel.WECHAT, PayChannel.ALIPAY):
            client = clients[channel]
            paid = refunded = 0
            orders = []
            for fen in (1250, 99, 30000):
                code = str(sandbox.issue_code(channel.value, "500.00")["code"])
                otn = _otn()
                assert client.pay(out_trade_no=otn, auth_code=code, total_fen=fen, subject="门诊, 缴费").paid_fen == fen
                orders.append((otn, fen))
                paid += fen
            client.refund(out_trade_no=orders[0][0], out_refund_no="R" + orders[0][0], total_fen=1250, refund_fen=250, reason="x")
            client.refund(out_trade_no=orders[0][0], out_refund_no="S" + orders[0][0], total_fen=1250, refund_fen=1000, reason="x")
            client.reverse(orders[1][0])  # a paid order reversed: its money goes back too
            refunded += 250 + 1000 + 99
            declined = str(sandbox.issue_code(channel.value, "1.00")["code"])
            client.pay(out_trade_no=_otn(), auth_code=declined, total_fen=500, subject="x")  # declined: not in the bill
            expected[f"{channel.value}_paid"], expected[f"{channel.value}_refunded"] = paid, refunded
            expected[f"{channel.value}_payments"], expected[f"{channel.value}_refunds"] = 3, 3
        sandbox.control("POST", "/clock", {"today": (DAY + datetime.timedelta(days=1)).isoformat()})
        yield sandbox, clients, expected


def _wechat_rows(text: str, bill_type: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    lines = text.split("\r\n")
    assert lines[-1] == "" and lines[0] == bills.WECHAT_HEADERS[bill_type]
    header = lines[0].split(",")
    summary_at = lines.index(bills.WECHAT_SUMMARY_HEADERS[bill_type])
    rows = []
    for line in lines[1:summary_at]:
        values = line.split(",")
        assert all(value.startswith("`") for value in values)
        rows.append(dict(zip(header, (value[1:] for value in values), strict=True)))
    summary_values = [value[1:] for value in lines[summary_at + 1].split(",")]
    return rows, dict(zip(bills.WECHAT_SUMMARY_HEADERS[bill_type].split(","), summary_values, strict=True))


def test_wechat_all_bill_parses_back_to_the_ledger(ledger):
    _sandbox, clients, expected = ledger
    text = clients[PayChannel.WECHAT].download_bill(DAY).decode("utf-8")
    rows, summary = _wechat_rows(text, "ALL")
    payments = [r for r in rows if r["交易状态"] == "SUCCESS"]
    refunds = [r for r in rows if r["交易状态"] in ("REFUND", "REVOKED")]
    assert len(payments) == expected["WECHAT_payments"] and len(refunds) == expected["WECHAT_refunds"]
    assert sum(parse_yuan(r["应结订单金额"]) for r in rows) == expected["WECHAT_paid"] == parse_yuan(summary["应结订单总金额"])
    assert sum(parse_yuan(r["退款金额"]) for r in rows) == expected["WECHAT_refunded"] == parse_yuan(summary["退款总金额"])
    assert int(summary["总交易单数"]) == len(rows) == 6
    assert all(r["商品名称"] == "门诊， 缴费" for r in rows)  # a comma in free text cannot break the columns
    assert all(r["交易时间"].startswith(DAY.isoformat()) for r in rows)


@pytest.mark.parametrize("bill_type, count", [("SUCCESS", 3), ("REFUND", 3)])
def test_wechat_success_and_refund_bills(ledger, bill_type, count):
    _sandbox, clients, expected = ledger
    rows, summary = _wechat_rows(clients[PayChannel.WECHAT].download_bill(DAY, bill_type).decode("utf-8"), bill_type)
    assert len(rows) == count == int(summary["总交易单数"])
    if bill_type == "SUCCESS":
        assert parse_yuan(summary["订单总金额"]) == expected["WECHAT_paid"]
    else:
        assert parse_yuan(summary["申请退款总金额"]) == expected["WECHAT_refunded"]
        assert all(r["退款成功时间"].startswith(DAY.isoformat()) for r in rows)


def test_alipay_bill_zip_parses_back_to_the_ledger(ledger):
    sandbox, clients, expected = ledger
    data = clients[PayChannel.ALIPAY].download_bill(DAY)
    pid = sandbox.credentials["alipay_pid"]
    with zipfile.ZipFile(io.BytesIO(data), metadata_encoding="gbk") as archive:
        stem = f"{pid}_{DAY.strftime('%Y%m%d')}"
        assert sorted(archive.namelist()) == sorted([f"{stem}_业务明细.csv", f"{stem}_业务明细(汇总).csv"])
        detail = archive.read(f"{stem}_业务明细.csv").decode("gbk").split("\r\n")
        summary = archive.read(f"{stem}_业务明细(汇总).csv").decode("gbk").split("\r\n")
    assert detail[0] == "#支付宝业务明细查询" and detail[1] == f"#账号：[{pid}]"
    begin, end = detail.index(bills.ALIPAY_DETAIL_BEGIN), detail.index(bills.ALIPAY_DETAIL_END)
    header = detail[begin + 1].split(",")
    rows = [dict(zip(header, (v.strip() for v in line.split(",")), strict=True)) for line in detail[begin + 2:end]]
    trades = [r for r in rows if r["业务类型"] == "交易"]
    refunds = [r for r in rows if r["业务类型"] == "退款"]
    assert sum(parse_yuan(r["商家实收（元）"]) for r in trades) == expected["ALIPAY_paid"]
    assert sum(parse_yuan(r["商家实收（元）"][1:]) for r in refunds) == expected["ALIPAY_refunded"]
    assert all(r["商家实收（元）"].startswith("-") for r in refunds)
    assert detail[end + 1] == f"#交易合计：3笔，商家实收共{expected['ALIPAY_paid'] // 100}.{expected['ALIPAY_paid'] % 100:02d}元，商家优惠共0.00元"
    header = summary[summary.index(bills.ALIPAY_SUMMARY_BEGIN) + 1].split(",")
    total = next(dict(zip(header, line.split(","), strict=True)) for line in summary if line.startswith("合计,"))
    assert int(total["交易订单总笔数"]) == 3 and int(total["退款订单总笔数"]) == 3
    assert parse_yuan(total["订单金额（元）"]) == expected["ALIPAY_paid"]
    assert parse_yuan(total["商家实收（元）"]) == expected["ALIPAY_paid"] - expected["ALIPAY_refunded"]


@pytest.mark.parametrize("channel", [PayChannel.WECHAT, PayChannel.ALIPAY])
def test_no_bill_for_a_quiet_day_or_for_today(ledger, channel):
    _sandbox, clients, _expected = ledger
    for day in (DAY - datetime.timedelta(days=1), DAY + datetime.timedelta(days=1)):
        with pytest.raises(BillDownloadError) as info:
            clients[channel].download_bill(day)
        assert info.value.no_bill


def test_generator_escapes_free_text_and_keeps_one_line_per_row():
    when = datetime.datetime(2031, 3, 4, 10, 0, 0)
    payment = bills.PaymentLine(when, when, "4200", "O1", "oBuyer", 1, "a,b`c\nd", "")
    text = bills.wechat_bill("ALL", "wx1", "1", [payment], [])
    assert text.count("\r\n") == 4 and "a，b'c d" in text
    with pytest.raises(ValueError):
        bills.wechat_bill("WEEKLY", "wx1", "1", [], [])
