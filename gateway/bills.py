"""T+1 bills: the gateway downloads each hospital's channel bills, since it alone holds the merchant
keys, into a directory that `reconcile` reads (`reconcile run --bills-dir DIR/H001`).

    fetcher = BillFetcher(channels, directory, Path("/var/lib/gateway/bills"))
    fetcher.fetch("H001", datetime.date(2026, 12, 1))
    # /var/lib/gateway/bills/H001/wechat-2026-12-01.csv     WeChat Pay downloadbill (ALL), as served
    # /var/lib/gateway/bills/H001/alipay-2026-12-01.zip     Alipay's trade bill zip, as served
    # .../alipay-2026-12-01.nobill                           the channel has no bill that day (no trades)

Each file is written atomically (a temporary name, fsync, rename) and holds the exact bytes the
channel served, so a reconciliation can be re-run and audited from them. A channel the hospital
has no credentials for is skipped. The directory is made 0700 (bills name patients' payments).

The daily job: every gateway process that has a bills directory (`payment-gateway --bills-dir`)
schedules, for every hospital, a `bills` job for the day before, due at BILLS_READY_AT local time
(both channels publish a day's bill in the morning of the next day; a bill not there yet is
asked for again every BILLS_RETRY_S). One process downloads it
(the jobs table's lease); a day whose files are all there is not scheduled again.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from local_storage.atomic_file import write_atomically
from local_storage.private_files import make_private_dirs
from protocol.messages import PayChannel

from gateway.channel_clients import ChannelFactory
from gateway.channels.errors import BillDownloadError
from gateway.errors import GatewayCode, GatewayError
from gateway.jobs import Job, JobKind, JobQueue, RunAgain, ms
from gateway.ledger import BUSINESS_TZ
from gateway.tenancy import Directory

if TYPE_CHECKING:
    from gateway.channel_work import WorkReport

log = logging.getLogger(__name__)

# The names `reconcile --bills-dir` looks for (reconcile/fetch.py BILL_NAMES uses the same ones).
BILL_NAMES = {PayChannel.WECHAT: "wechat-{day}.csv", PayChannel.ALIPAY: "alipay-{day}.zip"}
NO_BILL = "{channel}-{day}.nobill"
# Local (Asia/Shanghai) time of day after which yesterday's bills are fetched.
BILLS_READY_AT = datetime.time(10, 0)
# A bill not there yet (or a channel away) is asked for again this often.
BILLS_RETRY_S = 1800.0



def _write_private(path: Path, data: bytes) -> None:
    """A bill, whole or not at all, in a folder only the gateway's user can read (0700: merchants' trades)."""
    make_private_dirs(path.parent)
    write_atomically(path, data)

def bill_path(root: Path, hospital_id: str, channel: PayChannel, day: datetime.date) -> Path:
    return root / hospital_id / BILL_NAMES[channel].format(day=day.isoformat())


def no_bill_path(root: Path, hospital_id: str, channel: PayChannel, day: datetime.date) -> Path:
    return root / hospital_id / NO_BILL.format(channel=channel.value.lower(), day=day.isoformat())


class BillFetcher:
    def __init__(self, channels: ChannelFactory, directory: Directory, root: Path) -> None:
        self.channels = channels
        self.directory = directory
        self.root = Path(root)

    def channels_of(self, hospital_id: str) -> list[PayChannel]:
        """The channels the hospital has credentials for."""
        return [c for c in PayChannel if c in BILL_NAMES and self.directory.merchant_key_version(hospital_id, c)[1] is not None]

    def fetch(self, hospital_id: str, day: datetime.date) -> dict[PayChannel, Path | None]:
        """Download the day's bill of every channel of the hospital; {channel: file, or None: no bill that day}.
        Raises GatewayError(channel_unavailable) naming every channel that failed (the others are kept)."""
        self.directory.hospital(hospital_id)  # unknown_hospital
        saved: dict[PayChannel, Path | None] = {}
        failed: list[str] = []
        for channel in self.channels_of(hospital_id):
            client = self.channels.client(hospital_id, channel)
            try:
                data = client.download_bill(day)
            except BillDownloadError as exc:
                if exc.no_bill:
                    _write_private(no_bill_path(self.root, hospital_id, channel, day), b"")
                    saved[channel] = None
                    continue
                failed.append(f"{channel.value}: {exc}")
                continue
            path = bill_path(self.root, hospital_id, channel, day)
            _write_private(path, data)
            no_bill_path(self.root, hospital_id, channel, day).unlink(missing_ok=True)
            saved[channel] = path
        if failed:
            raise GatewayError(GatewayCode.CHANNEL_UNAVAILABLE, f"{hospital_id} bills of {day}: " + "; ".join(failed))
        return saved

    def have(self, hospital_id: str, day: datetime.date) -> bool:
        """Every channel's bill of the day (or its no-bill mark) is in the directory."""
        return all(bill_path(self.root, hospital_id, c, day).exists() or no_bill_path(self.root, hospital_id, c, day).exists()
                   for c in self.channels_of(hospital_id))

    # --- the daily job --------------------------------------------------------------------------

    def schedule(self, queue: JobQueue, now: float) -> int:
        """A `bills` job for yesterday for every hospital whose bills are not all here; how many were due."""
        local = datetime.datetime.fromtimestamp(now, BUSINESS_TZ)
        yesterday = local.date() - datetime.timedelta(days=1)
        ready = datetime.datetime.combine(local.date(), BILLS_READY_AT, tzinfo=BUSINESS_TZ).timestamp()
        count = 0
        for hospital in self.directory.hospitals():
            if not self.have(hospital.hospital_id, yesterday):
                queue.add(JobKind.BILLS, hospital.hospital_id, yesterday.isoformat(), due_at_ms=ms(ready))
                count += 1
        return count

    def run(self, job: Job, report: "WorkReport") -> None:

        day = datetime.date.fromisoformat(job.subject)
        try:
            saved = self.fetch(job.hospital_id, day)
        except GatewayError as exc:
            raise RunAgain(BILLS_RETRY_S, exc.message) from None
        report.bills.append(f"{job.hospital_id} {day}")
        log.info("bills of %s on %s: %s", job.hospital_id, day,
                 ", ".join(f"{c.value} {p.name if p else 'no bill'}" for c, p in saved.items()) or "no channel")
