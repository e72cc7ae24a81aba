"""The simulator's one exception type and its stable error codes (control API, `pos-sim`, launcher).

Every refusal of the virtual device's control API is `{"error": {"code": "<code>", "message": "..."}}`
with the HTTP status below; `pos-sim` prints `pos-sim: <code>: <message>` and exits 1. The codes are
part of the documented interface (docs/simulator.md, "Device control API"): scripts may rely on them.
"""

from __future__ import annotations

import enum


class SimCode(str, enum.Enum):
    BAD_REQUEST = "bad_request"  # a field is missing, of the wrong type or out of range
    MALFORMED_JSON = "malformed_json"  # the body is not a JSON object
    TOO_LARGE = "too_large"  # the body exceeds the control API's limit
    NOT_FOUND = "not_found"  # no such endpoint
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOTHING_TO_SCAN = "nothing_to_scan"  # no collection is waiting for a payment code
    NOT_A_PAYMENT_CODE = "not_a_payment_code"  # the scan is not a WeChat Pay / Alipay code (reason says what)
    CHANNEL_UNAVAILABLE = "channel_unavailable"  # the code's channel is not configured on this device
    QR_UNREADABLE = "qr_unreadable"  # the image holds no code the camera can read
    NOTHING_TO_CANCEL = "nothing_to_cancel"  # no instruction on screen
    BUSY = "busy"  # the action is not possible in the current state (e.g. cancel while paying)
    NOTHING_TO_CONFIRM = "nothing_to_confirm"  # no refund is waiting for the supervisor
    NOTHING_NEEDS_PERSON = "nothing_needs_person"  # recheck: no instruction is handed to a person
    WRONG_PIN = "wrong_pin"
    PIN_LOCKED = "pin_locked"
    POWERED_OFF = "powered_off"  # the device is off (a power cut); POST /v1/faults {"fault": "power_on"}
    NO_APPLICATION = "no_application"  # the device booted no configuration (recovery mode): flash one
    ALREADY_ON = "already_on"
    BAD_FAULT = "bad_fault"  # a fault description that cannot be applied
    NOT_RUNNING = "not_running"  # pos-sim: no simulator answers for this storage directory
    STORAGE = "storage"  # the storage directory is not a provisioned device, or is in use
    START_FAILED = "start_failed"  # the headless system could not start a part


HTTP_STATUS: dict[SimCode, int] = {
    SimCode.BAD_REQUEST: 400,
    SimCode.MALFORMED_JSON: 400,
    SimCode.TOO_LARGE: 413,
    SimCode.NOT_FOUND: 404,
    SimCode.METHOD_NOT_ALLOWED: 405,
    SimCode.NOTHING_TO_SCAN: 409,
    SimCode.NOT_A_PAYMENT_CODE: 422,
    SimCode.CHANNEL_UNAVAILABLE: 409,
    SimCode.QR_UNREADABLE: 422,
    SimCode.NOTHING_TO_CANCEL: 409,
    SimCode.BUSY: 409,
    SimCode.NOTHING_TO_CONFIRM: 409,
    SimCode.NOTHING_NEEDS_PERSON: 409,
    SimCode.WRONG_PIN: 403,
    SimCode.PIN_LOCKED: 423,
    SimCode.POWERED_OFF: 409,
    SimCode.NO_APPLICATION: 409,
    SimCode.ALREADY_ON: 409,
    SimCode.BAD_FAULT: 400,
    SimCode.NOT_RUNNING: 503,
    SimCode.STORAGE: 500,
    SimCode.START_FAILED: 500,
}


class SimError(Exception):
    """A refusal with a stable `code`, a message a person can act on, and optional extra fields."""

    def __init__(self, code: SimCode, message: str, **details: object) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.details = details

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def to_json_obj(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code.value, "message": self.message}
        body.update(self.details)
        return {"error": body}
