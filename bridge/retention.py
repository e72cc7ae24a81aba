"""Retention: finished instructions older than the retention period leave the journal for an archive.

Once a day (and with `his-bridge journal prune`), instructions whose result or refusal is older than
`[journal] retention_days` (default 400: T+1 reconciliation and a yearly audit) are written to one
archive per month of their acceptance (UTC), `archive_dir/journal-YYYY-MM.jsonl.gz`, and only after
that file is durably in place are they removed from the journal (with their transitions).

An archive is gzip'd JSON lines, one instruction per line with every column (BLOBs base64) and its
transitions; `journal-YYYY-MM.jsonl.gz.sha256` beside it holds its SHA-256 (`sha256sum -c` reads it).
Archiving into a month that already has a file verifies that file, then rewrites it with the old
and the new lines (to a temporary name, fsync, rename), so a month is always one whole file.
Reconciliation reads archives too (reconcile/archive.py).
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bridge.journal import Journal, JournalError
from local_storage.atomic_file import publish, write_atomically

ARCHIVE_FORMAT = "his-bridge-archive-v1"
BATCH = 5000  # instructions archived and removed per transaction (keeps the writer's lock short)
_COLUMNS = ("seq", "msg_id", "kid", "digest", "envelope", "ts", "terminal_id", "device_id", "order_no", "amount", "state",
            "progress", "accepted_at", "updated_at", "result_msg_id", "result_envelope", "result_at", "pay_status",
            "pay_channel", "pay_order_no", "result_amount", "finished_at", "error_code", "refusal_code",
            "refusal_message", "env_sum", "result_sum")
_BLOBS = {"digest", "envelope", "result_envelope", "env_sum", "result_sum", "cancel_envelope"}


@dataclass(frozen=True, slots=True)
class PruneReport:
    archived: int
    months: tuple[str, ...]


def archive_name(month: str) -> str:
    return f"journal-{month}.jsonl.gz"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_archive(path: Path) -> None:
    """Raise JournalError unless the archive matches its .sha256."""
    sidecar = path.with_name(path.name + ".sha256")
    try:
        expected = sidecar.read_text(encoding="ascii").split()[0]
    except (OSError, IndexError):
        raise JournalError(f"the archive {path} has no readable checksum file {sidecar.name}") from None
    if sha256_file(path) != expected:
        raise JournalError(f"the archive {path} does not match its checksum: damaged; restore it from a backup")


def read_archive(path: Path) -> list[dict[str, object]]:
    """The verified records of one archive (BLOB columns still base64)."""
    verify_archive(path)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    if records and records[0].get("format") == ARCHIVE_FORMAT:
        records = records[1:]
    return records


def _record(row: sqlite3.Row, transitions: list[tuple]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in _COLUMNS:
        value = row[name]
        out[name] = base64.b64encode(bytes(value)).decode() if name in _BLOBS and value is not None else value
    out["transitions"] = [{"at": at, "state": state, "detail": detail} for at, state, detail in transitions]
    return out


def _write_month(directory: Path, month: str, records: list[dict[str, object]]) -> None:
    path = directory / archive_name(month)
    old = read_archive(path) if path.exists() else []
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write((json.dumps({"format": ARCHIVE_FORMAT, "month": month}) + "\n").encode())
            for record in [*old, *records]:
                gz.write((json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode())
    digest = sha256_file(partial)
    # The sidecar names the new contents before they replace the old: if we die in between, the
    # month fails its check (found, never silently wrong) and the journal still holds every row.
    write_atomically(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")
    publish(partial, path)


def prune(journal: Journal, archive_dir: Path, *, retention_days: int, now: float) -> PruneReport:
    """Archive and remove finished instructions older than `retention_days`."""
    cutoff = now - retention_days * 86400
    archive_dir.mkdir(parents=True, exist_ok=True)
    total, months = 0, set()
    while True:
        rows = journal.finished_before(cutoff, BATCH)
        if not rows:
            break
        by_month: dict[str, list[dict[str, object]]] = {}
        for row, transitions in rows:
            month = datetime.datetime.fromtimestamp(row["accepted_at"], datetime.timezone.utc).strftime("%Y-%m")
            by_month.setdefault(month, []).append(_record(row, transitions))
        for month, records in sorted(by_month.items()):
            _write_month(archive_dir, month, records)
            months.add(month)
        journal.remove_finished([row["msg_id"] for row, _ in rows])
        total += len(rows)
    return PruneReport(total, tuple(sorted(months)))
