"""Read-only adapter over the bridge's journal: the only module that knows its schema.

The journal (bridge/journal.py, SQLite in WAL mode, PRAGMA user_version 1 or 2) keeps one row per
instruction in `instructions`, with the signed wire amount and, once the result arrived, the
verified result plaintext (pay_status, pay_channel, pay_order_no, result_amount, finished_at,
error_code). We open it with `mode=ro` (the bridge may be running) and never write.

The day of an instruction is the day of its result's `finished_at` in the hospital's time zone;
an instruction without a result belongs to the day it was accepted. An instruction accepted on the
day whose result came on a later day (a refund started before midnight and finished after it) is
read too, flagged late: its HIS row and perhaps its bill row are that day's (reconcile.match).
Per record:

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
import sys
from pathlib import Path
from array import array
from typing import Iterator

from protocol.amount import MAX_FEN, parse_amount
from protocol.errors import ProtocolError
from reconcile.archive import archived_rows
from reconcile.errors import BadInput, SourceUnavailable
from reconcile.model import CHANNEL_BY_NAME, COLLECT, FLAG_ECHO, FLAG_LATE, REFUND, Channel, Columns, State

SCHEMA_VERSIONS = (1, 2)  # 2 adds checksums and state counts (issue 14); nothing read here changed
_STATUS = {
    "SUCCESS": State.MOVED,
    "REFUNDED": State.MOVED,
    "FAILED": State.NOT_MOVED,
    "CLOSED": State.NOT_MOVED,
    "REFUND_FAILED": State.NOT_MOVED,
}
_REFUSED = "refused"
_DUPLICATE_ORDER = "duplicate_order"

# The day's records, and the instructions accepted that day whose result came on a later day (late:
# their HIS row, and perhaps their bill row, are this day's; their result is not: reconcile.match).
_WHERE = ("(finished_at >= :start AND finished_at < :end) OR (accepted_at >= :start AND accepted_at < :end "
          "AND (finished_at IS NULL OR finished_at >= :end))")
# The journal is read in chunks of seq (its primary key): what a chunk holds as text is turned into
# 8-byte keys and dropped before the next, so reading never holds a day's IDs as Python strings.
CHUNK = 1 << 15
_RANGE = "seq >= :first AND seq < :last"
# One row per instruction, as plain values (the row path: a fallback, see read_ours).
_ROWS = (
    "SELECT seq, msg_id, order_no, amount, state, pay_status, pay_channel, pay_order_no, result_amount, finished_at, error_code, accepted_at "
    f"FROM instructions WHERE {_RANGE} AND ({_WHERE}) ORDER BY seq"
)
# The same, column by column: SQLite concatenates each column into one string and Python splits
# it at C speed (a million rows through the row API cost ~3 s; this about half). Integers come as
# 16 hex digits each (one bytes.fromhex for all), result fields as one character each:
# S SUCCESS, R REFUNDED, F FAILED, C CLOSED, X REFUND_FAILED, N refused by the device, P no result
# yet, ? anything else; the channel W/A/U/0; 1 if the result is a duplicate_order replay.
_RS = "\x1e"  # record separator: cannot appear in IDs; if a value has it anyway, the row path is used
_COLUMNS = (
    "SELECT count(*), group_concat(order_no, char(30)), group_concat(msg_id, char(30)), "
    "group_concat(COALESCE(result_amount, amount), char(30)), group_concat(COALESCE(pay_order_no, ''), char(30)), "
    "group_concat(printf('%016x%016x', seq, COALESCE(finished_at, CAST(accepted_at AS INTEGER))), ''), "
    "group_concat(CASE WHEN pay_status IS NULL THEN (CASE WHEN state = 'refused' THEN 'N' ELSE 'P' END) "
    "WHEN pay_status = 'SUCCESS' THEN 'S' WHEN pay_status = 'REFUNDED' THEN 'R' WHEN pay_status = 'FAILED' THEN 'F' "
    "WHEN pay_status = 'CLOSED' THEN 'C' WHEN pay_status = 'REFUND_FAILED' THEN 'X' ELSE '?' END, ''), "
    "group_concat(CASE pay_channel WHEN 'WECHAT' THEN 'W' WHEN 'ALIPAY' THEN 'A' WHEN 'UNIONPAY' THEN 'U' ELSE '0' END, ''), "
    "group_concat(CASE WHEN finished_at >= :end THEN (CASE WHEN error_code = 'duplicate_order' THEN 'B' ELSE 'L' END) "
    "WHEN error_code = 'duplicate_order' THEN '1' ELSE '0' END, '') "
    # One aggregate pass: every column sees the rows in the same (table) order.
    f"FROM instructions WHERE {_RANGE} AND ({_WHERE})"
)
# For the worker that joins the bills (run.match_day): no order numbers or msg_ids needed.
_FUNDS_COLUMNS = _COLUMNS.replace("group_concat(order_no, char(30))", "NULL").replace("group_concat(msg_id, char(30))", "NULL")
_STATE_CODES = bytes.maketrans(b"SRFCXNP", bytes([State.MOVED, State.MOVED, State.NOT_MOVED, State.NOT_MOVED, State.NOT_MOVED, State.NOT_MOVED, State.PENDING]))
_CHANNEL_CODES = bytes.maketrans(b"WAU0", bytes([Channel.WECHAT, Channel.ALIPAY, Channel.UNIONPAY, Channel.UNKNOWN]))
_FLAG_CODES = bytes.maketrans(b"01LB", bytes([0, FLAG_ECHO, FLAG_LATE, FLAG_LATE | FLAG_ECHO]))


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
    if version not in SCHEMA_VERSIONS or not columns:
        db.close()
        raise SourceUnavailable(f"{path} is not a bridge journal this version understands (schema {version}, expected {SCHEMA_VERSIONS})")
    return db


def read_ours(path: str | Path, day: datetime.date, tz: datetime.tzinfo, *, funds_only: bool = False, keep_text: bool = False) -> Columns:
    """The day's instructions and results, as columns of numbers; `at` is epoch seconds. IDs become
    keys (reconcile.units): `funds_only` leaves out the order numbers' and msg_ids' (all the bill
    join needs is the rest); `keep_text` keeps the IDs themselves too (small journals, tests)."""
    name = Path(path).name
    start, end = day_window(day, tz)
    db = open_readonly(path)
    out = Columns.empty(keep_text)
    try:
        low, high = db.execute("SELECT min(seq), max(seq) FROM instructions").fetchone()
        for first in range(low or 0, (high or -1) + 1, CHUNK):
            window = {"first": first, "last": first + CHUNK, "start": start, "end": end}
            if not _by_columns(db, name, window, out, funds_only, keep_text):
                _by_rows(db, name, window, out, keep_text)
        # Days past the bridge's retention live in its monthly archives (reconcile.archive).
        archived = archived_rows(path, start, end, lambda values: _row(values, name, {}, end))
        if archived:
            out.extend(Columns.from_rows(archived, keep_text=keep_text))
    except sqlite3.Error as exc:
        raise SourceUnavailable(f"reading the bridge journal {path} failed: {exc}") from None
    finally:
        db.close()
    return out


def iter_ours(path: str | Path, day: datetime.date, tz: datetime.tzinfo) -> Iterator[Columns]:
    """The same records as read_ours (without their IDs' text), one chunk of seq at a time: for a
    day too large to hold whole (reconcile.slices spills each chunk to disk as it comes)."""
    name = Path(path).name
    start, end = day_window(day, tz)
    db = open_readonly(path)
    try:
        low, high = db.execute("SELECT min(seq), max(seq) FROM instructions").fetchone()
        for first in range(low or 0, (high or -1) + 1, CHUNK):
            window = {"first": first, "last": first + CHUNK, "start": start, "end": end}
            out = Columns.empty()
            if not _by_columns(db, name, window, out, False, False):
                _by_rows(db, name, window, out, False)
            if len(out):
                yield out
        archived = archived_rows(path, start, end, lambda values: _row(values, name, {}, end))
        if archived:
            yield Columns.from_rows(archived, keep_text=False)
    except sqlite3.Error as exc:
        raise SourceUnavailable(f"reading the bridge journal {path} failed: {exc}") from None
    finally:
        db.close()


def time_histogram(path: str | Path, day: datetime.date, tz: datetime.tzinfo) -> dict[int, int]:
    """How many of the day's records have each `at` (epoch second): one aggregate query, to cut the
    day into slices of about equal size (reconcile.slices)."""
    start, end = day_window(day, tz)
    db = open_readonly(path)
    try:
        return dict(db.execute(f"SELECT COALESCE(finished_at, CAST(accepted_at AS INTEGER)), count(*) FROM instructions WHERE {_WHERE} "
                               "GROUP BY 1", {"start": start, "end": end}).fetchall())
    except sqlite3.Error as exc:
        raise SourceUnavailable(f"reading the bridge journal {path} failed: {exc}") from None
    finally:
        db.close()


def duplicate_seqs(journals: list[Path], day: datetime.date, tz: datetime.tzinfo) -> list[set[int]]:
    """Per journal, the seqs of the day's records whose msg_id an earlier journal's day records
    have too (the matcher flags them duplicates): SQLite joins on the msg_id indexes, so a day
    cut into slices finds the pairs a slice apart without holding every key."""
    start, end = day_window(day, tz)
    out: list[set[int]] = [set()]
    for j in range(1, len(journals)):
        db = open_readonly(journals[j])
        found: set[int] = set()
        try:
            for k in range(j):
                db.execute("ATTACH DATABASE ? AS earlier", (Path(journals[k]).resolve().as_uri() + "?mode=ro",))
                found.update(seq for (seq,) in db.execute(
                    f"SELECT seq FROM main.instructions WHERE ({_WHERE}) AND msg_id IN "
                    f"(SELECT msg_id FROM earlier.instructions WHERE {_WHERE})", {"start": start, "end": end}))
                db.execute("DETACH DATABASE earlier")
        except sqlite3.Error as exc:
            raise SourceUnavailable(f"reading the bridge journal {journals[j]} failed: {exc}") from None
        finally:
            db.close()
        out.append(found)
    return out


def _by_columns(db: sqlite3.Connection, name: str, window: dict[str, int], out: Columns, funds_only: bool, keep_text: bool) -> bool:
    """Append one chunk to `out`; False (and nothing appended) if a value holds the separator."""
    got = list(db.execute(_FUNDS_COLUMNS if funds_only else _COLUMNS, window).fetchone())
    n, numbers, states, channels, flags = got[0], got[5], got[6], got[7], got[8]
    if n == 0:
        return True

    def split(k: int) -> list[str]:
        text, got[k] = got[k], None  # free each joined string as soon as it is split (peak memory)
        return [""] * n if text is None else text.split(_RS)

    order_no, msg_id, amount, pay_order_no = split(1), split(2), split(3), split(4)
    if not len(order_no) == len(msg_id) == len(amount) == len(pay_order_no) == len(states) == n:
        return False  # a value contains the separator: read row by row instead
    ints = array("q", bytes.fromhex(numbers))
    if sys.byteorder == "little":
        ints.byteswap()  # the hex digits are big-endian
    line, at = ints[0::2], ints[1::2]
    if "?" in states:
        k = states.index("?")
        status = db.execute("SELECT pay_status FROM instructions WHERE seq = ?", (line[k],)).fetchone()[0]
        raise BadInput(name, line[k], "pay_status", f"{status!r} is not a result status")
    parsed = {text: _signed(text, name, line[amount.index(text)]) for text in set(amount)}
    direction = array("b", [parsed[t][0] for t in amount])
    out.append(line, order_no, msg_id, direction, array("q", [parsed[t][1] for t in amount]),
               array("b", states.encode().translate(_STATE_CODES)), array("b", channels.encode().translate(_CHANNEL_CODES)),
               pay_order_no, at, array("b", flags.encode().translate(_FLAG_CODES)), with_ids=not funds_only)
    return True


def _by_rows(db: sqlite3.Connection, name: str, window: dict[str, int], out: Columns, keep_text: bool) -> None:
    amounts: dict[str, tuple[int, int]] = {}
    out.extend(Columns.from_rows([_row(values, name, amounts, window["end"]) for values in db.execute(_ROWS, window)],
                                 keep_text=keep_text))


def _row(values: tuple, name: str, amounts: dict[str, tuple[int, int]], end: int) -> tuple:
    """One journal (or archive) row as an Entry-layout tuple."""
    seq, msg_id, order_no, amount, jstate, pay_status, pay_channel, pay_order_no, result_amount, finished_at, error_code, accepted_at = values
    text = result_amount or amount
    parsed = amounts.get(text)
    if parsed is None:
        parsed = amounts[text] = _signed(text, name, seq)
    flags = 0
    if pay_status is not None:
        state = _STATUS.get(pay_status)
        if state is None:
            raise BadInput(name, seq, "pay_status", f"{pay_status!r} is not a result status")
        flags = (FLAG_LATE if finished_at >= end else 0) | (FLAG_ECHO if error_code == _DUPLICATE_ORDER else 0)
        at = finished_at
    else:
        state = State.NOT_MOVED if jstate == _REFUSED else State.PENDING
        at = int(accepted_at)
    channel = CHANNEL_BY_NAME.get(pay_channel or "", Channel.UNKNOWN)
    return (seq, order_no, msg_id, parsed[0], parsed[1], state, channel, pay_order_no or "", "", at, flags)


def _signed(text: str, name: str, seq: int) -> tuple[int, int]:
    try:
        amount = parse_amount(text, limit_fen=MAX_FEN)
    except ProtocolError as exc:
        raise BadInput(name, seq, "amount", exc.message) from None
    return (REFUND if amount.is_refund else COLLECT), amount.fen


def texts_by_seq(path: str | Path, seqs: list[int]) -> dict[int, tuple[str, str, str]]:
    """(order_no, msg_id, pay_order_no) of the given records: the few the report shows (the
    matcher keeps only their keys)."""
    found: dict[int, tuple[str, str, str]] = {}
    db = open_readonly(path)
    try:
        for k in range(0, len(seqs), 500):
            part = seqs[k : k + 500]
            marks = ",".join("?" * len(part))
            for seq, order_no, msg_id, pay in db.execute(
                    f"SELECT seq, order_no, msg_id, COALESCE(pay_order_no, '') FROM instructions WHERE seq IN ({marks})", part):
                found[seq] = (order_no, msg_id, pay)
    except sqlite3.Error as exc:
        raise SourceUnavailable(f"reading the bridge journal {path} failed: {exc}") from None
    finally:
        db.close()
    return found


def terminal_ids(path: str | Path, msg_ids: list[str]) -> dict[str, str]:
    """The cashier window (terminal_id) each instruction came from, for the few that need a
    command in the report: a refund must go to the window whose POS collected the payment."""
    found: dict[str, str] = {}
    db = open_readonly(path)
    try:
        for k in range(0, len(msg_ids), 500):
            part = msg_ids[k : k + 500]
            marks = ",".join("?" * len(part))
            found.update(db.execute(f"SELECT msg_id, terminal_id FROM instructions WHERE msg_id IN ({marks})", part).fetchall())
    except sqlite3.Error as exc:
        raise SourceUnavailable(f"reading the bridge journal {path} failed: {exc}") from None
    finally:
        db.close()
    return found

