"""protocol.integrity: the high-water mark record codec and the row checksum (issue 14)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.integrity import (MARK_FILE_SIZE, RECORD_SIZE, MarkRecord, newest_mark, rollback_problem, row_checksum,
                                slot_for)

u64 = st.integers(min_value=0, max_value=2**64 - 1)


@given(u64, u64)
def test_a_record_decodes_to_itself(generation: int, mark: int) -> None:
    record = MarkRecord(generation, mark)
    assert len(record.encode()) == RECORD_SIZE
    assert MarkRecord.decode(record.encode()) == record


@given(st.binary(max_size=2 * RECORD_SIZE))
def test_any_bytes_decode_to_a_record_or_nothing_never_an_error(data: bytes) -> None:
    found = MarkRecord.decode(data[:RECORD_SIZE])
    assert found is None or isinstance(found, MarkRecord)
    assert newest_mark(data) is None or isinstance(newest_mark(data), MarkRecord)


@given(u64, u64, st.integers(min_value=0, max_value=RECORD_SIZE * 8 - 1))
def test_one_flipped_bit_is_never_read_as_a_mark(generation: int, mark: int, bit: int) -> None:
    data = bytearray(MarkRecord(generation, mark).encode())
    data[bit // 8] ^= 1 << (bit % 8)
    assert MarkRecord.decode(bytes(data)) is None


@given(st.lists(u64, min_size=1, max_size=20), st.integers(min_value=0, max_value=RECORD_SIZE))
def test_the_newest_slot_wins_and_a_torn_write_leaves_the_previous_mark(marks: list[int], torn: int) -> None:
    """Writes alternate slots; tearing the last write (a power cut mid-write) leaves the one before."""
    file = bytearray(MARK_FILE_SIZE)
    for generation, mark in enumerate(marks, start=1):
        offset = slot_for(generation)
        file[offset:offset + RECORD_SIZE] = MarkRecord(generation, mark).encode()
    assert newest_mark(bytes(file)) == MarkRecord(len(marks), marks[-1])
    if len(marks) >= 2 and torn < RECORD_SIZE:
        offset = slot_for(len(marks))
        file[offset + torn:offset + RECORD_SIZE] = bytes(RECORD_SIZE - torn)
        assert newest_mark(bytes(file)) in (MarkRecord(len(marks) - 1, marks[-2]), MarkRecord(len(marks), marks[-1]))


def test_row_checksums_tell_types_and_boundaries_apart() -> None:
    assert row_checksum("ab", "c") != row_checksum("a", "bc")
    assert row_checksum(1) != row_checksum("1") != row_checksum(b"1")
    assert row_checksum(None) != row_checksum("")
    assert row_checksum("MZ-PAID") != row_checksum("MZ-PAIE")


def test_a_journal_that_ends_before_its_mark_is_a_rollback() -> None:
    assert rollback_problem(10, 10) is None and rollback_problem(11, 10) is None
    assert "rolled back" in (rollback_problem(0, 10) or "")
