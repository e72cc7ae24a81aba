"""Read-only adapter over the bridge's journal: the only module that knows its schema.

The journal (bridge/journal.py, SQLite in WAL mode, PRAGMA user_version 1) keeps one row per
instruction in `instructions`, with the signed wire amount and, once the result arrived, the
verified result plaintext (pay_status, pay_channel, pay_order_no, result_amount, finished_at,
error_code). We open it with `mode=ro` (the bridge may be running) and never write.

The day of an instruction is the day of its result's `finished_at` in the hospital's time zone;
an instruction without a result belongs to the day it was accepted. Per record:

    SUCCESS / REFUNDED          moved (collected / refunded)
    FAILED / CLOSED / REFUND_FAILED, refused by the device
                                nothing moved
    no result yet               pending
    error_code duplicate_order  the original result replayed for a second '+': moves nothing itself

The channel's merchant order and refund numbers (out_trade_no, out_refund_no) cannot be derived
here: the terminal salts them per instruction in its own journal, on the POS. A bill row that
matches no channel id in the journal is therefore matched by channel, amount and time (match.py).
"""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path
from typing import Iterator

from protocol.amount import MAX_FEN, parse_amount
from protocol.errors import ProtocolError
from reconcile.errors import BadInput, SourceUnavailable
from reconcile.model import CHANNEL_BY_NAME, COLLECT, FLAG_ECHO, REFUND, Channel, State

SCHEMA_VERSION = 1
_STATUS = {
    "SUCCESS": State.MOVED,
    "REFUNDED": State.MOVED,
    "FAILED": State.NOT_MOVED,
    "CLOSED": State.NOT_MOVED,
    "REFUND_FAILED": State.NOT_MOVED,
}
_REFUSED = "refused"
_DUPLICATE_ORDER = "duplicate_order"

_QUERY = (
    "SELECT seq, msg_id, order_no, amount, state, pay_status, pay_channel, pay_order_no, result_amount, finished_at, error_code, accepted_at "
    "FROM instructions WHERE (finished_at >= ? AND finished_at < ?) OR (finished_at IS NULL AND accepted_at >= ? AND accepted_at < ?) "
    "ORDER BY seq"
)


def day_window(day: datetime.date, tz: datetime.tzinfo) -> tuple[int, int]:
    """[start, end) of the day in unix seconds, in the hospital's time zone."""
    start = datetime.datetime.combine(day, datetime.time(0), tz)
    return int(start.timestamp()), int((start + datetime.timedelta(days=1)).timestamp())


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """Open the journal without any chance of writing to it, even while the bridge runs."""
    p = Path(path)
    if not p.is_file():
        raise SourceUnavailable(f"the bridge journal {path} does not exist; give the path of the bridge's journal file (its --journal setting)")
    try:
        db = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        columns = {row[1] for row in db.execute("PRAGMA table_info(instructions)")}
    except sqlite3.Error as exc:
        raise SourceUnavailable(f"cannot read the bridge journal {path}: {exc} (is it a bridge journal? is the file readable?)") from None
    if version != SCHEMA_VERSION or not columns:
        db.close()
        raise SourceUnavailable(f"{path} is not a bridge journal this version understands (schema {version}, expected {SCHEMA_VERSION})")
    return db


def read_ours(path: str | Path, day: datetime.date, tz: datetime.tzinfo) -> Iterator[tuple]:
    """Stream the day's instructions as Entry-layout tuples (with flags); `at` is epoch seconds."""
    name = Path(path).name
    start, end = day_window(day, tz)
    db = open_readonly(path)
    amounts: dict[str, tuple[int, int]] = {}
    try:
        for seq, msg_id, order_no, amount, jstate, pay_status, pay_channel, pay_order_no, result_amount, finished_at, error_code, accepted_at in db.execute(_QUERY, (start, end, start, end)):
            text = result_amount or amount
            parsed = amounts.get(text)
            if parsed is None:
                parsed = _signed(text, name, seq)
                amounts[text] = parsed
            direction, fen = parsed
            flags = 0
            if pay_status is not None:
                state = _STATUS.get(pay_status)
                if state is None:
                    raise BadInput(name, seq, "pay_status", f"{pay_status!r} is not a result status")
                if error_code == _DUPLICATE_ORDER:
                    flags = FLAG_ECHO
                at = finished_at
            else:
                state = State.NOT_MOVED if jstate == _REFUSED else State.PENDING
                at = int(accepted_at)
            channel = CHANNEL_BY_NAME.get(pay_channel or "", Channel.UNKNOWN)
            yield (seq, order_no, msg_id, direction, fen, state, channel, pay_order_no or "", "", at, flags)
    except sqlite3.Error as exc:
        raise SourceUnavailable(f"reading the bridge journal {path} failed: {exc}") from None
    finally:
        db.close()


def _signed(text: str, name: str, seq: int) -> tuple[int, int]:
    try:
        amount = parse_amount(text, limit_fen=MAX_FEN)
    except ProtocolError as exc:
        raise BadInput(name, seq, "amount", exc.message) from None
    return (REFUND if amount.is_refund else COLLECT), amount.fen
