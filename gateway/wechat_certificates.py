"""WeChat Pay APIv3 platform certificates at the gateway: kept in the database, refreshed by a job.

An APIv3 hospital can be onboarded without pasting the platform public key or a certificate: its
credentials need only the merchant's own (mchid, API certificate serial and key, APIv3 key). The
gateway downloads WeChat Pay's platform certificates (GET /v3/certificates, `wechat_v3_certs`) on
first use, or when an operator asks:

    gateway-admin wechat certificates refresh H001 [--expect-serial 5157F09E...]   # first use: pin the one you checked
    gateway-admin wechat certificates show H001
    gateway-admin wechat certificates refresh --provider                          # our sp_mchid's (service-provider mode)

They are kept per signing merchant (a direct hospital's mchid, or our sp_mchid for every
service_provider hospital) in `wechat_platform_certs` (migration 10), sealed by the vault like
merchant credentials: they are public, but they decide which replies are believed, and the vault's
AEAD makes a row altered in the database unreadable rather than believed. Every certificate added
is audited (`wechat_certs.add`: serials, who, which certificate signed the list).

Rotation: WeChat Pay lists the next certificate beside the current one for a while before signing
with it. The `wechat_certs` job refreshes each APIv3 merchant's list every REFRESH_EVERY_S, and
sooner when the newest certificate held expires within REFRESH_BEFORE_EXPIRY_S, so the new one is
held before it signs; a reply that names a serial not held makes the client look in the database
and download once more (`WeChatPayV3Client._look_again`) before it is UNVERIFIED.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Callable, Sequence

from protocol.messages import PayChannel

from gateway.alarms import AlarmKind, Alarms
from gateway.channels import wechat_v3_certs as certs
from gateway.channels import wechat_v3_codec as v3
from gateway.db import Database
from gateway.errors import GatewayError
from gateway.jobs import Job, JobKind, JobQueue, RunAgain, ms
from gateway.tenancy import Directory
from gateway.vault import Vault

if TYPE_CHECKING:
    from gateway.channel_clients import ChannelFactory
    from gateway.channel_work import WorkReport

log = logging.getLogger(__name__)

# How often each APIv3 merchant's certificate list is downloaded again (WeChat Pay's SDKs: hourly
# to daily); a new certificate is listed well before it signs, so twice a day finds it in time.
REFRESH_EVERY_S = 12 * 3600.0
# ...and at once when the newest certificate held expires within this.
REFRESH_BEFORE_EXPIRY_S = 7 * 86400.0
# A refresh that failed is tried again after this.
REFRESH_RETRY_S = 900.0


def sealed_where(mchid: str, serial: str) -> str:
    """What a certificate's sealed value is bound to (the vault's associated data)."""
    return f"wechat_cert|{mchid}|{serial}"


class DatabaseCertificateStore:
    """One signing merchant's platform certificates in the database (`wechat_v3.CertificateStore`)."""

    def __init__(self, db: Database, vault: Vault, mchid: str, *, actor: str = "gateway", clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.vault = vault
        self.mchid = mchid
        self.actor = actor
        self._clock = clock

    def load(self) -> list[certs.PlatformCertificate]:
        with self.db.reads() as tx:
            rows = tx.all("SELECT serial_no, effective_at, expire_at, sealed FROM wechat_platform_certs WHERE mchid = ? ORDER BY effective_at",
                          (self.mchid,))
        found = []
        for serial, effective, expire, sealed in rows:
            pem = self.vault.open(bytes(sealed), sealed_where(self.mchid, serial)).decode("ascii")
            found.append(certs.PlatformCertificate(serial, int(effective), int(expire), pem))
        return found

    def fetched_at(self) -> int | None:
        with self.db.reads() as tx:
            value = tx.scalar("SELECT MAX(fetched_at) FROM wechat_platform_certs WHERE mchid = ?", (self.mchid,))
        return None if value is None else int(str(value))

    def save(self, certificates: Sequence[certs.PlatformCertificate], *, signed_by: str) -> None:
        """Keep these certificates (the ones already held are kept as they are: a certificate is
        immutable); mark the list as fetched now; audit what was added."""
        now = int(self._clock())
        added: list[str] = []
        with self.db.transaction() as tx:
            held = {str(r[0]) for r in tx.all("SELECT serial_no FROM wechat_platform_certs WHERE mchid = ?" + tx.for_update, (self.mchid,))}
            for cert in certificates:
                if cert.serial_no in held:
                    continue
                tx.execute("INSERT INTO wechat_platform_certs (mchid, serial_no, effective_at, expire_at, sealed, signed_by, fetched_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", (self.mchid, cert.serial_no, cert.effective_at, cert.expire_at,
                                                             self.vault.seal(cert.pem.encode("ascii"), sealed_where(self.mchid, cert.serial_no)),
                                                             signed_by, now))
                added.append(cert.serial_no)
            tx.execute("UPDATE wechat_platform_certs SET fetched_at = ? WHERE mchid = ?", (now, self.mchid))
            if added:
                tx.execute("INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
                           (now, self.actor, "wechat_certs.add", self.mchid,
                            json.dumps({"serials": added, "signed_by": signed_by, "first_use": not held}, sort_keys=True)))
        if added:
            log.info("wechat platform certificates of %s: added %s (list signed by %s)", self.mchid, ", ".join(added), signed_by)


def due_at(store: DatabaseCertificateStore, now: float) -> float:
    """When the merchant's list should be downloaded next."""
    fetched = store.fetched_at()
    if fetched is None:
        return now
    held = store.load()
    newest_expiry = max((c.expire_at for c in held), default=0)
    return min(fetched + REFRESH_EVERY_S, max(fetched, newest_expiry - REFRESH_BEFORE_EXPIRY_S))


class CertificateRefresher:
    """The `wechat_certs` jobs: one per APIv3 signing merchant (subject: its mchid; hospital: the first
    hospital it signs for, as the jobs table needs one)."""

    def __init__(self, channels: "ChannelFactory", directory: Directory, *, clock: Callable[[], float] = time.time) -> None:
        self.channels = channels
        self.directory = directory
        self._clock = clock
        self.alarms = Alarms(directory.db, clock=clock)

    def signers(self) -> dict[str, str]:
        """{signing mchid: the first hospital it signs for} over every hospital paid through APIv3."""
        found: dict[str, str] = {}
        for hospital in self.directory.hospitals():
            try:
                mchid = self.channels.wechat_v3_mchid(hospital.hospital_id)
            except GatewayError:  # no WeChat credentials, or broken ones (their own alarm)
                continue
            if mchid is not None:
                found.setdefault(mchid, hospital.hospital_id)
        return found

    def schedule(self, queue: JobQueue, now: float) -> int:
        count = 0
        for mchid, hospital_id in self.signers().items():
            store = self.channels.certificate_store(mchid)
            when = due_at(store, now)
            queue.add(JobKind.WECHAT_CERTS, hospital_id, mchid, due_at_ms=ms(when))
            count += when <= now
        return count

    def run(self, job: Job, report: "WorkReport") -> None:
        try:
            client = self.channels.wechat_v3_client(job.hospital_id)
            listed = client.refresh_certificates()
        except certs.CertificateTrustError as exc:
            self._alarm(job, str(exc))
            raise RunAgain(REFRESH_RETRY_S, f"{exc.code}: {exc}") from None
        except v3.WeChatV3Error as exc:
            raise RunAgain(REFRESH_RETRY_S, f"{exc.code}: {exc}") from None
        report.certificates.append(f"{job.subject}: {', '.join(c.serial_no for c in listed)}")

    def _alarm(self, job: Job, message: str) -> None:
        try:
            self.alarms.raise_alarm(hospital_id=job.hospital_id, kind=AlarmKind.MERCHANT, reason="platform_certificates",
                                    reference=f"{PayChannel.WECHAT.value}:{job.subject}", message=message, channel=PayChannel.WECHAT.value)
        except GatewayError as exc:
            log.warning("wechat certificates of %s: the alarm could not be stored: %s", job.subject, exc)


def describe(store: DatabaseCertificateStore, now: float) -> list[str]:
    """Lines for `gateway-admin wechat certificates show`."""
    import datetime

    from gateway.ledger import BUSINESS_TZ

    def when(ts: int) -> str:
        return datetime.datetime.fromtimestamp(ts, BUSINESS_TZ).strftime("%Y-%m-%d %H:%M")

    held = store.load()
    if not held:
        return [f"merchant {store.mchid}: no platform certificate downloaded yet (gateway-admin wechat certificates refresh ...)"]
    lines = [f"merchant {store.mchid}: {len(held)} platform certificate(s), list fetched {when(store.fetched_at() or 0)}"]
    for cert in held:
        state = "valid" if cert.valid_at(now) else ("expired" if now >= cert.expire_at else "not yet valid")
        lines.append(f"  {cert.serial_no}  {when(cert.effective_at)} .. {when(cert.expire_at)}  {state}")
    return lines

