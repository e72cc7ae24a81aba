"""Bills as real merchants get them (issue 17, finding 5): nothing quoted, free text as the merchant
sent it (JSON attach, commas and quotes in 商品名称), CRLF or LF, a BOM, GBK names in the zip."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.alipay_bill import read_alipay_bill
from reconcile.errors import BadInput
from reconcile.model import COLLECT, REFUND, Entry, State, effect_of, flatten
from reconcile.wechat_bill import read_wechat_bill

from .real_bills import AliRow, WxRow, alipay_zip, wechat_bill

AT = "2026-11-22 10:00:00"
P1 = "P0f3a9c2b7d1e4f5a6b7c8d9e0f01"
P2 = "P1a2b3c4d5e6f708192a3b4c5d601"
R1 = "R0123456789abcdef0123456789abcde"


def wx(tmp_path: Path, rows: list[WxRow], **kw: object) -> list[Entry]:
    path = tmp_path / "wechat.csv"
    path.write_bytes(wechat_bill(rows, **kw))  # type: ignore[arg-type]  # options passed through to the bill writer, typed object here
    return [Entry(*t) for t in flatten(read_wechat_bill(path))]


def ali(tmp_path: Path, rows: list[AliRow], **kw: object) -> list[Entry]:
    path = tmp_path / "alipay.zip"
    path.write_bytes(alipay_zip(rows, **kw))  # type: ignore[arg-type]  # options passed through to the bill writer, typed object here
    return [Entry(*t) for t in flatten(read_alipay_bill(path))]


WX_DAY = [
    WxRow(AT, "4200001", P1, "SUCCESS", 1250, attach='{"dept":"儿科","win":3}'),
    WxRow(AT, "4200002", P2, "SUCCESS", 3000, name='布洛芬混悬液"美林",100ml,儿童'),
    WxRow("2026-11-22 11:00:00", "4200001", P1, "REFUND", 250, refund_id="50300001", out_refund_no=R1, attach='{"dept":"儿科","win":3}'),
]


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
@pytest.mark.parametrize("bom", [False, True])
def test_wechat_json_attach_and_quoted_commas_in_names_are_read_as_wechat_writes_them(tmp_path, newline, bom):
    got = wx(tmp_path, WX_DAY, newline=newline, bom=bom)
    assert [(e.order_no, e.direction, e.fen, e.state, e.pay_order_no, e.ref, e.line) for e in got] == [
        (P1, COLLECT, 1250, State.MOVED, "4200001", "", 2),
        (P2, COLLECT, 3000, State.MOVED, "4200002", "", 3),
        (P1, REFUND, 250, State.MOVED, "50300001", R1, 4),
    ]


def test_wechat_a_backtick_after_a_comma_in_free_text_still_reads_the_money_columns(tmp_path):
    rows = [WxRow(AT, "4200003", P1, "SUCCESS", 800, name="挂号,`特需", attach='{"note":"a,`b"}')]
    assert [(e.fen, e.pay_order_no) for e in wx(tmp_path, rows)] == [(800, "4200003")]


def test_wechat_a_row_that_cannot_be_fitted_is_still_refused_with_its_line(tmp_path):
    path = tmp_path / "wechat.csv"
    text = wechat_bill(WX_DAY).decode("utf-8").replace("`0.60%,`12.50", "`0.60%,`12.50,`9.99", 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInput) as caught:
        list(read_wechat_bill(path))
    assert caught.value.line == 2 and "28 fields" in caught.value.why


ALI_DAY = [
    AliRow("2026112222001401", P1, "交易", 20000, AT, name="检查费,CT平扫"),
    AliRow("2026112222001402", P2, "交易", 4200, AT, name='药品"阿莫西林",0.25g'),
    AliRow("2026112222001401", P1, "退款", 6000, "2026-11-22 12:00:00", request_no=R1, name="检查费,CT平扫", order_fen=20000),
]


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_alipay_unquoted_commas_and_quotes_in_names(tmp_path, newline):
    got = ali(tmp_path, ALI_DAY, newline=newline)
    assert [(e.order_no, e.direction, e.fen, e.pay_order_no, e.ref) for e in got] == [
        (P1, COLLECT, 20000, "2026112222001401", ""),
        (P2, COLLECT, 4200, "2026112222001402", ""),
        (P1, REFUND, 6000, R1, "2026112222001401"),  # a refund is keyed by its out_request_no (issue 14)
    ]


@pytest.mark.parametrize("encoding", ["gbk", "utf-8", "utf-8-noflag"])
def test_alipay_zip_member_names_in_gbk_without_the_utf8_flag_or_in_utf8(tmp_path, encoding):
    assert len(ali(tmp_path, ALI_DAY, name_encoding=encoding)) == 3


@given(st.text(alphabet=',`"{}:儿科abc 1', max_size=12), st.text(alphabet=',`"{}:儿科abc 1', max_size=12))
def test_wechat_any_free_text_leaves_the_money_as_it_is(scratch, name, attach):
    rows = [WxRow(AT, "4200009", P1, "SUCCESS", 1999, name=name, attach=attach),
            WxRow(AT, "4200009", P1, "REFUND", 999, refund_id="5039", out_refund_no=R1, name=name, attach=attach)]
    path = scratch / "wechat-free.csv"
    path.write_bytes(wechat_bill(rows))
    got = [Entry(*t) for t in flatten(read_wechat_bill(path))]
    assert sum(effect_of(e.direction, e.fen, e.state) for e in got) == 1000
    assert [e.pay_order_no for e in got] == ["4200009", "5039"]


@given(st.text(alphabet=',"儿科abc 1', max_size=12))
def test_alipay_any_name_leaves_the_money_as_it_is(scratch, name):
    rows = [AliRow("2026112222001409", P1, "交易", 1999, AT, name=name),
            AliRow("2026112222001409", P1, "退款", 999, AT, request_no=R1, name=name, order_fen=1999)]
    path = scratch / "alipay-free.zip"
    path.write_bytes(alipay_zip(rows))
    got = [Entry(*t) for t in flatten(read_alipay_bill(path))]
    assert sum(effect_of(e.direction, e.fen, e.state) for e in got) == 1000
