"""Test helpers: a hospital with terminals and devices whose keys the test holds."""

from __future__ import annotations

import os
from dataclasses import dataclass

from protocol.registry import DeviceRecord, TerminalRecord, format_device_csv, format_terminal_csv
from protocol.signing import public_key

from gateway.db import Database, Dialect
from gateway.ledger import Ledger
from gateway.tenancy import Directory, Mode
from gateway.vault import Vault

ACTOR = "test-operator"


@dataclass
class Fleet:
    directory: Directory
    ledger: Ledger
    seeds: dict[str, bytes]  # device_id -> Ed25519 seed


def make_fleet(db: Database, *, hospital_id: str = "H001", devices: int = 2, clock=None, vault: Vault | None = None,
               mode: Mode = Mode.DIRECT, **hospital_settings) -> Fleet:
    kwargs = {} if clock is None else {"clock": clock}
    directory = Directory(db, vault or Vault(os.urandom(32)), **kwargs)
    directory.add_hospital(hospital_id, "City Hospital", mode=mode, actor=ACTOR, **hospital_settings)
    seeds = {f"{hospital_id}-POS{i}": os.urandom(32) for i in range(1, devices + 1)}
    records = [DeviceRecord(d, "P2", f"SN{i}", public_key(seed)) for i, (d, seed) in enumerate(seeds.items(), 1)]
    directory.import_devices(hospital_id, format_device_csv(records), actor=ACTOR)
    terminals = [TerminalRecord(f"T{i:04d}", f"window {i}", d) for i, d in enumerate(seeds, 1)]
    directory.import_terminals(hospital_id, format_terminal_csv(terminals), actor=ACTOR)
    return Fleet(directory, Ledger(db, **kwargs), seeds)


def recorded_earlier(db: Database, seconds: float) -> None:
    """Every job as old as if recorded `seconds` earlier on the database's clock, the clock a payment's
    patience is measured on (gateway.jobs.JobQueue.clock_ms). On SQLite that clock is the host's, which
    tests move with the clocks they inject; PostgreSQL's own cannot be moved, so there the jobs move."""
    if db.dialect is Dialect.POSTGRES:
        with db.transaction() as tx:
            tx.execute("UPDATE jobs SET created_at_ms = created_at_ms - ?", (int(seconds * 1000),))
