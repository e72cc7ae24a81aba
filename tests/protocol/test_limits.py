"""The hospital-limits-v1 document: the per-transaction limit as the gateway exports it and the
bridge and the POS are provisioned with it (issue 11 item 2: one source for the limit)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.amount import DEFAULT_LIMIT_FEN, MAX_FEN
from protocol.limits import HospitalLimits, LimitsError, format_limits, parse_limits


@given(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), st.integers(min_value=1, max_value=MAX_FEN))
def test_round_trip(hospital_id, fen):
    limits = HospitalLimits(hospital_id, fen)
    assert parse_limits(format_limits(limits)) == limits


def test_the_default_is_the_protocol_default():
    assert HospitalLimits("H001").per_transaction_fen == DEFAULT_LIMIT_FEN
    assert json.loads(format_limits(HospitalLimits("H001"))) == {"format": "hospital-limits-v1", "hospital_id": "H001",
                                                                 "per_transaction": "50000.00"}


@pytest.mark.parametrize(("doc", "why"), [
    ({"format": "hospital-limits-v1", "hospital_id": "H001", "per_transaction": "5000"}, "per_transaction is not a yuan amount"),
    ({"format": "hospital-limits-v1", "hospital_id": "H001", "per_transaction": "0.00"}, "zero"),
    ({"format": "hospital-limits-v1", "hospital_id": "H001", "per_transaction": 5000}, "per_transaction"),
    ({"format": "hospital-limits-v1", "hospital_id": "H001"}, "per_transaction is missing"),
    ({"format": "hospital-limits-v1", "hospital_id": "H 1", "per_transaction": "1.00"}, "hospital_id"),
    ({"format": "his-device-config-v1", "hospital_id": "H001", "per_transaction": "1.00"}, "gateway-admin hospital limits"),
    ({"format": "hospital-limits-v1", "hospital_id": "H001", "per_transaction": "1.00", "daily": "9.00"}, "unknown field 'daily'"),
])
def test_refuses_naming_the_field(doc, why):
    with pytest.raises(LimitsError) as info:
        parse_limits(json.dumps(doc), source="limits.json")
    assert info.value.code == "bad_limits" and why in str(info.value) and "limits.json" in str(info.value)


@given(st.binary(max_size=80))
def test_any_bytes_are_a_document_or_a_limits_error(data):
    try:
        parse_limits(data)
    except LimitsError:
        pass
