"""Hypothesis strategies for protocol objects, shared by the protocol tests."""

from hypothesis import strategies as st

from protocol.amount import DEFAULT_LIMIT_FEN, Amount, Direction
from protocol.messages import BillItem, Display, Instruction, PayChannel, PayStatus, Result, ResultCode

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
ids = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=64)
order_nos = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=32)
printable = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), max_size=20)
amounts = st.builds(Amount, st.sampled_from(Direction), st.integers(min_value=1, max_value=DEFAULT_LIMIT_FEN))
items = st.builds(BillItem, printable.filter(bool), st.text(alphabet="0123456789.", min_size=1, max_size=5), st.integers(0, 10**8))
displays = st.builds(Display, st.none() | printable, st.lists(items, max_size=5).map(tuple))
instructions = st.builds(Instruction, ids, order_nos, amounts, st.none() | displays)
results = st.builds(
    Result,
    device_id=ids,
    order_no=order_nos,
    pay_order_no=st.text(alphabet=ID_ALPHABET, max_size=64),
    pay_status=st.sampled_from(PayStatus),
    pay_channel=st.none() | st.sampled_from(PayChannel),
    amount=amounts,
    finished_at=st.integers(0, 2**40),
    error_code=st.none() | st.sampled_from([c.value for c in ResultCode]),
    error_message=st.none() | printable,
)
