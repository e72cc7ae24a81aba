"""Instruction and result plaintexts: round trips and strict decoding."""

import json

import pytest
from hypothesis import given

from protocol.amount import parse_amount
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    Instruction,
    PayStatus,
    decode_instruction,
    decode_result,
    encode_instruction,
    encode_result,
    mask_patient_name,
)
from protocol.strictjson import dumps_compact
from tests.protocol.strategies import instructions, results

SPEC_INSTRUCTION = {
    "terminal_id": "T0001",
    "order_no": "MZ20261122000123",
    "amount": "+12.50",
    "display": {"patient": "张*明", "items": [{"name": "阿莫西林胶囊", "qty": "2", "amount": "12.50"}]},
}
SPEC_RESULT = {
    "device_id": "D-SN-000123",
    "order_no": "MZ20261122000123",
    "pay_order_no": "4200001234202611220000000001",
    "pay_status": "SUCCESS",
    "pay_channel": "WECHAT",
    "amount": "+12.50",
    "finished_at": 1795000042,
    "error_code": None,
    "error_message": None,
}


def _instruction(**changes):
    obj = dict(SPEC_INSTRUCTION, **changes)
    return dumps_compact({k: v for k, v in obj.items() if v is not ...})


def test_the_spec_examples_decode():
    ins = decode_instruction(_instruction(), header_terminal_id="T0001")
    assert ins.amount.fen == 1250 and ins.display.items[0].amount_fen == 1250
    assert encode_instruction(ins) == SPEC_INSTRUCTION
    res = decode_result(dumps_compact(SPEC_RESULT), header_device_id="D-SN-000123")
    assert res.pay_status is PayStatus.SUCCESS
    assert encode_result(res) == SPEC_RESULT


@given(instructions)
def test_instruction_round_trip(ins: Instruction):
    decoded = decode_instruction(dumps_compact(encode_instruction(ins)), header_terminal_id=ins.terminal_id, limit_fen=10**12)
    assert decoded == ins


@given(results)
def test_result_round_trip(res):
    assert decode_result(dumps_compact(encode_result(res)), header_device_id=res.device_id) == res


@pytest.mark.parametrize(
    ("changes", "code", "why"),
    [
        ({"amount": "+12.5"}, ErrorCode.BAD_AMOUNT, "two decimals"),
        ({"amount": 12.5}, ErrorCode.BAD_AMOUNT, "JSON string"),
        ({"amount": -1250}, ErrorCode.BAD_AMOUNT, "JSON string"),
        ({"amount": ...}, ErrorCode.BAD_AMOUNT, "instruction.amount is missing"),
        ({"order_no": ...}, ErrorCode.BAD_ORDER_NO, "instruction.order_no is missing"),
        ({"order_no": "MZ 1"}, ErrorCode.BAD_ORDER_NO, "order_no"),
        ({"order_no": 123}, ErrorCode.BAD_ORDER_NO, "must be a string"),
        ({"terminal_id": "T0002"}, ErrorCode.UNKNOWN_TERMINAL, "differs from the envelope"),
        ({"terminal_id": True}, ErrorCode.BAD_ENVELOPE, "must be a string"),
        ({"display": "张三"}, ErrorCode.BAD_ENVELOPE, "display must be an object"),
        ({"display": {"items": [{"name": "x", "qty": "1", "amount": "1.5"}]}}, ErrorCode.BAD_ENVELOPE, "two decimals"),
        ({"display": {"items": [{"name": "x", "qty": "1", "amount": "-1.50"}]}}, ErrorCode.BAD_ENVELOPE, "items[0].amount"),
        ({"display": {"items": ["x"]}}, ErrorCode.BAD_ENVELOPE, "items[0] must be an object"),
        ({"display": {"items": [{"name": "x", "qty": 1, "amount": "1.50"}]}}, ErrorCode.BAD_ENVELOPE, "qty must be a string"),
        ({"display": {"patient": "x" * 33}}, ErrorCode.BAD_ENVELOPE, "longer than 32"),
    ],
)
def test_instruction_refusals(changes, code, why):
    with pytest.raises(ProtocolError) as info:
        decode_instruction(_instruction(**changes), header_terminal_id="T0001")
    assert info.value.code is code
    assert why in info.value.message


def test_duplicate_keys_in_a_plaintext_are_refused():
    # Two parsers could disagree about which amount counts: refuse outright.
    text = b'{"terminal_id":"T0001","order_no":"MZ1","amount":"+1.00","amount":"-900.00"}'
    with pytest.raises(ProtocolError) as info:
        decode_instruction(text, header_terminal_id="T0001")
    assert info.value.code is ErrorCode.MALFORMED_JSON


def test_instruction_amount_limit_applies():
    with pytest.raises(ProtocolError, match="limit"):
        decode_instruction(_instruction(amount="+600.00"), header_terminal_id="T0001", limit_fen=50000)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"finished_at": True}, "must be an integer, not a boolean"),
        ({"finished_at": 1.5}, "must be an integer"),
        ({"pay_status": "PAID"}, "is not one of SUCCESS"),
        ({"pay_channel": "PAYPAL"}, "is not one of WECHAT"),
        ({"device_id": "D-OTHER"}, "differs from the envelope"),
        ({"pay_order_no": None}, "must be a string"),
    ],
)
def test_result_refusals(changes, why):
    with pytest.raises(ProtocolError, match=why):
        decode_result(dumps_compact(dict(SPEC_RESULT, **changes)), header_device_id="D-SN-000123")


def test_unknown_plaintext_fields_are_ignored():
    obj = dict(SPEC_INSTRUCTION, extra={"future": 1})
    assert decode_instruction(json.dumps(obj).encode(), header_terminal_id="T0001").order_no == "MZ20261122000123"


@pytest.mark.parametrize(("name", "masked"), [("张三明", "张*明"), ("张*明", "张*明"), ("李四", "李*"), ("王", "*"), ("欧阳娜娜", "欧**娜")])
def test_mask_patient_name(name, masked):
    assert mask_patient_name(name) == masked
    assert mask_patient_name(masked) == masked or len(name) <= 2


def test_refund_amount_stays_negative_in_results():
    res = decode_result(dumps_compact(dict(SPEC_RESULT, amount="-5.00", pay_status="REFUNDED")), header_device_id="D-SN-000123")
    assert res.amount == parse_amount("-5.00")
