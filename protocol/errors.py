"""The one error base of the system, and the stable error codes of the HIS interface.

`CodedError` is the base of every error that crosses a boundary (an HTTP answer, the link, a CLI's
exit message, a screen, a log line someone searches for): its `code` is a stable snake_case name that
callers, scripts and tests match on, and its text is for a person. A family with its own table of
codes (`ErrorCode` here, `FlashCode`, `GatewayCode`, `SimCode`) sets `code` per instance to one of
its enum members (a `str` enum, so it compares equal to the name); any other error sets a class-level
`code`. tests/protocol/test_errors.py finds every exception class the shipped packages define and
holds them to this.

Every refusal of the HIS interface (HTTP API, link, terminal) is a `ProtocolError` whose `code`
is one of `ErrorCode`. The codes are part of the contract with HIS vendors: never rename one.
"""

from __future__ import annotations

import enum


class ErrorCode(str, enum.Enum):
    # The codes of his-interface-v1 section 2.
    MALFORMED_JSON = "malformed_json"
    BAD_ENVELOPE = "bad_envelope"
    UNSUPPORTED_SUITE = "unsupported_suite"
    UNKNOWN_KID = "unknown_kid"
    AUTH_FAILED = "auth_failed"
    CLOCK_SKEW = "clock_skew"
    REPLAY = "replay"
    UNKNOWN_TERMINAL = "unknown_terminal"
    DEVICE_UNAVAILABLE = "device_unavailable"
    MSG_ID_CONFLICT = "msg_id_conflict"
    BAD_AMOUNT = "bad_amount"
    BAD_ORDER_NO = "bad_order_no"
    TOO_LARGE = "too_large"
    # Additions for requests that are not envelopes at all (documented in docs/his-interface.md).
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    FORBIDDEN = "forbidden"
    REQUEST_TIMEOUT = "request_timeout"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL_ERROR = "internal_error"
    # Issue 14: the journal failed its integrity check (the process is locked until recovered), or
    # cannot be written right now (disk full, locked by another program; recovers by itself).
    JOURNAL_INTEGRITY = "journal_integrity"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    # His-interface 1.1 C: the instruction's expires_at (plus the allowed skew) passed and no device
    # ever acknowledged it. Not a result: nothing reached a POS; HIS may send the order again.
    EXPIRED_UNDELIVERED = "expired_undelivered"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.BAD_ENVELOPE: 400,
    ErrorCode.UNSUPPORTED_SUITE: 400,
    ErrorCode.UNKNOWN_KID: 401,
    ErrorCode.AUTH_FAILED: 401,
    ErrorCode.CLOCK_SKEW: 401,
    ErrorCode.REPLAY: 409,
    ErrorCode.UNKNOWN_TERMINAL: 403,
    ErrorCode.DEVICE_UNAVAILABLE: 503,
    ErrorCode.MSG_ID_CONFLICT: 409,
    ErrorCode.BAD_AMOUNT: 422,
    ErrorCode.BAD_ORDER_NO: 422,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.SHUTTING_DOWN: 503,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.JOURNAL_INTEGRITY: 503,
    ErrorCode.STORAGE_UNAVAILABLE: 503,
    ErrorCode.EXPIRED_UNDELIVERED: 410,
}


class CodedError(Exception):
    """Base of every error that crosses a boundary: `code` is stable, the message is for a person."""

    code: str = "error"  # every subclass names its own (a class attribute, or per instance)


class ProtocolError(CodedError):
    """A refusal with a stable code and a message a person can act on."""

    code: ErrorCode

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def to_json_obj(self) -> dict[str, dict[str, str]]:
        """The body the HTTP API answers with: {"error": {"code": ..., "message": ...}}."""
        return {"error": {"code": self.code.value, "message": self.message}}
