"""Money: the one strict parser and formatter between yuan strings and integer fen.

The wire carries `^[+-](0|[1-9][0-9]{0,9})\\.[0-9]{2}$`: a sign, yuan without leading zeros, a dot
and exactly two decimals. Inside the system an amount is a `Direction` and a positive `int` of fen.
Nothing is ever "repaired": `+12.5`, `12.50`, `+012.50`, `-0.00`, `+1e3`, `＋１２.５０`, `+12.50 `
are refused, each with a message naming what is wrong (seed 000: a forged negative amount cost a
platform 49 million yuan; the parser is where that attack ends).

Unsigned amounts (bill items, channel fields, ledgers) use `parse_yuan`, the same grammar without
the sign. Integer fen on a JSON wire (the POS -> gateway API and its replies) go through `parse_fen`,
and WeChat Pay's decimal fen strings ("1250") through `parse_fen_text`. Every amount read from
outside a process goes through one of these four functions, once, where it enters (docs/amounts.md
lists the trust boundaries); inside, it travels as an `Amount` (signed) or an `int` of fen.

Formatting has its twins: `format_amount` (the signed wire form "+12.50", also `str(amount)`),
`format_yuan` (unsigned "12.50") and `format_net_yuan` (a signed total or difference that may be
negative or zero, as bills and reports print it: "-5.00", "0.00"). Screens group thousands with
`terminal.ui.model.display_yuan`, built on `format_yuan`.

The per-transaction limit is the hospital's setting in the gateway (`gateway.tenancy`); the bridge
and the POS refuse early from the same provisioned value with the same code (`bad_amount`).
`DEFAULT_LIMIT_FEN` is the one default every component starts from.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from protocol.errors import ErrorCode, ProtocolError

# Ten digits of yuan is the spec's ceiling; the configured per-transaction limit is usually far lower.
MAX_YUAN_DIGITS = 10
MAX_FEN = (10**MAX_YUAN_DIGITS) * 100 - 1

# Default per-transaction limit: 50,000.00 yuan, the default of a hospital in the gateway
# (gateway.tenancy) and of every device and bridge provisioned for it. Hospitals set their own.
DEFAULT_LIMIT_FEN = 50_000_00

# WeChat Pay's fen fields: a decimal integer, no sign, no leading zeros (12 digits is far beyond MAX_FEN).
_FEN_TEXT = re.compile(r"(0|[1-9][0-9]{0,11})", re.ASCII)

_YUAN = re.compile(r"(0|[1-9][0-9]{0,9})\.([0-9]{2})", re.ASCII)


class Direction(enum.Enum):
    COLLECT = "+"
    REFUND = "-"


@dataclass(frozen=True, slots=True)
class Amount:
    """A signed amount: which way the money moves and how many fen (always > 0)."""

    direction: Direction
    fen: int

    def __post_init__(self) -> None:
        if type(self.fen) is not int or not 0 < self.fen <= MAX_FEN:
            raise ValueError(f"Amount.fen must be an int in 1..{MAX_FEN}, got {self.fen!r}")

    @classmethod
    def collect(cls, fen: int) -> Amount:
        return cls(Direction.COLLECT, fen)

    @classmethod
    def refund(cls, fen: int) -> Amount:
        return cls(Direction.REFUND, fen)

    @property
    def is_refund(self) -> bool:
        return self.direction is Direction.REFUND

    @property
    def signed_fen(self) -> int:
        """The fen with the direction's sign: +1250 collected, -500 refunded (for totals)."""
        return -self.fen if self.is_refund else self.fen

    def __str__(self) -> str:
        return format_amount(self)


def _refuse(text: object, why: str) -> ProtocolError:
    shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:37] + "..."
    return ProtocolError(ErrorCode.BAD_AMOUNT, f"amount {shown}: {why}")


def _explain(body: str) -> str:
    """Say precisely why an unsigned body failed the grammar (only called on failure)."""
    if body == "":
        return "no digits"
    if any(not ch.isascii() for ch in body):
        return "only ASCII digits 0-9 and '.' are allowed (no full-width or other digits)"
    if any(ch.isspace() for ch in body):
        return "spaces are not allowed"
    if body[0] in "+-":
        return "more than one sign"
    if "e" in body.lower():
        return "exponents are not allowed"
    if body.count(".") != 1:
        return "exactly two decimals are required, as in 12.50"
    whole, frac = body.split(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        return "only digits 0-9 and one '.' are allowed"
    if len(frac) != 2:
        return f"exactly two decimals are required, found {len(frac)}"
    if len(whole) > 1 and whole[0] == "0":
        return "leading zeros are not allowed"
    if len(whole) > MAX_YUAN_DIGITS:
        return f"more than {MAX_YUAN_DIGITS} digits of yuan"
    return "not of the form 12.50"


def _parse_body(text: str, body: str) -> int:
    match = _YUAN.fullmatch(body)
    if match is None:
        raise _refuse(text, _explain(body))
    return int(match.group(1)) * 100 + int(match.group(2))


def parse_amount(text: object, *, limit_fen: int = DEFAULT_LIMIT_FEN) -> Amount:
    """Parse a wire amount such as "+12.50" or "-5.00" into an `Amount`.

    Raises ProtocolError(bad_amount) naming the problem: not a string, no sign, bad digits, zero,
    or above `limit_fen` (the configured per-transaction limit).
    """
    if not isinstance(text, str):
        raise _refuse(text, f"must be a JSON string such as \"+12.50\", not {type(text).__name__}")
    if text == "":
        raise _refuse(text, "empty")
    sign, body = text[0], text[1:]
    if sign not in "+-":
        raise _refuse(text, "must start with '+' (collect) or '-' (refund)")
    fen = _parse_body(text, body)
    if fen == 0:
        raise _refuse(text, "zero is not an amount (no '+0.00' or '-0.00')")
    amount = Amount(Direction(sign), fen)
    check_limit(amount, limit_fen, text=text)
    return amount


def check_limit(amount: Amount, limit_fen: int, *, text: object = None) -> None:
    """Refuse an amount above the per-transaction limit: bad_amount, naming the limit. The bridge and
    the POS call this (through `parse_amount`) with the limit provisioned from the hospital's setting;
    the gateway enforces the same setting on every payment (gateway.ledger)."""
    if amount.fen > limit_fen:
        raise _refuse(format_amount(amount) if text is None else text,
                      f"above the per-transaction limit of {format_yuan(limit_fen)} yuan")


def format_amount(amount: Amount) -> str:
    """The wire form of an amount: "+12.50"."""
    return amount.direction.value + format_yuan(amount.fen)


def parse_yuan(text: object, *, allow_zero: bool = True) -> int:
    """Parse an unsigned two-decimal yuan string ("12.50") into fen, with the wire grammar."""
    if not isinstance(text, str):
        raise _refuse(text, f"must be a string such as \"12.50\", not {type(text).__name__}")
    fen = _parse_body(text, text)
    if fen == 0 and not allow_zero:
        raise _refuse(text, "zero is not allowed here")
    return fen


def parse_fen(value: object, *, what: str = "amount_fen", allow_zero: bool = False) -> int:
    """An integer of fen from a JSON wire (the gateway's API, both ways): a JSON integer (not a bool,
    float or string) in 1..MAX_FEN (0 too with `allow_zero`), else bad_amount naming `what`."""
    if type(value) is not int:
        raise ProtocolError(ErrorCode.BAD_AMOUNT, f"{what} must be an integer of fen such as 1250, not {type(value).__name__}")
    if not (0 if allow_zero else 1) <= value <= MAX_FEN:
        lowest = 0 if allow_zero else 1
        raise ProtocolError(ErrorCode.BAD_AMOUNT, f"{what} {value} is outside {lowest}..{MAX_FEN} fen")
    return value


def parse_fen_text(text: object, *, what: str = "fen") -> int:
    """WeChat Pay's decimal fen strings ("1250", "0"): digits only, no sign, no leading zeros, at
    most MAX_FEN; else bad_amount naming `what`."""
    if not isinstance(text, str) or _FEN_TEXT.fullmatch(text) is None:
        shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:37] + "..."
        raise ProtocolError(ErrorCode.BAD_AMOUNT, f"{what} {shown} is not a whole number of fen such as \"1250\"")
    fen = int(text)
    if fen > MAX_FEN:
        raise ProtocolError(ErrorCode.BAD_AMOUNT, f"{what} {text} is more than {MAX_FEN} fen")
    return fen


def format_yuan(fen: int) -> str:
    """Integer fen to an unsigned yuan string: 1250 -> "12.50"."""
    if type(fen) is not int or fen < 0:
        raise ValueError(f"format_yuan needs a non-negative int of fen, got {fen!r}")
    return f"{fen // 100}.{fen % 100:02d}"


def format_net_yuan(fen: int) -> str:
    """A signed total or difference in yuan, as bills and reports print one: -500 -> "-5.00",
    0 -> "0.00", 1250 -> "12.50" (no "+": this is a balance, not a wire amount; see format_amount)."""
    if type(fen) is not int:
        raise ValueError(f"format_net_yuan needs an int of fen, got {fen!r}")
    return ("-" if fen < 0 else "") + format_yuan(abs(fen))
