"""Reads the bridge's monthly archives (bridge/retention.py) for reconciliation.

The bridge moves finished instructions older than its retention period out of the journal into
`archive/journal-YYYY-MM.jsonl.gz` beside it (each with a `.sha256`). A day being reconciled may
lie partly or wholly in those archives; this module returns their records for a time window as
the same row tuples reconcile.ours builds from the journal. An archive that fails its checksum is
a SourceUnavailable (never read as if whole). The format is read here, not imported from bridge/,
so that reconcile keeps reading archives whatever bridge version wrote them.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
from pathlib import Path
from typing import Callable

from reconcile.errors import SourceUnavailable

ARCHIVE_DIR = "archive"  # the bridge's default `[journal] archive_dir`, beside the journal


def archive_dir_for(journal: str | Path) -> Path:
    return Path(journal).resolve().parent / ARCHIVE_DIR


def _months(start: int, end: int) -> list[str]:
    """Archive months (UTC, by acceptance) that can hold instructions finished in [start, end)."""
    first = datetime.datetime.fromtimestamp(start, datetime.timezone.utc).replace(day=1) - datetime.timedelta(days=1)
    last = datetime.datetime.fromtimestamp(end, datetime.timezone.utc)
    months, cursor = [], first.replace(day=1)
    while cursor <= last:
        months.append(cursor.strftime("%Y-%m"))
        cursor = (cursor + datetime.timedelta(days=32)).replace(day=1)
    return months


def _verified_lines(path: Path) -> list[dict[str, object]]:
    sidecar = path.with_name(path.name + ".sha256")
    try:
        expected = sidecar.read_text(encoding="ascii").split()[0]
        data = path.read_bytes()
    except (OSError, IndexError) as exc:
        raise SourceUnavailable(f"cannot read the journal archive {path} or its checksum: {exc}") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise SourceUnavailable(f"the journal archive {path} does not match its checksum (damaged): restore it from a backup")
    lines = [json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines() if line.strip()]
    return [line for line in lines if "msg_id" in line]


def archived_rows(journal: str | Path, start: int, end: int,
                  to_row: Callable[[tuple[object, ...]], tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Archived instructions of the day [start, end) by reconcile.ours' rule (finished that day, or
    accepted that day and finished later), each given to `to_row` as the tuple its row query yields."""
    directory = archive_dir_for(journal)
    if not directory.is_dir():
        return []
    rows = []
    for month in _months(start, end):
        path = directory / f"journal-{month}.jsonl.gz"
        if not path.exists():
            continue
        for r in _verified_lines(path):
            finished, accepted = r.get("finished_at"), r.get("accepted_at")
            # reconcile.ours' day rule: finished that day, or accepted that day and finished later (late)
            done_today = isinstance(finished, (int, float)) and start <= finished < end
            late = (isinstance(accepted, (int, float)) and start <= accepted < end
                    and (finished is None or (isinstance(finished, (int, float)) and finished >= end)))
            if not (done_today or late):
                continue
            rows.append(to_row((r["seq"], r["msg_id"], r["order_no"], r["amount"], r["state"], r.get("pay_status"),
                                r.get("pay_channel"), r.get("pay_order_no"), r.get("result_amount"), finished,
                                r.get("error_code"), accepted)))
    return rows
