"""Journal integrity, the pure part: row checksums and the high-water mark record.

Both journals (the bridge's, the POS's) keep a checksum next to every stored result, envelope and
money row, so a flipped bit that SQLite's own `PRAGMA integrity_check` cannot see (it checks pages
and indexes, not what a row says) is found before the row is served or trusted. Each also keeps a
high-water mark: the number of its last durable commit, written outside the database after every
commit. A journal that ends before its mark lost commits (truncated, WAL removed or rotted, a stale
copy put back) and must not be trusted with money.

A mark on the same storage cannot see a rollback of the whole storage (journal and mark restored
together from an old image). The peer's copy of the mark closes that gap: the bridge keeps the
POS's, the POS the bridge's, exchanged at authenticated link-up. That exchange needs the link's
next version and is a follow-up (issue 14: "peer high-water exchange"); `MarkRecord` is already the
format it will carry.

No I/O here: the journals read and write the bytes.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

CHECKSUM_BYTES = 16
_MAGIC = b"HWM1"
_RECORD = struct.Struct(">4sQQI")  # magic, generation (slot order), mark, crc32 of the rest
RECORD_SIZE = _RECORD.size
MARK_FILE_SIZE = 2 * RECORD_SIZE  # two slots, written alternately: a torn write leaves the other


def row_checksum(*fields: object) -> bytes:
    """A checksum over a row's fields, in order; None, int, str and bytes are told apart."""
    h = hashlib.blake2b(digest_size=CHECKSUM_BYTES)
    for value in fields:
        if value is None:
            h.update(b"N")
        elif isinstance(value, bool):
            raise TypeError("row_checksum: bool is ambiguous; store it as int")
        elif isinstance(value, int):
            h.update(b"I" + str(value).encode())
        elif isinstance(value, float):
            h.update(b"F" + value.hex().encode())
        elif isinstance(value, str):
            data = value.encode()
            h.update(b"S" + len(data).to_bytes(4, "big") + data)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            h.update(b"B" + len(data).to_bytes(4, "big") + data)
        else:
            raise TypeError(f"row_checksum: cannot hash {type(value).__name__}")
        h.update(b"|")
    return h.digest()


@dataclass(frozen=True, slots=True)
class MarkRecord:
    generation: int
    mark: int

    def encode(self) -> bytes:
        body = struct.pack(">4sQQ", _MAGIC, self.generation, self.mark)
        return body + struct.pack(">I", zlib.crc32(body))

    @classmethod
    def decode(cls, data: bytes) -> "MarkRecord | None":
        """None for a slot that is empty, torn or not ours."""
        if len(data) != RECORD_SIZE:
            return None
        magic, generation, mark, crc = _RECORD.unpack(data)
        if magic != _MAGIC or zlib.crc32(data[:-4]) != crc:
            return None
        return cls(generation, mark)


def newest_mark(file_bytes: bytes) -> MarkRecord | None:
    """The newest valid slot of a mark file's bytes (None: no valid slot at all)."""
    slots = [MarkRecord.decode(file_bytes[i:i + RECORD_SIZE]) for i in (0, RECORD_SIZE)]
    valid = [s for s in slots if s is not None]
    return max(valid, key=lambda s: s.generation) if valid else None


def slot_for(generation: int) -> int:
    """The byte offset the record of `generation` is written at (alternating slots)."""
    return (generation % 2) * RECORD_SIZE


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """What a journal check found. `ok` False locks the process: money work waits for recovery."""

    ok: bool
    reason: str = ""
    problems: tuple[str, ...] = ()

    def to_json_obj(self) -> dict[str, object]:
        return {"ok": self.ok, "reason": self.reason or None, "problems": list(self.problems[:20])}


def rollback_problem(journal_mark: int, recorded_mark: int) -> str | None:
    """The problem, if the journal ends before the mark recorded after its last durable commit."""
    if journal_mark >= recorded_mark:
        return None
    return (f"the journal was rolled back or lost commits: it ends at commit {journal_mark} but commit {recorded_mark} "
            "was durable (truncated, WAL removed or damaged, or an old copy put back)")
