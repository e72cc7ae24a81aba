"""The gateway's one exception type and its stable codes.

A `GatewayError` is a refusal a caller can act on: `code` never changes once published (the POS,
operators' scripts and the docs key on it), `message` says what happened and what to do.
"""

from __future__ import annotations

import enum


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


class GatewayError(Exception):
    """A refusal with a stable `code` and a message a person can act on."""

    def __init__(self, code: GatewayCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
