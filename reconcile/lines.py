"""Reading CSV records fast and exactly, with the line number of each record.

The files here run to a million lines, and Python's csv module costs twice what `str.split` does.
A line without a double quote cannot contain a quoted field, so for it `split(',')` is exactly
what the csv module would return; lines with quotes (rare: a product name with a comma) go through
the csv module, joined with their continuation lines when a quoted field spans lines. Parsers run
this per line in their own loop (`record`), because a generator layer per line costs more than the
split itself; `read_records` is the convenient form for headers, footers and small files.

The channels' bills are another matter: neither WeChat Pay nor Alipay quotes anything, so a comma
(or a double quote) in free text such as 商品名称 or 商户数据包 (attach, often JSON) is written as
it is. `fit_free_text` puts such a row back together: the surplus fields belong to the free-text
columns, and the one way of giving them back that leaves every typed column (times, amounts)
well-formed is the row.

Bytes are decoded one line at a time, so a bad byte is reported at its own line rather than at
the start of an 8 KiB decoding chunk. In UTF-8, GBK and GB18030 a newline byte is never part of a
multi-byte character, so splitting lines before decoding is safe.
"""

from __future__ import annotations

import csv
import itertools
import re
from typing import BinaryIO, Callable, Iterator

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


# Most surplus commas a bill row may have before it is refused rather than fitted (the search
# below grows with the number of free-text columns to this power).
MAX_SURPLUS = 8
TIME_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
YUAN_PATTERN = re.compile(r"-?\d+\.\d{2}")


def fit_free_text(parts: list[str], ncol: int, free: tuple[int, ...], valid: Callable[[list[str]], bool], joiner: str = ",") -> list[str] | None:
    """`parts` split on the separator has more than `ncol` fields because free-text columns held
    the separator. Give the surplus back to the free-text columns (positions `free`, ascending) in
    every possible way and keep the ways whose typed columns are valid; the row, if they agree on
    every column that is not free text, else None (the row cannot be read without guessing)."""
    surplus = len(parts) - ncol
    if surplus <= 0 or surplus > MAX_SURPLUS or not free:
        return None
    found: list[str] | None = None
    for extra in _compositions(surplus, len(free)):
        row: list[str] = []
        k = 0
        for column in range(ncol):
            take = 1 + (extra[free.index(column)] if column in free else 0)
            row.append(joiner.join(parts[k:k + take]))
            k += take
        if not valid(row):
            continue
        if found is None:
            found = row
        elif any(a != b for c, (a, b) in enumerate(zip(found, row)) if c not in free):
            return None
    return found


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Every way of writing `total` as an ordered sum of `parts` non-negative integers."""
    for cuts in itertools.combinations(range(total + parts - 1), parts - 1):
        bounds = (-1, *cuts, total + parts - 1)
        yield tuple(bounds[i + 1] - bounds[i] - 1 for i in range(parts))
