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

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from reconcile.errors import BadInput, ConfigError, SourceUnavailable
from reconcile.fen import FenParser
from reconcile.lines import BATCH, BOM, bad_bytes, decode_line, normalize_encoding, read_records, record
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


def read_his(path: str | Path, mapping: HisMapping = NEUTRAL) -> Iterator[list[tuple]]:
    """Stream the ledger as batches of Entry-layout tuples. Raises BadInput at the first problem."""
    name = Path(path).name
    try:
        fb = open(path, "rb")
    except OSError as exc:
        raise SourceUnavailable(f"cannot open the HIS ledger {path}: {exc.strerror or exc}") from None
    with fb:
        yield from _read(fb, name, mapping)


def _read(fb: BinaryIO, name: str, m: HisMapping) -> Iterator[list[tuple]]:
    enc, delim = m.encoding, m.delimiter
    lineno = 0
    header: list[str] | None = None
    while header is None:
        raw = fb.readline()
        if not raw:
            raise BadInput(name, lineno or 1, None, "empty file: the first line must be the header row")
        lineno += 1
        if lineno == 1 and raw.startswith(BOM):
            raw = raw[3:]
        if lineno <= m.skip_lines:
            continue
        row, lineno = record(fb, decode_line(raw, enc, name, lineno), lineno, name, enc, delim)
        if row and any(h.strip() for h in row):
            header = [h.strip() for h in row]
    cols = _column_positions(header, m, name, lineno)
    ncol = len(header)
    # An optional column the file lacks reads as the empty string one past the row's end: `row + [""]`
    # would cost a list per row, so rows get the empty field appended only then (see `pad`).
    pad = any(f not in cols for f in FIELDS)
    i_order, i_msg, i_dir, i_amount, i_status, i_chan, i_pay, i_at = (cols.get(f, ncol) for f in FIELDS)
    signed_amount = m.signed_amount
    ws_before, ws_after = " " + delim, delim + " "
    # Plain ints in the hot loop (enum members compare and store slower).
    direction_of = {k: int(v) for k, v in m.direction.items()}
    status_of = {k: int(v) for k, v in m.status.items()}
    channel_of = {k: int(v) for k, v in m.pay_channel.items()} if "pay_channel" in cols else {"": int(Channel.UNKNOWN)}
    fen = FenParser(name)
    memo = fen.memo
    rows = 0
    trailer: int | None = None
    batch: list[tuple] = []
    for raw in fb:
        lineno += 1
        start = lineno  # a quoted field may continue on the next lines: the record starts here
        try:
            line = raw.decode(enc)
        except UnicodeDecodeError as exc:
            raise bad_bytes(name, lineno, exc, enc) from None
        if '"' in line:
            row, lineno = record(fb, line, lineno, name, enc, delim)
            if not row:
                continue
        else:
            line = line.rstrip("\r\n")
            if not line:
                continue
            row = line.split(delim)
        if pad:
            row.append("")
        if len(row) != ncol + pad:
            if row[0].strip() == "#END":
                trailer = _trailer(row, name, start)
                _nothing_after(fb, name, lineno, enc)
                break
            raise BadInput(name, start, None, f"{len(row) - pad} fields, but the header has {ncol} (a stray delimiter or a cut line?)")
        if ws_before in line or ws_after in line or "\t" in line or line.strip() is not line:
            row = [f.strip() for f in row]  # a vendor padded its fields
        order_no = row[i_order]
        if not order_no:
            raise BadInput(name, start, m.columns["order_no"], "empty")
        if order_no == "#END":
            trailer = _trailer(row, name, start)
            _nothing_after(fb, name, lineno, enc)
            break
        amount = row[i_amount]
        if signed_amount:
            signed = fen.parse_signed(amount, start, m.columns["amount"])
            direction, value = (REFUND, -signed) if signed < 0 else (COLLECT, signed)
        else:
            direction = direction_of.get(row[i_dir])
            if direction is None:
                raise BadInput(name, start, m.columns["direction"], f"{row[i_dir]!r} is not one of {_allowed(direction_of)}")
            value = memo.get(amount)
            if value is None:
                value = fen.parse(amount, start, m.columns["amount"])
        if value == 0:
            raise BadInput(name, start, m.columns["amount"], "zero is not an amount")
        state = status_of.get(row[i_status])
        if state is None:
            raise BadInput(name, start, m.columns["status"], f"{row[i_status]!r} is not one of {_allowed(status_of)}")
        channel = channel_of.get(row[i_chan])
        if channel is None:
            raise BadInput(name, start, m.columns["pay_channel"], f"{row[i_chan]!r} is not one of {_allowed(channel_of)}")
        rows += 1
        batch.append((start, order_no, row[i_msg], direction, value, state, channel, row[i_pay], "", row[i_at]))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
    if trailer is None and m.require_trailer:
        raise BadInput(name, lineno, None, "no #END trailer line: the export is incomplete (truncated?)")
    if trailer is not None and trailer != rows:
        raise BadInput(name, lineno, None, f"the #END trailer says {trailer} rows, the file has {rows} (truncated?)")


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


def _nothing_after(fb: BinaryIO, name: str, lineno: int, enc: str) -> None:
    for lineno, _ in read_records(fb, name, enc, start=lineno):
        raise BadInput(name, lineno, None, "data after the #END trailer line")


def _trailer(row: list[str], name: str, lineno: int) -> int:
    if len(row) < 2 or not (row[1].strip().isascii() and row[1].strip().isdigit()):
        raise BadInput(name, lineno, "#END", "the trailer must be #END,<number of data rows>")
    return int(row[1].strip())


def _allowed(vocab: dict) -> str:
    return ", ".join(repr(k) for k in vocab)
