"""The gateway's one exception type and its stable codes.

A `GatewayError` is a refusal a caller can act on: `code` never changes once published (the POS,
operators' scripts and the docs key on it), `message` says what happened and what to do.
"""

from __future__ import annotations

import enum

from protocol.errors import CodedError


class GatewayCode(str, enum.Enum):
    # Configuration and storage.
    BAD_CONFIG = "bad_config"
    BAD_DATABASE_URL = "bad_database_url"
    SCHEMA_TOO_NEW = "schema_too_new"
    MASTER_KEY = "master_key"
    # Admin input.
    BAD_INPUT = "bad_input"
    EXISTS = "exists"
    UNKNOWN_HOSPITAL = "unknown_hospital"
    UNKNOWN_TERMINAL = "unknown_terminal"
    UNKNOWN_DEVICE = "unknown_device"
    NO_MERCHANT = "no_merchant"
    # Device requests.
    DEVICE_DISABLED = "device_disabled"
    DEVICE_UNBOUND = "device_unbound"
    WRONG_TERMINAL = "wrong_terminal"
    # Money rules.
    DUPLICATE_ORDER = "duplicate_order"
    OVER_TRANSACTION_LIMIT = "over_transaction_limit"
    OVER_TERMINAL_DAILY_LIMIT = "over_terminal_daily_limit"
    OVER_HOSPITAL_DAILY_LIMIT = "over_hospital_daily_limit"
    UNKNOWN_PAYMENT = "unknown_payment"
    NOT_PAID = "not_paid"
    REFUND_EXCEEDS_COLLECTED = "refund_exceeds_collected"
    DUPLICATE_REFUND = "duplicate_refund"
    UNKNOWN_REFUND = "unknown_refund"
    BAD_TRANSITION = "bad_transition"
    INSTRUCTION_USED = "instruction_used"
    # A channel's own documented limits, refused before the channel is asked (WeChat Pay).
    REFUND_WINDOW_CLOSED = "refund_window_closed"
    TOO_MANY_REFUNDS = "too_many_refunds"
    # The POS -> gateway API.
    BAD_REQUEST = "bad_request"
    BAD_REQUEST_AUTH = "bad_request_auth"
    BAD_SIGNATURE = "bad_signature"
    CLOCK_SKEW = "clock_skew"
    REPLAY = "replay"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    IN_PROGRESS = "in_progress"
    BAD_INSTRUCTION = "bad_instruction"
    INSTRUCTION_MISMATCH = "instruction_mismatch"
    HIS_SIGNATURE_REQUIRED = "his_signature_required"
    BAD_HIS_SIGNATURE = "bad_his_signature"
    NOTIFICATION_MISMATCH = "notification_mismatch"  # a channel notification whose app, amount or refund is not the trade's
    CHANNEL_UNAVAILABLE = "channel_unavailable"
    # WeChat Pay refund notifications that do not open or verify (gateway.wechat_notifications).
    BAD_NOTIFICATION = "bad_notification"
    # Alipay third-party authorisation (gateway.alipay_authorizations): each says what the operator does next.
    ALIPAY_AUTH_CODE_INVALID = "alipay_auth_code_invalid"  # wrong or expired app_auth_code (or used elsewhere): authorise again
    ALIPAY_AUTH_CODE_USED = "alipay_auth_code_used"  # this gateway already exchanged that code
    ALIPAY_APP_MISMATCH = "alipay_app_mismatch"  # the code or token was granted to another app than our third-party app
    ALIPAY_MERCHANT_MISMATCH = "alipay_merchant_mismatch"  # authorised by another merchant than the hospital's
    ALIPAY_REAUTHORIZE = "alipay_reauthorize"  # the refresh token ended or was refused: the hospital must authorise again
    ALIPAY_NOT_AUTHORIZED = "alipay_not_authorized"  # no authorisation from a code stored for the hospital
    DATABASE_UNAVAILABLE = "database_unavailable"
    INTERNAL_ERROR = "internal_error"


# The HTTP status of each code on the POS API (anything unlisted is 422: understood but refused).
HTTP_STATUS: dict[str, int] = {
    "bad_request": 400, "bad_request_auth": 401, "bad_signature": 401, "clock_skew": 401, "unknown_device": 401,
    "device_disabled": 403, "device_unbound": 403, "wrong_terminal": 403, "replay": 409, "not_found": 404,
    "too_large": 413, "idempotency_conflict": 409, "in_progress": 409, "duplicate_order": 409,
    "channel_unavailable": 503, "database_unavailable": 503, "internal_error": 500, "bad_instruction": 422, "instruction_mismatch": 422,
    "his_signature_required": 403, "bad_his_signature": 403,
}


class GatewayError(CodedError):
    """A refusal with a stable `code` and a message a person can act on."""

    code: GatewayCode

    def __init__(self, code: GatewayCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code.value, 422)

    def to_json_obj(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code.value, "message": self.message}}
