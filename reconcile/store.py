"""The reconciliation state: each day's differences and the finance staff's resolutions (SQLite).

A re-run of a day replaces that day's differences in one transaction; resolutions are keyed by the
difference id, which is derived from what the difference *is* (class, channel, order, instruction,
channel id), so a resolved difference stays resolved when the same day is reconciled again.
Every resolution is also appended to `resolution_log`, which is never rewritten (audit). `carried`
keeps, per day, what HIS and the bill said about instructions whose result came on a later day, so
that day's run knows its HIS row and bill row were seen (reconcile.match, cross-midnight).
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from reconcile.errors import ConfigError, NotFound, SourceUnavailable
from reconcile.model import Carried, Difference, SideView, State

SCHEMA_VERSION = 2  # 2: carried (1 is upgraded in place)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    day TEXT PRIMARY KEY, ran_at TEXT NOT NULL, inputs TEXT NOT NULL, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS differences (
    diff_id TEXT PRIMARY KEY, day TEXT NOT NULL, cls TEXT NOT NULL, reason TEXT NOT NULL,
    channel INTEGER NOT NULL, direction INTEGER NOT NULL, order_no TEXT NOT NULL, msg_id TEXT NOT NULL,
    pay_order_no TEXT NOT NULL, his_effect INTEGER NOT NULL, ours_effect INTEGER NOT NULL,
    chan_effect INTEGER NOT NULL, sides TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS differences_day ON differences (day);
CREATE TABLE IF NOT EXISTS resolutions (
    diff_id TEXT PRIMARY KEY, resolved_at TEXT NOT NULL, resolved_by TEXT NOT NULL, note TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS carried (
    day TEXT NOT NULL, msg_id TEXT NOT NULL, side TEXT NOT NULL, effect INTEGER NOT NULL, view TEXT NOT NULL,
    PRIMARY KEY (day, msg_id, side));
CREATE TABLE IF NOT EXISTS resolution_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, diff_id TEXT NOT NULL, resolved_at TEXT NOT NULL,
    resolved_by TEXT NOT NULL, note TEXT NOT NULL);
"""
MAX_NOTE = 2000
# A result may come days after its instruction (a refund the bank handles slowly): what HIS and the
# bills said is kept for the runs of this many days after.
CARRY_DAYS = 31


@dataclass(frozen=True, slots=True)
class Resolution:
    diff_id: str
    resolved_at: str
    resolved_by: str
    note: str


@dataclass(frozen=True, slots=True)
class StoredDifference:
    diff_id: str
    day: str
    cls: str
    reason: str
    order_no: str
    msg_id: str
    pay_order_no: str
    position: int
    resolution: Resolution | None


class StateStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, SCHEMA_VERSION):
                raise ConfigError(f"{self.path} has state schema {version}; this version knows {SCHEMA_VERSION}")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise SourceUnavailable(f"cannot open the reconciliation state {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "StateStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def replace_day(self, day: str, ran_at: str, inputs: dict[str, object], summary: dict[str, object], diffs: Iterable[Difference],
                    carried: Iterable[Carried] = ()) -> None:
        """Atomically: the day's differences, run summary and carried rows become exactly these."""
        rows = (
            (d.diff_id, day, d.cls.value, d.reason.value, int(d.channel), d.direction, d.order_no, d.msg_id, d.pay_order_no,
             d.his_effect, d.ours_effect, d.chan_effect, json.dumps(_sides(d), ensure_ascii=False))
            for d in diffs
        )
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM differences WHERE day = ?", (day,))
            self._db.executemany("INSERT INTO differences VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("DELETE FROM carried WHERE day = ?", (day,))
            self._db.executemany("INSERT OR REPLACE INTO carried VALUES (?, ?, ?, ?, ?)",
                                 ((day, c.msg_id, c.side, c.effect, json.dumps(_view(c.view), ensure_ascii=False)) for c in carried))
            self._db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)",
                             (day, ran_at, json.dumps(inputs, ensure_ascii=False), json.dumps(summary, ensure_ascii=False)))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise SourceUnavailable(f"cannot write the reconciliation state {self.path}: {exc}") from None

    def resolutions(self, day: str) -> dict[str, Resolution]:
        rows = self._db.execute(
            "SELECT r.diff_id, r.resolved_at, r.resolved_by, r.note FROM resolutions r JOIN differences d ON d.diff_id = r.diff_id WHERE d.day = ?",
            (day,),
        ).fetchall()
        return {r[0]: Resolution(*r) for r in rows}

    def resolutions_with_prefix(self, prefix: str) -> dict[str, Resolution]:
        """Resolutions of a day's ids ("20261122-"), whether or not the day's differences are stored yet."""
        rows = self._db.execute(
            "SELECT diff_id, resolved_at, resolved_by, note FROM resolutions WHERE substr(diff_id, 1, ?) = ?", (len(prefix), prefix)
        ).fetchall()
        return {r[0]: Resolution(*r) for r in rows}

    def resolution_of(self, diff_id: str) -> Resolution | None:
        row = self._db.execute("SELECT diff_id, resolved_at, resolved_by, note FROM resolutions WHERE diff_id = ?", (diff_id,)).fetchone()
        return Resolution(*row) if row else None

    def resolve(self, diff_id: str, note: str, by: str, now: datetime.datetime) -> Resolution:
        note = note.strip()
        if not note:
            raise ConfigError("a resolution needs a note saying what was done (e.g. the HIS refund instruction's msg_id)")
        if len(note) > MAX_NOTE:
            raise ConfigError(f"the note is longer than {MAX_NOTE} characters")
        if self._db.execute("SELECT 1 FROM differences WHERE diff_id = ?", (diff_id,)).fetchone() is None:
            raise NotFound(f"no difference {diff_id!r} in {self.path}; `reconcile list --date YYYY-MM-DD` shows the day's ids")
        resolution = Resolution(diff_id, now.isoformat(timespec="seconds"), by, note)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO resolutions VALUES (?, ?, ?, ?)", (diff_id, resolution.resolved_at, by, note))
            self._db.execute("INSERT INTO resolution_log (diff_id, resolved_at, resolved_by, note) VALUES (?, ?, ?, ?)",
                             (diff_id, resolution.resolved_at, by, note))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise SourceUnavailable(f"cannot write the reconciliation state {self.path}: {exc}") from None
        return resolution

    def list_day(self, day: str) -> list[StoredDifference]:
        rows = self._db.execute(
            "SELECT d.diff_id, d.day, d.cls, d.reason, d.order_no, d.msg_id, d.pay_order_no, d.chan_effect - d.his_effect, "
            "r.diff_id, r.resolved_at, r.resolved_by, r.note FROM differences d LEFT JOIN resolutions r ON r.diff_id = d.diff_id "
            "WHERE d.day = ? ORDER BY d.cls, d.diff_id",
            (day,),
        ).fetchall()
        return [StoredDifference(*r[:8], Resolution(*r[8:]) if r[8] else None) for r in rows]

    def has_run(self, day: str) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE day = ?", (day,)).fetchone() is not None


def _view(v: SideView | None) -> object:
    return None if v is None else {"where": v.where, "fen": v.fen, "state": v.state.name, "pay_order_no": v.pay_order_no, "at": v.at}


def _sides(d: Difference) -> dict[str, object]:
    return {"his": _view(d.his), "ours": _view(d.ours), "channel": _view(d.chan), "platform": _view(d.plat), "near_midnight": d.near_midnight}


def carried_before(path: str | Path, day: str, days: int = CARRY_DAYS) -> list[Carried]:
    """What HIS and the bills said, on the `days` days before `day`, about instructions whose result
    came later (reconcile.match): for the run of the day the results came on. Writes nothing; nothing
    if there is no state yet (or it predates the carried table)."""
    if not Path(path).is_file():
        return []
    first = (datetime.date.fromisoformat(day) - datetime.timedelta(days=days)).isoformat()
    try:
        db = sqlite3.connect(str(path), timeout=30)  # not mode=ro: that would leave its WAL files behind
        try:
            rows = db.execute("SELECT day, msg_id, side, effect, view FROM carried WHERE day >= ? AND day < ?", (first, day)).fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise SourceUnavailable(f"cannot read the reconciliation state {path}: {exc}") from None
    except sqlite3.Error as exc:
        raise SourceUnavailable(f"cannot read the reconciliation state {path}: {exc}") from None
    out = []
    for d, msg_id, side, effect, view in rows:
        v = json.loads(view)
        out.append(Carried(d, msg_id, side, SideView(f"{v['where']} ({d})", v["fen"], State[v["state"]], v["pay_order_no"], v["at"]), effect))
    return out
