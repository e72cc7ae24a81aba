"""Strict JSON: decoding that refuses what lenient parsers let through, and typed field access.

Refused: invalid UTF-8, duplicate keys (two parsers could pick different values), NaN/Infinity,
nesting too deep for the parser, a top level that is not an object. Sizes are bounded by callers
(64 KiB bodies), and field getters only descend into the members a message defines. Field getters refuse wrong
types, including booleans where integers belong (in Python `True` is an `int`; not here).
"""

from __future__ import annotations

import builtins
import json
import unicodedata
from typing import Any, Mapping

from protocol.errors import ErrorCode, ProtocolError

JsonObject = dict[str, object]  # JSON as it is parsed: every value must be checked before use
# A report a process gives about itself (GET /v1/health, the simulator's status): built by its owner,
# read by operators, scripts and tests that index into it freely, so its values are typed Any.
ReportJson = dict[str, Any]


def _no_duplicates(pairs: list[tuple[str, object]]) -> JsonObject:
    obj: JsonObject = {}
    for key, value in pairs:
        if key in obj:
            raise ProtocolError(ErrorCode.MALFORMED_JSON, f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> object:
    raise ProtocolError(ErrorCode.MALFORMED_JSON, f"{name} is not valid JSON")


def loads_object(data: bytes | str, *, what: str = "body") -> JsonObject:
    """Decode a JSON object strictly; raise ProtocolError(malformed_json) otherwise."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(ErrorCode.MALFORMED_JSON, f"{what} is not UTF-8 (byte {exc.start})") from None
    else:
        text = data
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError(ErrorCode.MALFORMED_JSON, f"{what} is nested too deeply") from None
    except ValueError as exc:
        msg = getattr(exc, "msg", str(exc))
        pos = getattr(exc, "pos", None)
        where = f" at character {pos}" if pos is not None else ""
        raise ProtocolError(ErrorCode.MALFORMED_JSON, f"{what} is not valid JSON: {msg}{where}") from None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.MALFORMED_JSON, f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def dumps_compact(obj: object) -> bytes:
    """The canonical encoding we send: compact, UTF-8 (not \\u-escaped), keys in given order."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


class Fields:
    """Typed, named access to the members of a decoded JSON object.

    Every failure raises ProtocolError with `code` and a message naming `where.field`.
    """

    def __init__(self, obj: Mapping[str, object], *, where: str, code: ErrorCode = ErrorCode.BAD_ENVELOPE) -> None:
        self._obj = obj
        self._where = where
        self._code = code

    def _fail(self, field: str, why: str, code: ErrorCode | None = None) -> ProtocolError:
        return ProtocolError(code or self._code, f"{self._where}.{field} {why}")

    def has(self, field: str) -> bool:
        return field in self._obj

    def raw(self, field: str) -> object:
        if field not in self._obj:
            raise self._fail(field, "is missing")
        return self._obj[field]

    def str(self, field: str, *, optional: bool = False, max_len: int = 4096) -> str | None:
        if optional and self._obj.get(field) is None:
            return None
        value = self.raw(field)
        if not isinstance(value, str):
            raise self._fail(field, f"must be a string, not {_kind(value)}")
        if len(value) > max_len:
            raise self._fail(field, f"is longer than {max_len} characters")
        if not value.isprintable() and _has_forbidden(value):
            raise self._fail(field, "contains control, format or unpaired surrogate characters")
        return value

    def req_str(self, field: builtins.str, *, max_len: builtins.int = 4096) -> builtins.str:
        value = self.str(field, max_len=max_len)
        assert value is not None
        return value

    def int(self, field: builtins.str, *, minimum: builtins.int | None = None, maximum: builtins.int | None = None) -> builtins.int:
        value = self.raw(field)
        if type(value) is not int:  # refuses bool, float and everything else
            raise self._fail(field, f"must be an integer, not {_kind(value)}")
        if minimum is not None and value < minimum:
            raise self._fail(field, f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise self._fail(field, f"must be at most {maximum}")
        return value

    def obj(self, field: builtins.str, *, optional: bool = False) -> Mapping[builtins.str, object] | None:
        if optional and self._obj.get(field) is None:
            return None
        value = self.raw(field)
        if not isinstance(value, dict):
            raise self._fail(field, f"must be an object, not {_kind(value)}")
        return value

    def list(self, field: builtins.str, *, max_items: builtins.int) -> builtins.list[object]:
        value = self.raw(field)
        if not isinstance(value, list):
            raise self._fail(field, f"must be an array, not {_kind(value)}")
        if len(value) > max_items:
            raise self._fail(field, f"has more than {max_items} entries")
        return value


# Refused in text fields: controls (Cc), format characters such as bidi overrides that could make a
# screen show something other than what was sent (Cf), surrogates (Cs), private use (Co), line and
# paragraph separators (Zl, Zp). Spaces of every kind (Zs, e.g. the ideographic space) are fine.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _has_forbidden(value: str) -> bool:
    return any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
