"""Alipay's trade bill zip (GBK CSVs), as the sandbox serves it and as Alipay documents it."""

from __future__ import annotations

import datetime
import io
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.sandbox.bills import PaymentLine, RefundLine, alipay_bill_zip, alipay_detail_csv, alipay_summary_csv
from reconcile.alipay_bill import read_alipay_bill
from reconcile.errors import BadInput, ReconcileError
from reconcile.model import COLLECT, REFUND, Channel, Entry, State, effect_of, flatten

DAY = datetime.date(2026, 11, 22)
T = datetime.datetime(2026, 11, 22, 10, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
PAYMENTS = [PaymentLine(T, T, "2026112222001001", "P001", "2088001", 20000, "门诊", "D1"),
            PaymentLine(T, T, "2026112222001002", "P002", "2088002", 4200, "门诊", "D1")]
REFUNDS = [RefundLine(T, T, "2026112222001001", "P001", "2088001", 20000, "2026112222001001", "R001", 6000, "门诊", "D1", False),
           RefundLine(T, T, "2026112222001001", "P001", "2088001", 20000, "2026112222001001", "R002", 1500, "门诊", "D1", False),
           RefundLine(T, T, "2026112222001002", "P002", "2088002", 4200, "2026112222001002", "", 4200, "门诊", "D1", True)]


def entries(path: Path) -> list[Entry]:
    return [Entry(*t) for t in flatten(read_alipay_bill(path))]


def sandbox_zip(tmp_path: Path, name: str = "alipay.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(alipay_bill_zip(DAY, "2088102146225135", PAYMENTS, REFUNDS, T))
    return path


def zip_of(tmp_path: Path, detail: str, summary: str | None = None, name: str = "alipay.zip") -> Path:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("2088_20261122_业务明细.csv", detail.encode("gbk"))
        if summary is not None:
            archive.writestr("2088_20261122_业务明细(汇总).csv", summary.encode("gbk"))
    path = tmp_path / name
    path.write_bytes(out.getvalue())
    return path


def detail() -> str:
    return alipay_detail_csv(DAY, "2088", PAYMENTS, REFUNDS, T)


def test_reads_the_sandbox_zip_with_partial_refunds_and_a_cancelled_trade(tmp_path):
    got = entries(sandbox_zip(tmp_path))
    assert [(e.direction, e.fen, e.state, e.pay_order_no, e.ref) for e in got] == [
        (COLLECT, 20000, State.MOVED, "2026112222001001", ""),
        (COLLECT, 4200, State.MOVED, "2026112222001002", ""),
        (REFUND, 6000, State.MOVED, "R001", "2026112222001001"),  # a refund is keyed by its out_request_no
        (REFUND, 1500, State.MOVED, "R002", "2026112222001001"),
        (COLLECT, 4200, State.REVERSAL, "2026112222001002", ""),  # 撤销: gives its payment back
    ]
    assert all(e.channel == Channel.ALIPAY and e.order_no in ("P001", "P002") for e in got)
    assert sum(effect_of(e.direction, e.fen, e.state) for e in got) == 20000 - 6000 - 1500


@pytest.mark.parametrize(("change", "line", "field", "why"), [
    (lambda t: t.split("#-----------------------------------------业务明细列表结束")[0], None, None, "no end marker"),
    (lambda t: t.replace("#交易合计：2笔", "#交易合计：3笔"), None, "#交易合计", "counts 3"),
    (lambda t: t.replace("商家实收共242.00元", "商家实收共242.10元"), None, "#交易合计", "add up to 242.00"),
    (lambda t: t.replace("#退款合计", "#其他"), None, "#退款合计", "footer line missing"),
    (lambda t: t.replace(",200.00,200.00,", ",200.00,2O0.00,", 1), 6, "商家实收（元）", "amount"),
    (lambda t: t.replace(",交易,", ",转账,", 1), 6, "业务类型", "'转账'"),
    (lambda t: t.replace("商家实收（元）", "实收"), 5, "商家实收（元）", "column missing"),
])
def test_bad_detail_files_are_refused(tmp_path, change, line, field, why):
    with pytest.raises(BadInput) as caught:
        entries(zip_of(tmp_path, change(detail())))
    err = caught.value
    assert err.file.startswith("alipay.zip:") and "业务明细.csv" in err.file
    if line is not None:
        assert err.line == line
    assert err.field == field and why in str(err)


def test_the_summary_file_must_agree_with_the_detail(tmp_path):
    summary = alipay_summary_csv(DAY, "2088", PAYMENTS, REFUNDS, T).replace("合计,,2,3,", "合计,,2,4,")
    with pytest.raises(BadInput, match="2 trades and 4 refunds, the detail has 2 and 3"):
        entries(zip_of(tmp_path, detail(), summary))


def test_a_cut_download_and_a_zip_without_the_detail_are_refused(tmp_path):
    whole = sandbox_zip(tmp_path).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BadInput, match="cut.zip: not a zip file"):
        entries(cut)
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "x")
    (tmp_path / "empty.zip").write_bytes(empty.getvalue())
    with pytest.raises(BadInput, match="业务明细.csv"):
        entries(tmp_path / "empty.zip")


def test_a_utf8_detail_file_is_refused_as_not_gbk(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("2088_20261122_业务明细.csv", "#支付宝业务明细查询\n支付宝交易号,商户订单号\n".encode("utf-8") + "é".encode("utf-8"))
    (tmp_path / "utf8.zip").write_bytes(out.getvalue())
    with pytest.raises(ReconcileError):
        entries(tmp_path / "utf8.zip")


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(scratch, data):
    path = scratch / "fuzz-alipay.zip"
    path.write_bytes(data)
    try:
        entries(path)
    except ReconcileError:
        pass


@given(st.integers(min_value=0, max_value=3000), st.text(alphabet="#,0123456789.-\r\n交易退款\t笔元", max_size=6))
def test_a_damaged_detail_is_refused_cleanly(scratch, at, junk):
    text = detail()
    cut = at % (len(text) + 1)
    path = zip_of(scratch, text[:cut] + junk + text[cut:], name="fuzz-alipay2.zip")
    try:
        got = entries(path)
    except BadInput as exc:
        assert exc.file.startswith("fuzz-alipay2.zip")
        return
    assert sum(effect_of(e.direction, e.fen, e.state) for e in got) == 20000 - 6000 - 1500
