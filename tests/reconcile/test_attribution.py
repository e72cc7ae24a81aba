"""Which bill rows are the POS's trades (issue 17, finding 6)."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from reconcile.attribution import POS, POS_ORDER_NO, Attribution
from terminal import lifecycle
from terminal.journal import InstructionRow


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=8), st.integers(min_value=1, max_value=lifecycle.MAX_ATTEMPTS))
def test_every_order_number_the_pos_makes_is_recognised(msg_id, salt, attempt):
    row = InstructionRow.__new__(InstructionRow)
    for f in dataclasses.fields(InstructionRow):
        object.__setattr__(row, f.name, None)
    object.__setattr__(row, "kid", "k2026a")
    object.__setattr__(row, "msg_id", msg_id)
    object.__setattr__(row, "salt", salt)
    number = lifecycle.out_trade_no("D-SN-000123", row, attempt)
    assert POS_ORDER_NO.fullmatch(number)
    assert POS.why_not(number, "MICROPAY", "") is None and POS.why_not(number, None, "") is None


def test_other_trade_types_order_numbers_and_devices_are_not_the_pos():
    pos = "P" + "0" * 26 + "01"
    assert "JSAPI" in POS.why_not(pos, "JSAPI", "")
    assert "not made by the POS" in POS.why_not("WXGZH20261122000017", "MICROPAY", "")
    assert "not made by the POS" in POS.why_not("p" + "0" * 26 + "01", "MICROPAY", "")
    only = Attribution(frozenset({"D-SN-000123"}))
    assert only.why_not(pos, "MICROPAY", "D-SN-000123") is None
    assert "YF-01" in only.why_not(pos, "MICROPAY", "YF-01")
