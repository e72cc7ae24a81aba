"""Identifier grammars: kid, msg_id, terminal_id, device_id, reply_to, order_no.

IDs are `[A-Za-z0-9_-]{1,64}` (ASCII only); order numbers are `[A-Za-z0-9_-]{1,32}`.
A bad ID in an envelope header is `bad_envelope`; a bad order number is `bad_order_no`.
"""

from __future__ import annotations

import re
from typing import TypeGuard

from protocol.errors import ErrorCode, ProtocolError

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_ORDER_NO = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII)


def is_valid_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_id(field: str, value: object, *, code: ErrorCode = ErrorCode.BAD_ENVELOPE) -> str:
    """Return `value` if it is a valid ID, else raise ProtocolError naming `field`."""
    if not isinstance(value, str):
        raise ProtocolError(code, f"{field} must be a string, not {type(value).__name__}")
    if _ID.fullmatch(value) is None:
        raise ProtocolError(code, f"{field} {_shown(value)} must match [A-Za-z0-9_-]{{1,64}}")
    return value


def check_order_no(value: object) -> str:
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_ORDER_NO, f"order_no must be a string, not {type(value).__name__}")
    if _ORDER_NO.fullmatch(value) is None:
        raise ProtocolError(ErrorCode.BAD_ORDER_NO, f"order_no {_shown(value)} must match [A-Za-z0-9_-]{{1,32}}")
    return value


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
