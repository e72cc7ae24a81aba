"""The per-transaction state shared by the matcher and its conclusions: flags and byte masks.

A transaction is one record of our journal; its HIS side and channel side live in `array`s at the
same index. Masks over those arrays (bytes of 0/1, or ints with one bit per byte) let sums, counts
and searches run at C speed instead of a Python loop over a million items.
"""

from __future__ import annotations

from array import array
from typing import Iterator

from reconcile.model import State

MOVED = int(State.MOVED)
# Unit flags (ours' own flags use the low bit: FLAG_ECHO).
CONFLICT = 2  # the HIS row with this msg_id names another order or direction
DUP_OURS = 4  # a second journal record with a msg_id already seen
PROBABLE = 8  # the bill trade was attached by channel, amount and time (no channel id in our journal)
PLAT_PENDING = 32  # the platform's ledger has it under way (16 is model.FLAG_LATE)
REVERSAL = int(State.REVERSAL)
# Which bill rows a transaction's channel side holds.
MAIN_ROW = 1  # its payment or refund
REVERSAL_ROW = 2  # the reversal of its payment


def zeros(code: str, n: int) -> array:
    return array(code, bytes(array(code).itemsize * n))


def positions(data: bytes, value: int, *, equal: bool = True) -> Iterator[int]:
    """Indexes k where data[k] == value (or != value), found by bytes.find at C speed."""
    mask = data.translate(EQ[value])
    wanted = b"\x01" if equal else b"\x00"
    k = mask.find(wanted)
    while k >= 0:
        yield k
        k = mask.find(wanted, k + 1)


def bits(data: bytes, value: int) -> int:
    """An int whose byte k is 1 where data[k] == value (a mask that ands and popcounts in C)."""
    return int.from_bytes(data.translate(EQ[value]), "little")


EQ = [bytes(1 if b == v else 0 for b in range(256)) for v in range(256)]
