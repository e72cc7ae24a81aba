"""Money: the one strict parser and formatter between yuan strings and integer fen.

The wire carries `^[+-](0|[1-9][0-9]{0,9})\\.[0-9]{2}$`: a sign, yuan without leading zeros, a dot
and exactly two decimals. Inside the system an amount is a `Direction` and a positive `int` of fen.
Nothing is ever "repaired": `+12.5`, `12.50`, `+012.50`, `-0.00`, `+1e3`, `＋１２.５０`, `+12.50 `
are refused, each with a message naming what is wrong (seed 000: a forged negative amount cost a
platform 49 million yuan; the parser is where that attack ends).

Unsigned amounts (bill items, channel fields, ledgers) use `parse_yuan`, the same grammar without
the sign. Every amount in the project goes through one of these two functions.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from protocol.errors import ErrorCode, ProtocolError

# Ten digits of yuan is the spec's ceiling; the configured per-transaction limit is usually far lower.
MAX_YUAN_DIGITS = 10
MAX_FEN = (10**MAX_YUAN_DIGITS) * 100 - 1

# Default per-transaction limit: 50,000.00 yuan. Hospitals configure their own.
DEFAULT_LIMIT_FEN = 50_000_00

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

    @property
    def is_refund(self) -> bool:
        return self.direction is Direction.REFUND

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
    if fen > limit_fen:
        raise _refuse(text, f"above the per-transaction limit of {format_yuan(limit_fen)} yuan")
    return Amount(Direction(sign), fen)


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


def format_yuan(fen: int) -> str:
    """Integer fen to an unsigned yuan string: 1250 -> "12.50"."""
    if type(fen) is not int or fen < 0:
        raise ValueError(f"format_yuan needs a non-negative int of fen, got {fen!r}")
    return f"{fen // 100}.{fen % 100:02d}"
