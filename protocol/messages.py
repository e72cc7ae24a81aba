"""The plaintexts inside envelopes: the instruction (step 3) and the result (step 5).

Decoding is strict (see `strictjson`) and returns frozen dataclasses; encoding returns the JSON
object we send. Business outcomes travel as results with a `pay_status` and a `ResultCode`;
only protocol-level problems are `ProtocolError`s.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping, TypeVar

from protocol.amount import DEFAULT_LIMIT_FEN, MAX_FEN, Amount, format_amount, format_yuan, parse_amount, parse_yuan
from protocol.errors import ErrorCode, ProtocolError
from protocol.ids import check_id, check_order_no
from protocol.strictjson import Fields, JsonObject, loads_object

MAX_DISPLAY_ITEMS = 100
MAX_ITEM_NAME = 64
MAX_ITEM_QTY = 16
MAX_PATIENT = 32
MAX_PAY_ORDER_NO = 64
MAX_ERROR_MESSAGE = 256
MAX_EXPIRES_AT = 2**40  # like ts: unix seconds


class PayStatus(enum.Enum):
    SUCCESS = "SUCCESS"  # collected
    FAILED = "FAILED"  # nothing was collected
    CLOSED = "CLOSED"  # cancelled or reversed: nothing was collected
    REFUNDED = "REFUNDED"  # the refund went through
    REFUND_FAILED = "REFUND_FAILED"  # nothing was refunded


class PayChannel(enum.Enum):
    WECHAT = "WECHAT"
    ALIPAY = "ALIPAY"
    UNIONPAY = "UNIONPAY"


class ResultCode(str, enum.Enum):
    """`error_code` values of a result: why a collection or refund did not simply succeed."""

    DUPLICATE_ORDER = "duplicate_order"  # a '+' for an order already collected: the original result
    INSUFFICIENT_FUNDS = "insufficient_funds"
    CODE_INVALID = "code_invalid"  # the payment code was expired, used or unknown to the channel
    DECLINED = "declined"  # the channel refused for another reason (error_message has it)
    USER_CANCELLED = "user_cancelled"  # the patient cancelled on the phone
    CANCELLED = "cancelled"  # the cashier cancelled before anything was charged
    PAY_TIMEOUT = "pay_timeout"  # the patient did not confirm in time: the order was reversed
    CHANNEL_ERROR = "channel_error"  # the channel could not confirm: the order was reversed
    ORDER_NOT_PAID = "order_not_paid"  # refund of an order this terminal never collected
    REFUND_EXCEEDS_REMAINING = "refund_exceeds_remaining"
    SUPERVISOR_DECLINED = "supervisor_declined"  # the refund was not confirmed with the PIN
    REFUND_REJECTED = "refund_rejected"  # the channel refused the refund
    # His-interface 1.1 C: outcomes HIS asked for or set a bound on. CLOSED (collections) or
    # REFUND_FAILED (refunds): nothing was collected or refunded by this instruction.
    EXPIRED = "expired"  # expires_at passed with no payment under way (or after one that was declined)
    WITHDRAWN = "withdrawn"  # HIS withdrew the instruction (POST /v1/instructions/{msg_id}/cancel)
    # The channel rejected the request for the merchant's configuration (key, app id, certificate)
    # before processing it: nothing was charged or refunded; the provider must fix its settings.
    MERCHANT_CONFIG = "merchant_config"
    # Refused by the gateway before the channel, as the channel's own rules would (WeChat Pay: a
    # refund more than a year after the payment; more than 50 refunds of one payment).
    REFUND_WINDOW_CLOSED = "refund_window_closed"
    TOO_MANY_REFUNDS = "too_many_refunds"
    # Above the hospital's per-transaction limit, refused by the provider's gateway (the limit's one
    # source): the code the bridge and the POS give when they refuse it early from the same setting.
    BAD_AMOUNT = "bad_amount"


class Progress(enum.Enum):
    """Where an unfinished instruction is, as the device reports it on the link. HIS sees
    `state_for_his()` (his-interface 1.1 C lists six states; `delivered` reads as `queued` there)."""

    QUEUED = "queued"  # accepted by the bridge, not yet taken by the device
    DELIVERED = "delivered"  # the device has it (waiting behind another instruction on the POS)
    AWAITING_SCAN = "awaiting_scan"  # the cashier is to scan the patient's code
    PAYING = "paying"  # the channel is processing / the patient is confirming on the phone
    AWAITING_SUPERVISOR = "awaiting_supervisor"  # a refund waits for the supervisor's PIN
    REFUNDING = "refunding"
    REVERSING = "reversing"  # a payment that could not be confirmed (or was withdrawn) is being reversed
    FINISHED = "finished"

    def state_for_his(self) -> str:
        """The 202 body's `state` (his-interface 1.1 C: queued, awaiting_scan, paying,
        awaiting_supervisor, refunding, reversing)."""
        return Progress.QUEUED.value if self in (Progress.DELIVERED, Progress.FINISHED) else self.value


@dataclass(frozen=True, slots=True)
class BillItem:
    name: str
    qty: str
    amount_fen: int


@dataclass(frozen=True, slots=True)
class Display:
    """Shown to cashier and patient; never used for money."""

    patient: str | None
    items: tuple[BillItem, ...]


@dataclass(frozen=True, slots=True)
class Instruction:
    terminal_id: str
    order_no: str
    amount: Amount
    display: Display | None = None
    # His-interface 1.1 C: unix seconds after which no payment starts; None = the bridge's default.
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    """The plaintext of a `cancel` envelope (1.1 C withdrawal): which order of which terminal."""

    terminal_id: str
    order_no: str


@dataclass(frozen=True, slots=True)
class Result:
    device_id: str
    order_no: str
    pay_order_no: str
    pay_status: PayStatus
    pay_channel: PayChannel | None
    amount: Amount
    finished_at: int
    error_code: str | None = None
    error_message: str | None = None
    # duplicate_order results only (his-interface 1.1 C): fen refunded so far of the original
    # collection, so HIS can book a collection whose first write-back failed.
    refunded_fen: int | None = None


def mask_patient_name(name: str) -> str:
    """張三明 -> 張*明, 李四 -> 李*, 王 -> *. Idempotent, so HIS-masked names stay as they are."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def decode_instruction(plaintext: bytes, *, header_terminal_id: str, limit_fen: int = DEFAULT_LIMIT_FEN) -> Instruction:
    f = Fields(loads_object(plaintext, what="instruction plaintext"), where="instruction")
    terminal_id = check_id("instruction.terminal_id", f.raw("terminal_id"))
    if terminal_id != header_terminal_id:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TERMINAL,
            f"instruction.terminal_id {terminal_id!r} differs from the envelope's terminal_id {header_terminal_id!r}",
        )
    # One rule for every field (docs/his-interface.md §9 "Field errors"): whatever is wrong with
    # `order_no` (missing, not a string, out of grammar) is bad_order_no, with `amount` bad_amount;
    # with any other field bad_envelope (the plaintext terminal_id differing from the header's is
    # unknown_terminal). Display fields are never money: their problems are bad_envelope too.
    if not f.has("order_no"):
        raise ProtocolError(ErrorCode.BAD_ORDER_NO, "instruction.order_no is missing")
    order_no = check_order_no(f.raw("order_no"))
    if not f.has("amount"):
        raise ProtocolError(ErrorCode.BAD_AMOUNT, "instruction.amount is missing")
    amount = parse_amount(f.raw("amount"), limit_fen=limit_fen)
    display_obj = f.obj("display", optional=True)
    display = _decode_display(display_obj) if display_obj is not None else None
    expires_at = None
    if f.has("expires_at") and f.raw("expires_at") is not None:
        expires_at = f.int("expires_at", minimum=1, maximum=MAX_EXPIRES_AT)
    return Instruction(terminal_id, order_no, amount, display, expires_at)


def decode_cancel(plaintext: bytes, *, header_terminal_id: str) -> Cancel:
    f = Fields(loads_object(plaintext, what="cancel plaintext"), where="cancel")
    terminal_id = check_id("cancel.terminal_id", f.raw("terminal_id"))
    if terminal_id != header_terminal_id:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TERMINAL,
            f"cancel.terminal_id {terminal_id!r} differs from the envelope's terminal_id {header_terminal_id!r}",
        )
    return Cancel(terminal_id, check_order_no(f.raw("order_no")))


def encode_cancel(cancel: Cancel) -> JsonObject:
    return {"terminal_id": cancel.terminal_id, "order_no": cancel.order_no}


def _decode_display(obj: Mapping[str, object]) -> Display:
    f = Fields(obj, where="instruction.display")
    patient = f.str("patient", optional=True, max_len=MAX_PATIENT) if f.has("patient") else None
    items: list[BillItem] = []
    raw_items = f.list("items", max_items=MAX_DISPLAY_ITEMS) if f.has("items") else []
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict):
            raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"instruction.display.items[{index}] must be an object")
        item = Fields(raw, where=f"instruction.display.items[{index}]")
        name, qty = item.req_str("name", max_len=MAX_ITEM_NAME), item.req_str("qty", max_len=MAX_ITEM_QTY)
        try:
            amount_fen = parse_yuan(item.raw("amount"))
        except ProtocolError as exc:  # shown, never used for money: a display problem, not bad_amount
            raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"instruction.display.items[{index}].{exc.message}") from None
        items.append(BillItem(name=name, qty=qty, amount_fen=amount_fen))
    return Display(patient, tuple(items))


def encode_instruction(instruction: Instruction) -> JsonObject:
    obj: JsonObject = {
        "terminal_id": instruction.terminal_id,
        "order_no": instruction.order_no,
        "amount": format_amount(instruction.amount),
    }
    if instruction.display is not None:
        display: JsonObject = {}
        if instruction.display.patient is not None:
            display["patient"] = instruction.display.patient
        display["items"] = [
            {"name": item.name, "qty": item.qty, "amount": format_yuan(item.amount_fen)}
            for item in instruction.display.items
        ]
        obj["display"] = display
    if instruction.expires_at is not None:
        obj["expires_at"] = instruction.expires_at
    return obj


def decode_result(plaintext: bytes, *, header_device_id: str) -> Result:
    f = Fields(loads_object(plaintext, what="result plaintext"), where="result")
    device_id = check_id("result.device_id", f.raw("device_id"))
    if device_id != header_device_id:
        raise ProtocolError(
            ErrorCode.BAD_ENVELOPE,
            f"result.device_id {device_id!r} differs from the envelope's device_id {header_device_id!r}",
        )
    channel_raw = f.str("pay_channel", optional=True, max_len=16)
    error_code = f.str("error_code", optional=True, max_len=64)
    return Result(
        device_id=device_id,
        order_no=check_order_no(f.raw("order_no")),
        pay_order_no=f.req_str("pay_order_no", max_len=MAX_PAY_ORDER_NO),
        pay_status=_enum(PayStatus, f.req_str("pay_status", max_len=16), "result.pay_status"),
        pay_channel=None if channel_raw is None else _enum(PayChannel, channel_raw, "result.pay_channel"),
        amount=parse_amount(f.raw("amount"), limit_fen=MAX_FEN),
        finished_at=f.int("finished_at", minimum=0, maximum=2**40),
        error_code=error_code,
        error_message=f.str("error_message", optional=True, max_len=MAX_ERROR_MESSAGE),
        refunded_fen=f.int("refunded_fen", minimum=0, maximum=MAX_FEN) if f.has("refunded_fen") and f.raw("refunded_fen") is not None else None,
    )


def encode_result(result: Result) -> JsonObject:
    obj: JsonObject = {
        "device_id": result.device_id,
        "order_no": result.order_no,
        "pay_order_no": result.pay_order_no,
        "pay_status": result.pay_status.value,
        "pay_channel": None if result.pay_channel is None else result.pay_channel.value,
        "amount": format_amount(result.amount),
        "finished_at": result.finished_at,
        "error_code": result.error_code,
        "error_message": result.error_message,
    }
    if result.refunded_fen is not None:
        obj["refunded_fen"] = result.refunded_fen
    return obj


_E = TypeVar("_E", bound=enum.Enum)


def _enum(kind: type[_E], value: str, field: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"{field} {value!r} is not one of {allowed}") from None
