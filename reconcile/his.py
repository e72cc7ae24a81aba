"""The HIS ledger export: a neutral CSV format, and a mapping file for a vendor's own columns.

Neutral format (UTF-8, comma separated, header row first; docs/reconciliation.md has examples):

    order_no,msg_id,direction,amount,status,pay_channel,pay_order_no,finished_at
    MZ20261122000123,HIS-0001-000042,+,12.50,SUCCESS,WECHAT,4200001234202611220000000001,2026-11-22 10:00:42

- required: order_no, direction (`+` collect, `-` refund), amount (yuan, two decimals), status
  (`SUCCESS` the money moved as HIS booked it, `FAILED` nothing moved, `PENDING` HIS is still
  waiting for the result, as after a failed write-back)
- optional: msg_id (the instruction's msg_id: strongly recommended, it is the business key),
  pay_channel (`WECHAT`, `ALIPAY`, `UNIONPAY` or empty), pay_order_no, finished_at (shown as is)
- an optional last line `#END,<number of data rows>` lets us detect a truncated export; a mapping
  can make it required.

A mapping file (TOML) describes a vendor's own export against that format: encoding (UTF-8, GBK,
GB18030), delimiter, title lines to skip, column names, value vocabularies, and whether refunds
carry their sign in the amount instead of a direction column. `load_mapping` validates it;
`read_his` streams the rows as `Entry`-layout tuples.
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from reconcile.errors import BadInput, ConfigError, SourceUnavailable
from reconcile.fen import FenParser
from reconcile.lines import decode_line, normalize_encoding, parse_quoted
from reconcile.model import COLLECT, REFUND, Channel, State

FIELDS = ("order_no", "msg_id", "direction", "amount", "status", "pay_channel", "pay_order_no", "finished_at")
REQUIRED = ("order_no", "amount", "status")  # direction too, unless the amount carries the sign

NEUTRAL_DIRECTION = {"+": COLLECT, "-": REFUND}
NEUTRAL_STATUS = {"SUCCESS": State.MOVED, "FAILED": State.NOT_MOVED, "PENDING": State.PENDING}
NEUTRAL_CHANNEL = {"WECHAT": Channel.WECHAT, "ALIPAY": Channel.ALIPAY, "UNIONPAY": Channel.UNIONPAY, "": Channel.UNKNOWN}


@dataclass(frozen=True, slots=True)
class HisMapping:
    """How to read one vendor's export. The defaults are the neutral format."""

    encoding: str = "utf-8"
    delimiter: str = ","
    skip_lines: int = 0  # title lines before the header row
    require_trailer: bool = False
    signed_amount: bool = False  # refunds written as "-12.50"; no direction column
    columns: dict[str, str] = field(default_factory=lambda: {f: f for f in FIELDS})
    direction: dict[str, int] = field(default_factory=lambda: dict(NEUTRAL_DIRECTION))
    status: dict[str, State] = field(default_factory=lambda: dict(NEUTRAL_STATUS))
    pay_channel: dict[str, Channel] = field(default_factory=lambda: dict(NEUTRAL_CHANNEL))


NEUTRAL = HisMapping()


def load_mapping(path: str | Path) -> HisMapping:
    """Read and check a mapping file; every mistake is a ConfigError naming the key."""
    name = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the mapping file {name}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"mapping file {name} is not valid UTF-8 TOML: {exc}") from None
    return mapping_from_dict(data, name)


def mapping_from_dict(data: dict[str, object], name: str = "mapping") -> HisMapping:
    _only(data, {"file", "columns", "values"}, name)
    file = _table(data, "file", name)
    _only(file, {"encoding", "delimiter", "skip_lines", "require_trailer", "signed_amount"}, f"{name} [file]")
    encoding = normalize_encoding(str(file.get("encoding", "utf-8")))
    if encoding is None:
        raise ConfigError(f"{name} [file] encoding {file.get('encoding')!r}: use utf-8, gbk or gb18030")
    delimiter = file.get("delimiter", ",")
    if delimiter not in (",", "\t", ";", "|"):
        raise ConfigError(f"{name} [file] delimiter {delimiter!r}: use one of , ; | or a tab")
    skip = file.get("skip_lines", 0)
    if type(skip) is not int or not 0 <= skip <= 100:
        raise ConfigError(f"{name} [file] skip_lines must be an integer 0..100")
    flags = {k: file.get(k, False) for k in ("require_trailer", "signed_amount")}
    for key, value in flags.items():
        if type(value) is not bool:
            raise ConfigError(f"{name} [file] {key} must be true or false")
    columns_in = _table(data, "columns", name)
    _only(columns_in, set(FIELDS), f"{name} [columns]")
    columns = {f: f for f in FIELDS} | {k: _text(v, f"{name} [columns] {k}") for k, v in columns_in.items()}
    values = _table(data, "values", name)
    _only(values, {"direction", "status", "pay_channel"}, f"{name} [values]")
    direction = _vocab(values, "direction", NEUTRAL_DIRECTION, name)
    status = _vocab(values, "status", NEUTRAL_STATUS, name)
    channel = _vocab(values, "pay_channel", NEUTRAL_CHANNEL, name)
    return HisMapping(encoding, delimiter, skip, flags["require_trailer"], flags["signed_amount"], columns, direction, status, channel)


def _only(table: dict[str, object], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _table(data: dict[str, object], key: str, where: str) -> dict[str, object]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string")
    return value


def _vocab(values: dict[str, object], key: str, neutral: dict, name: str) -> dict:
    table = _table(values, key, f"{name} [values]")
    if not table:
        return dict(neutral)
    out = {}
    for vendor_value, neutral_value in table.items():
        if not isinstance(neutral_value, str) or neutral_value not in neutral:
            allowed = ", ".join(repr(v) for v in neutral)
            raise ConfigError(f"{name} [values.{key}] {vendor_value!r} = {neutral_value!r}: must be one of {allowed}")
        out[vendor_value.strip()] = neutral[neutral_value]
    return out


def read_his(path: str | Path, mapping: HisMapping = NEUTRAL) -> Iterator[tuple]:
    """Stream the ledger as Entry-layout tuples. Raises BadInput at the first problem."""
    name = Path(path).name
    try:
        fb = open(path, "rb")
    except OSError as exc:
        raise SourceUnavailable(f"cannot open the HIS ledger {path}: {exc.strerror or exc}") from None
    with fb:
        yield from _read(fb, name, mapping)


def _read(fb: BinaryIO, name: str, m: HisMapping) -> Iterator[tuple]:
    enc, delim = m.encoding, m.delimiter
    lineno = 0
    header: list[str] | None = None
    for raw in fb:
        lineno += 1
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if lineno <= m.skip_lines:
            continue
        text = decode_line(raw, enc, name, lineno).rstrip("\r\n")
        if text.strip():
            header = [h.strip() for h in _split(text, delim, name, lineno)]
            break
    if header is None:
        raise BadInput(name, lineno or 1, None, "empty file: the first line must be the header row")
    cols = _column_positions(header, m, name, lineno)
    i_order, i_msg, i_dir, i_amount, i_status, i_chan, i_pay, i_at = (cols.get(f, -1) for f in FIELDS)
    ncol = len(header)
    direction_of, status_of, channel_of = m.direction, m.status, m.pay_channel
    fen = FenParser(name)
    memo = fen.memo
    rows = 0
    trailer: int | None = None
    for raw in fb:
        lineno += 1
        start = lineno  # a quoted field may continue on the next lines: the record starts here
        line = decode_line(raw, enc, name, lineno)
        if '"' in line:
            while line.count('"') % 2:
                more = fb.readline()
                if not more:
                    raise BadInput(name, start, None, "a quoted field is not closed before the end of the file (truncated?)")
                lineno += 1
                line += decode_line(more, enc, name, lineno)
            row = parse_quoted(line, name, start) if delim == "," else _split(line.rstrip("\r\n"), delim, name, start)
        else:
            line = line.rstrip("\r\n")
            if not line:
                continue
            row = line.split(delim)
        if trailer is not None:
            raise BadInput(name, start, None, "data after the #END trailer line")
        if row[0] == "#END":
            trailer = _trailer(row, name, start)
            continue
        if len(row) != ncol:
            raise BadInput(name, start, None, f"{len(row)} fields, but the header has {ncol} (a stray delimiter or a cut line?)")
        order_no = row[i_order].strip()
        if not order_no:
            raise BadInput(name, start, m.columns["order_no"], "empty")
        amount = row[i_amount].strip()
        if m.signed_amount:
            signed = fen.parse_signed(amount, start, m.columns["amount"])
            direction, value = (REFUND, -signed) if signed < 0 else (COLLECT, signed)
        else:
            d_text = row[i_dir].strip()
            direction = direction_of.get(d_text)
            if direction is None:
                raise BadInput(name, start, m.columns["direction"], f"{d_text!r} is not one of {_allowed(direction_of)}")
            value = memo.get(amount)
            if value is None:
                value = fen.parse(amount, start, m.columns["amount"])
        if value == 0:
            raise BadInput(name, start, m.columns["amount"], "zero is not an amount")
        s_text = row[i_status].strip()
        state = status_of.get(s_text)
        if state is None:
            raise BadInput(name, start, m.columns["status"], f"{s_text!r} is not one of {_allowed(status_of)}")
        channel = Channel.UNKNOWN
        if i_chan >= 0:
            c_text = row[i_chan].strip()
            channel = channel_of.get(c_text)
            if channel is None:
                raise BadInput(name, start, m.columns["pay_channel"], f"{c_text!r} is not one of {_allowed(channel_of)}")
        rows += 1
        yield (
            start,
            order_no,
            row[i_msg].strip() if i_msg >= 0 else "",
            direction,
            value,
            state,
            channel,
            row[i_pay].strip() if i_pay >= 0 else "",
            "",
            row[i_at].strip() if i_at >= 0 else "",
        )
    if trailer is None and m.require_trailer:
        raise BadInput(name, lineno, None, "no #END trailer line: the export is incomplete (truncated?)")
    if trailer is not None and trailer != rows:
        raise BadInput(name, lineno, None, f"the #END trailer says {trailer} rows, the file has {rows} (truncated?)")


def _split(text: str, delim: str, name: str, lineno: int) -> list[str]:
    if '"' in text:
        try:
            return next(csv.reader([text], delimiter=delim, strict=True))
        except (csv.Error, StopIteration) as exc:
            raise BadInput(name, lineno, None, f"not valid CSV: {exc}") from None
    return text.split(delim)


def _column_positions(header: list[str], m: HisMapping, name: str, lineno: int) -> dict[str, int]:
    position = {h: i for i, h in enumerate(header)}
    if len(position) != len(header):
        raise BadInput(name, lineno, None, "the header names a column twice")
    required = REQUIRED + (() if m.signed_amount else ("direction",))
    cols: dict[str, int] = {}
    for f in FIELDS:
        vendor = m.columns[f]
        if vendor in position:
            cols[f] = position[vendor]
        elif f in required:
            raise BadInput(name, lineno, vendor, f"required column missing; the header has: {', '.join(header)}")
    return cols


def _trailer(row: list[str], name: str, lineno: int) -> int:
    if len(row) < 2 or not (row[1].strip().isascii() and row[1].strip().isdigit()):
        raise BadInput(name, lineno, "#END", "the trailer must be #END,<number of data rows>")
    return int(row[1].strip())


def _allowed(vocab: dict) -> str:
    return ", ".join(repr(k) for k in vocab)
