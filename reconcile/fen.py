"""Yuan text to integer fen, only through `protocol.amount.parse_yuan`, memoized per file.

A day's bill repeats the same few thousand amounts (registration fees, common prescriptions), so a
per-file memo turns a million regex matches into a million dict hits. The memo is bounded; a
miss simply calls `parse_yuan` again. Every refusal becomes a `BadInput` naming file, line and field.
"""

from __future__ import annotations

from protocol.amount import parse_yuan
from protocol.errors import ProtocolError
from reconcile.errors import BadInput

# Enough for every distinct amount of a large hospital's day; bounded so hostile input cannot grow it.
MEMO_LIMIT = 200_000


class FenParser:
    """`parse(text, line, field)` -> fen. Hot loops may read `.memo` first and call `parse` on a miss."""

    __slots__ = ("file", "memo")

    def __init__(self, file: str) -> None:
        self.file = file
        self.memo: dict[str, int] = {}

    def parse(self, text: str, line: int, field: str) -> int:
        fen = self.memo.get(text)
        if fen is not None:
            return fen
        try:
            fen = parse_yuan(text)
        except ProtocolError as exc:
            raise BadInput(self.file, line, field, f"{exc.message} (amounts are yuan with exactly two decimals, as 12.50)") from None
        if len(self.memo) < MEMO_LIMIT:
            self.memo[text] = fen
        return fen

    def parse_signed(self, text: str, line: int, field: str) -> int:
        """"-5.00" -> -500, "5.00" and "+5.00" -> 500 (bills that write refunds as negative amounts)."""
        if text[:1] == "+":
            return self.parse(text[1:], line, field)
        if text[:1] == "-":
            fen = self.parse(text[1:], line, field)
            if fen == 0:
                raise BadInput(self.file, line, field, f"amount {text!r}: negative zero")
            return -fen
        return self.parse(text, line, field)
