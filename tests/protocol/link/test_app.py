"""DATA application messages (protocol/link/app.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.amount import parse_amount
from protocol.crypto import SharedKey
from protocol.envelope import seal_instruction, seal_result
from protocol.errors import ErrorCode, ProtocolError
from protocol.link.app import InstructionMsg, ProgressMsg, NotTakenMsg, ResultMsg, decode_app, encode_app
from protocol.messages import Instruction, PayStatus, Progress, Result

KEY = SharedKey("k1", "AES-256-GCM", bytes(32))


def test_app_messages_round_trip():
    ins = seal_instruction(Instruction("T0001", "MZ1", parse_amount("+1.00")), key=KEY, msg_id="m1", ts=1, nonce=bytes(12))
    res = seal_result(
        Result("D1", "MZ1", "", PayStatus.CLOSED, None, parse_amount("+1.00"), 2, "cancelled", None),
        key=KEY, msg_id="r1", reply_to="m1", ts=2, nonce=bytes(12),
    )
    for message in (
        InstructionMsg(ins),
        ResultMsg(res),
        ProgressMsg("m1", Progress.AWAITING_SCAN),
        NotTakenMsg("m1", ErrorCode.UNKNOWN_KID, "kid k1 is not known here"),
    ):
        assert decode_app(encode_app(message)) == message


@pytest.mark.parametrize(
    "payload",
    [
        b'{"kind":"wire-transfer"}',
        b'{"kind":"progress","msg_id":"m1","state":"robbed"}',
        b'{"kind":"not_taken","msg_id":"m1","code":"nope","message":"x"}',
        b'{"kind":"refused","msg_id":"m1","code":"auth_failed","message":"x"}',  # 1.1: nothing unsealed ends an instruction
        b'{"kind":"result","envelope":{"v":1}}',
        b'{"kind":"instruction","envelope":"x"}',
        b'{"kind":"progress","msg_id":"m 1","state":"paying"}',
        b'{"kind":"progress","msg_id":"m1","state":"paying","event":{"code":"declined","message":"x"}}',
        b'{"kind":"progress","msg_id":"m1","state":"paying","event":"declined"}',
        b'{"kind":"instruction","envelope":{"v":1},"expires_at":"1795000600"}',
        b'{"kind":"cancel","envelope":{"v":1,"type":"instruction"}}',
    ],
)
def test_bad_app_messages_are_refused(payload):
    with pytest.raises(ProtocolError) as info:
        decode_app(payload)
    assert info.value.code in (ErrorCode.BAD_ENVELOPE, ErrorCode.MALFORMED_JSON)


@given(st.binary(max_size=200))
def test_arbitrary_data_payloads_never_escape(data):
    try:
        decode_app(data)
    except ProtocolError:
        pass


@given(expires_at=st.none() | st.integers(min_value=1, max_value=2**40),
       code=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=64),
       message=st.text(max_size=256).filter(lambda t: t.isprintable()), at=st.integers(min_value=0, max_value=2**40),
       state=st.sampled_from(list(Progress)))
def test_part_c_app_messages_round_trip(expires_at, code, message, at, state):
    """His-interface 1.1 C on the link: the bridge's expires_at, the cancel, the progress event."""
    from protocol.envelope import seal_cancel
    from protocol.link.app import CancelMsg, ProgressEvent
    from protocol.messages import Cancel

    ins = seal_instruction(Instruction("T0001", "MZ1", parse_amount("+1.00"), None, expires_at), key=KEY, msg_id="m1", ts=1,
                           nonce=bytes(12))
    cancel = seal_cancel(Cancel("T0001", "MZ1"), key=KEY, msg_id="c1", reply_to="m1", ts=2, nonce=bytes(12))
    for message_ in (InstructionMsg(ins, expires_at), CancelMsg(cancel), ProgressMsg("m1", state, ProgressEvent(code, message, at)),
                     ProgressMsg("m1", state)):
        assert decode_app(encode_app(message_)) == message_
