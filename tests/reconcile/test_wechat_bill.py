"""WeChat Pay's downloadbill CSV, as the sandbox serves it and as WeChat documents it."""

from __future__ import annotations

import datetime
import gzip
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.sandbox.bills import PaymentLine, RefundLine, wechat_bill
from reconcile.errors import BadInput, ReconcileError
from reconcile.model import COLLECT, REFUND, Channel, Entry, State, effect_of, flatten
from reconcile.wechat_bill import read_wechat_bill

T = datetime.datetime(2026, 11, 22, 10, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,"
          "微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
PAY = "`2026-11-22 10:00:00,`wx1,`1900000109,`0,`D1,`4200001,`P001,`o1,`MICROPAY,`SUCCESS,`OTHERS,`CNY,`12.50,`0.00,`0,`0,`0.00,`0.00,`,`,`门诊,`,`0.07500,`0.60%,`12.50,`0.00,`"
REF = "`2026-11-22 11:00:00,`wx1,`1900000109,`0,`D1,`4200001,`P001,`o1,`MICROPAY,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`5030001,`R001,`2.50,`0.00,`ORIGINAL,`SUCCESS,`门诊,`,`-0.01500,`0.60%,`0.00,`2.50,`"


def entries(path: Path) -> list[Entry]:
    return [Entry(*t) for t in flatten(read_wechat_bill(path))]


def write(tmp_path: Path, lines: list[str], name: str = "wechat.csv") -> Path:
    path = tmp_path / name
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def test_reads_the_documented_format(tmp_path):
    got = entries(write(tmp_path, [HEADER, PAY, REF, SUMMARY, "`2,`12.50,`2.50,`0.00,`0.06000,`12.50,`2.50"]))
    assert [(e.order_no, e.direction, e.fen, e.state, e.channel, e.pay_order_no, e.ref) for e in got] == [
        ("P001", COLLECT, 1250, State.MOVED, Channel.WECHAT, "4200001", ""),
        ("P001", REFUND, 250, State.MOVED, Channel.WECHAT, "5030001", "R001"),
    ]
    assert got[0].line == 2 and got[0].at == "2026-11-22 10:00:00"


def test_reads_what_the_sandbox_serves_including_a_reversal(tmp_path):
    pay = PaymentLine(T, T, "4200002", "P002", "o1", 4200, "门诊,缴费", "D1")
    rev = RefundLine(T, T, "4200002", "P002", "o1", 4200, "5030002", "", 4200, "门诊", "D1", reversal=True)
    part = RefundLine(T, T, "4200003", "P003", "o1", 900, "5030003", "R003", 300, "门诊", "D1", reversal=False)
    got = entries(write(tmp_path, wechat_bill("ALL", "wx1", "1900000109", [pay, PaymentLine(T, T, "4200003", "P003", "o1", 900, "x", "D1")], [rev, part]).splitlines()))
    effects = {(e.pay_order_no, e.state): effect_of(e.direction, e.fen, e.state) for e in got}
    # The paid-then-reversed order nets to nothing; the partial refund is a refund of its own.
    assert effects[("4200002", State.MOVED)] + effects[("4200002", State.REVERSAL)] == 0
    assert effects[("5030003", State.MOVED)] == -300


def test_a_no_bill_answer_is_an_empty_day_and_other_xml_is_refused(tmp_path):
    path = tmp_path / "nobill.csv"
    path.write_text("<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[No Bill Exist]]></return_msg><error_code>20002</error_code></xml>")
    assert entries(path) == []
    path.write_text("<xml><return_code>FAIL</return_code><return_msg>签名错误</return_msg></xml>")
    with pytest.raises(BadInput, match="签名错误"):
        entries(path)


def test_a_gzip_bill_is_read_and_a_cut_gzip_is_refused(tmp_path):
    text = "\r\n".join([HEADER, PAY, SUMMARY, "`1,`12.50,`0.00,`0.00,`0.07500,`12.50,`0.00"]) + "\r\n"
    path = tmp_path / "bill.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    assert len(entries(path)) == 1
    path.write_bytes(gzip.compress(text.encode())[:-12])
    with pytest.raises(BadInput, match="gzip"):
        entries(path)


@pytest.mark.parametrize(("lines", "line", "field", "why"), [
    ([HEADER, PAY], None, None, "no summary section"),  # cut before the summary
    ([HEADER, PAY, SUMMARY], 3, None, "no summary row"),
    ([HEADER, PAY, REF, SUMMARY, "`3,`12.50,`2.50,`0.00,`0.06000,`12.50,`2.50"], 5, "总交易单数", "counts 3 rows"),
    ([HEADER, PAY, SUMMARY, "`1,`12.60,`0.00,`0.00,`0.07500,`12.50,`0.00"], 4, "应结订单总金额", "add up to 12.50"),
    ([HEADER, PAY.replace("`12.50,`0.00,`0,", "`12.5,`0.00,`0,", 1)], 2, "应结订单金额", "two decimals"),
    ([HEADER, PAY.replace("`12.50,`0.00,`0,", "`abc,`0.00,`0,", 1)], 2, "应结订单金额", "amount"),
    ([HEADER, PAY.replace("`SUCCESS", "`NOTPAY", 1)], 2, "交易状态", "'NOTPAY'"),
    ([HEADER, PAY.replace(",`4200001,", ",4200001,", 1)], 2, "微信订单号", "backtick"),
    ([HEADER, PAY[:80]], 2, None, "fields"),
    ([HEADER.replace("应结订单金额", "总金额"), PAY], 1, "应结订单金额", "column missing"),
    ([HEADER, REF.replace("`SUCCESS,`门诊", "`WAITING,`门诊")], 2, "退款状态", "'WAITING'"),
])
def test_bad_bills_are_refused_naming_line_and_field(tmp_path, lines, line, field, why):
    with pytest.raises(BadInput) as caught:
        entries(write(tmp_path, lines))
    assert (caught.value.file, caught.value.line, caught.value.field) == ("wechat.csv", line, field)
    assert why in str(caught.value)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(scratch, data):
    path = scratch / "fuzz-wechat.csv"
    path.write_bytes(data)
    try:
        entries(path)
    except ReconcileError:
        pass


@given(st.integers(min_value=0, max_value=2), st.integers(min_value=0, max_value=400), st.text(alphabet="`,0123456789.-\r\nSUCESFRNDabc", max_size=6))
def test_a_damaged_real_bill_is_refused_cleanly_or_still_adds_up(scratch, which, at, junk):
    lines = [HEADER, PAY, REF, SUMMARY, "`2,`12.50,`2.50,`0.00,`0.06000,`12.50,`2.50"]
    text = "\r\n".join(lines)
    cut = at % (len(text) + 1)
    text = text[:cut] + (junk if which == 1 else "") + text[cut + (len(junk) if which == 2 else 0):]
    path = scratch / "fuzz-wechat2.csv"
    path.write_text(text, encoding="utf-8")
    try:
        got = entries(path)
    except BadInput as exc:
        assert exc.file == "fuzz-wechat2.csv"
        return
    # Whatever is accepted agrees with its own summary: the net is the summary's net.
    assert sum(effect_of(e.direction, e.fen, e.state) for e in got) == 1000
