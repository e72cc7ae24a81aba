"""Reading CSV records fast and exactly, with the line number of each record.

The files here run to a million lines, and Python's csv module costs twice what `str.split` does.
A line without a double quote cannot contain a quoted field, so for it `split(',')` is exactly
what the csv module would return; lines with quotes (rare: a product name with a comma) go through
the csv module, joined with their continuation lines when a quoted field spans lines. Parsers run
this per line in their own loop (`record`), because a generator layer per line costs more than the
split itself; `read_records` is the convenient form for headers, footers and small files.

Bytes are decoded one line at a time, so a bad byte is reported at its own line rather than at
the start of an 8 KiB decoding chunk. In UTF-8, GBK and GB18030 a newline byte is never part of a
multi-byte character, so splitting lines before decoding is safe.
"""

from __future__ import annotations

import csv
from typing import BinaryIO, Iterator

from reconcile.errors import BadInput

ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "utf-8-sig": "utf-8", "gbk": "gbk", "gb2312": "gbk", "gb18030": "gb18030"}
BOM = b"\xef\xbb\xbf"
# Rows handed from a parser to the matcher at a time: one generator step per batch, not per row.
BATCH = 4096


def normalize_encoding(name: str) -> str | None:
    return ENCODINGS.get(name.strip().lower())


def bad_bytes(file: str, lineno: int, exc: UnicodeDecodeError, encoding: str) -> BadInput:
    return BadInput(file, lineno, None, f"bytes at column {exc.start + 1} are not valid {encoding.upper()} text; is the file's encoding set right?")


def decode_line(raw: bytes, encoding: str, file: str, lineno: int) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise bad_bytes(file, lineno, exc, encoding) from None


def record(fb: BinaryIO, line: str, lineno: int, file: str, encoding: str, delimiter: str = ",") -> tuple[list[str], int]:
    """The fields of the record starting with `line` (decoded), and the number of its last line.
    Empty list for a blank line."""
    if '"' not in line:
        line = line.rstrip("\r\n")
        return (line.split(delimiter) if line else []), lineno
    first = lineno
    while line.count('"') % 2:
        more = fb.readline()
        if not more:
            raise BadInput(file, first, None, "a quoted field is not closed before the end of the file (truncated?)")
        lineno += 1
        line += decode_line(more, encoding, file, lineno)
    return parse_quoted(line, file, first, delimiter), lineno


def read_records(fb: BinaryIO, file: str, encoding: str, delimiter: str = ",", *, start: int = 0) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for every record; a leading BOM is dropped; blank lines too.
    `start` is the number of lines of `fb` already read (line numbers continue from there)."""
    lineno = start
    while True:
        raw = fb.readline()
        if not raw:
            return
        lineno += 1
        if lineno == 1 and raw.startswith(BOM):
            raw = raw[3:]
        first = lineno
        row, lineno = record(fb, decode_line(raw, encoding, file, lineno), lineno, file, encoding, delimiter)
        if row:
            yield first, row


def parse_quoted(text: str, file: str, lineno: int, delimiter: str = ",") -> list[str]:
    try:
        rows = list(csv.reader([text.rstrip("\r\n")], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise BadInput(file, lineno, None, f"not valid CSV: {exc}") from None
    if len(rows) != 1:
        raise BadInput(file, lineno, None, "not valid CSV: one record expected on this line")
    return rows[0]
