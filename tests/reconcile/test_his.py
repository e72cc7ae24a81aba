"""The HIS ledger: neutral format, vendor mappings, and every bad input named by file, line, field."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.errors import BadInput, ConfigError, ReconcileError
from reconcile.his import NEUTRAL, load_mapping, mapping_from_dict, read_his
from reconcile.model import COLLECT, REFUND, Channel, Entry, State, flatten

HEADER = "order_no,msg_id,direction,amount,status,pay_channel,pay_order_no,finished_at\n"


def rows(path: Path, mapping=NEUTRAL) -> list[Entry]:
    return [Entry(*t) for t in flatten(read_his(path, mapping))]


def write(tmp_path: Path, text: str, name: str = "his.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_reads_the_neutral_format(tmp_path):
    path = write(tmp_path, "\ufeff" + HEADER
                 + "MZ1,HIS-1,+,12.50,SUCCESS,WECHAT,4200001,2026-11-22 10:00:42\r\n"
                 + "MZ1,HIS-2,-,2.50,PENDING,,,\r\n"
                 + '"MZ,3",HIS-3,+,0.01,FAILED,ALIPAY,,"2026-11-22\n10:00"\n'
                 + "#END,3\n")
    got = rows(path)
    assert [(e.order_no, e.msg_id, e.direction, e.fen, e.state, e.channel) for e in got] == [
        ("MZ1", "HIS-1", COLLECT, 1250, State.MOVED, Channel.WECHAT),
        ("MZ1", "HIS-2", REFUND, 250, State.PENDING, Channel.UNKNOWN),
        ("MZ,3", "HIS-3", COLLECT, 1, State.NOT_MOVED, Channel.ALIPAY),
    ]
    assert [e.line for e in got] == [2, 3, 4]
    assert got[0].pay_order_no == "4200001" and got[0].at == "2026-11-22 10:00:42"


def test_a_vendor_mapping_reads_gbk_with_its_own_columns_and_words(tmp_path):
    mapping = write(tmp_path, """
[file]
encoding = "gbk"
skip_lines = 1
signed_amount = true
[columns]
order_no = "门诊号"
msg_id = "指令号"
amount = "金额"
status = "状态"
pay_channel = "支付方式"
[values.status]
"已收费" = "SUCCESS"
"已退费" = "SUCCESS"
"待确认" = "PENDING"
[values.pay_channel]
"微信" = "WECHAT"
"支付宝" = "ALIPAY"
""", "vendor.toml")
    path = write(tmp_path, "门诊收费流水 2026-11-22\n门诊号,指令号,金额,状态,支付方式,备注\nMZ1,I1,12.50,已收费,微信,张*\nMZ1,I2,-5.00,已退费,微信,\nMZ2,I3,8.00,待确认,支付宝,\n",
                 encoding="gbk")
    got = rows(path, load_mapping(mapping))
    assert [(e.order_no, e.msg_id, e.direction, e.fen, e.state, e.channel) for e in got] == [
        ("MZ1", "I1", COLLECT, 1250, State.MOVED, Channel.WECHAT),
        ("MZ1", "I2", REFUND, 500, State.MOVED, Channel.WECHAT),
        ("MZ2", "I3", COLLECT, 800, State.PENDING, Channel.ALIPAY),
    ]


@pytest.mark.parametrize(("body", "line", "field", "why"), [
    ("MZ1,HIS-1,+,12.5,SUCCESS,,,\n", 2, "amount", "two decimals"),
    ("MZ1,HIS-1,+,abc,SUCCESS,,,\n", 2, "amount", "amount"),
    ("MZ1,HIS-1,+,１２.５０,SUCCESS,,,\n", 2, "amount", "ASCII"),
    ("MZ1,HIS-1,+,0.00,SUCCESS,,,\n", 2, "amount", "zero"),
    ("MZ1,HIS-1,+,1.00,SUCCESS,,,\nMZ2,HIS-2,*,1.00,SUCCESS,,,\n", 3, "direction", "'*'"),
    ("MZ1,HIS-1,+,1.00,DONE,,,\n", 2, "status", "'DONE'"),
    ("MZ1,HIS-1,+,1.00,SUCCESS,PAYPAL,,\n", 2, "pay_channel", "'PAYPAL'"),
    (",HIS-1,+,1.00,SUCCESS,,,\n", 2, "order_no", "empty"),
    ("MZ1,HIS-1,+,1.00,SUCCESS,,\n", 2, None, "7 fields"),
    ("MZ1,HIS-1,+,1.00,SUCCESS,,,\n#END,2\n", 3, None, "trailer says 2"),
    ("MZ1,HIS-1,+,1.00,SUCCESS,,,\n#END,1\nMZ2,HIS-2,+,1.00,SUCCESS,,,\n", 4, None, "after the #END"),
    ('MZ1,"HIS-1,+,1.00,SUCCESS,,,\n', 2, None, "not closed"),
])
def test_bad_rows_are_refused_naming_file_line_and_field(tmp_path, body, line, field, why):
    path = write(tmp_path, HEADER + body)
    with pytest.raises(BadInput) as caught:
        rows(path)
    err = caught.value
    assert (err.file, err.line, err.field) == ("his.csv", line, field)
    assert why in str(err) and "his.csv" in str(err)


def test_a_wrong_column_and_a_wrong_encoding_are_named(tmp_path):
    with pytest.raises(BadInput, match="line 1: field 'status': required column missing"):
        rows(write(tmp_path, "order_no,msg_id,direction,amount,state\nMZ1,H,+,1.00,SUCCESS\n"))
    with pytest.raises(BadInput, match=r"line 2: bytes at column 5 are not valid UTF-8"):
        rows(write(tmp_path, HEADER + "MZ1,收费,+,1.00,SUCCESS,,,\n", encoding="gbk"))
    with pytest.raises(BadInput, match="empty file"):
        rows(write(tmp_path, ""))


def test_a_mapping_that_requires_the_trailer_catches_a_cut_export(tmp_path):
    path = write(tmp_path, HEADER + "MZ1,HIS-1,+,1.00,SUCCESS,,,\n")
    with pytest.raises(BadInput, match="no #END trailer"):
        rows(path, mapping_from_dict({"file": {"require_trailer": True}}))


@pytest.mark.parametrize(("data", "why"), [
    ({"file": {"encoding": "latin-1"}}, "encoding"),
    ({"file": {"colour": "red"}}, "unknown key"),
    ({"columns": {"patient": "姓名"}}, "unknown key"),
    ({"values": {"status": {"已收": "PAID"}}}, "must be one of"),
    ({"file": {"skip_lines": -1}}, "skip_lines"),
])
def test_mapping_mistakes_are_config_errors(data, why):
    with pytest.raises(ConfigError, match=why):
        mapping_from_dict(data)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(scratch, data):
    path = scratch / "fuzz-his.csv"
    path.write_bytes(data)
    try:
        rows(path)
    except ReconcileError:
        pass


@given(st.lists(st.text(alphabet="MZ0123456789,.+-\"\n SUCESFAILDPNGWCHTLIY#", max_size=40), max_size=8))
def test_near_miss_lines_never_crash_the_parser(scratch, lines):
    path = scratch / "fuzz-his2.csv"
    path.write_text(HEADER + "\n".join(lines), encoding="utf-8")
    try:
        for e in rows(path):
            assert e.fen > 0 and e.direction in (COLLECT, REFUND)
    except BadInput as exc:
        assert exc.file == "fuzz-his2.csv" and exc.line is not None
