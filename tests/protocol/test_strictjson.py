"""Strict JSON decoding and typed fields."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import ErrorCode, ProtocolError
from protocol.strictjson import Fields, dumps_compact, loads_object


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"a": 1} x', "not valid JSON"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ],
)
def test_refusals(data, why):
    with pytest.raises(ProtocolError) as info:
        loads_object(data)
    assert info.value.code is ErrorCode.MALFORMED_JSON
    assert why in info.value.message


def test_nested_duplicates_are_refused_too():
    with pytest.raises(ProtocolError, match="duplicate key 'x'"):
        loads_object(b'{"d": {"x": 1, "x": 1}}')


def test_fields_refuse_booleans_where_integers_belong():
    f = Fields({"ts": True, "n": 1.0, "s": 5, "o": [], "l": {}}, where="envelope")
    with pytest.raises(ProtocolError, match="envelope.ts must be an integer, not a boolean"):
        f.int("ts")
    with pytest.raises(ProtocolError, match="not a number with a fraction"):
        f.int("n")
    with pytest.raises(ProtocolError, match="envelope.s must be a string, not an integer"):
        f.str("s")
    with pytest.raises(ProtocolError, match="must be an object"):
        f.obj("o")
    with pytest.raises(ProtocolError, match="must be an array"):
        f.list("l", max_items=3)
    with pytest.raises(ProtocolError, match="envelope.missing is missing"):
        f.raw("missing")


def test_strings_with_control_characters_or_lone_surrogates_are_refused():
    obj = loads_object(b'{"a": "x\\u0000y", "b": "\\ud800", "c": "ok \xe5\xbc\xa0"}')
    f = Fields(obj, where="m")
    with pytest.raises(ProtocolError, match="control, format"):
        f.str("a")
    with pytest.raises(ProtocolError, match="surrogate"):
        f.str("b")
    assert f.str("c") == "ok 张"


def test_compact_encoding_keeps_utf8():
    assert dumps_compact({"p": "张*明", "n": 1}) == '{"p":"张*明","n":1}'.encode()


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_anything_but_malformed_json(data):
    try:
        loads_object(data)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.MALFORMED_JSON


def test_bidi_overrides_are_refused_but_every_kind_of_space_is_fine():
    f = Fields(loads_object('{"a": "阿莫西林\u202e5.00", "b": "阿莫西林\u3000胶囊\u00a0x"}'.encode()), where="m")
    with pytest.raises(ProtocolError, match="format"):
        f.str("a")
    assert f.str("b") == "阿莫西林\u3000胶囊\u00a0x"
