"""What the gateway keeps for a POS's own recovery (issue 14): its journal's high-water mark, and the
list of its orders a POS re-syncs from after its storage was rolled back.

    POST /v1/journal-mark  {mine}            -> {yours, held}
    POST /v1/orders        {after?, limit?}  -> {orders: [...], next}

`journal_mark`: the POS reports its journal's mark (terminal.journal: the commit counter); the gateway
keeps the highest one per device and device key and answers with what it held before (`yours`). A
POS whose `mine` is below `yours` had its whole storage rolled back (an old copy put back: its own
mark file came back with it) and locks itself until it is recovered. Keeping the maximum makes the
call idempotent: a repeat, or a late copy of an older report, never lowers the mark.

`orders`: every payment this device made (its collections) with their refunds, in payment_id order,
a page at a time: what `python -m terminal.journal_admin resync` writes back into the POS's journal,
so that an order already collected is refused a second time and earlier orders can be refunded.
"""

from __future__ import annotations

import hashlib
import time
from typing import Callable

from gateway.db import Database
from gateway.tenancy import Device

MAX_MARK = 2**62
PAGE_DEFAULT = 200
PAGE_MAX = 500


def key_digest(device: Device) -> str:
    """The device key the mark belongs to (a re-provisioned POS gets a new key and a fresh mark)."""
    return hashlib.sha256(bytes(device.public_key)).hexdigest()[:32]


class DeviceSync:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    def journal_mark(self, device: Device, mine: int) -> dict:
        digest = key_digest(device)
        with self.db.transaction() as tx:
            row = tx.one("SELECT mark FROM device_journal_marks WHERE device_id = ? AND key_digest = ?", (device.device_id, digest))
            held = None if row is None else int(row[0])
            if held is None:
                tx.execute("INSERT INTO device_journal_marks (device_id, key_digest, mark, updated_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (device_id, key_digest) DO NOTHING", (device.device_id, digest, mine, int(self._clock())))
            elif mine > held:
                tx.execute("UPDATE device_journal_marks SET mark = ?, updated_at = ? WHERE device_id = ? AND key_digest = ? AND mark < ?",
                           (mine, int(self._clock()), device.device_id, digest, mine))
        return {"yours": held, "held": max(mine, held or 0)}

    def held_mark(self, device: Device) -> int | None:
        with self.db.transaction(write=False) as tx:
            row = tx.one("SELECT mark FROM device_journal_marks WHERE device_id = ? AND key_digest = ?", (device.device_id, key_digest(device)))
        return None if row is None else int(row[0])

    def orders(self, device: Device, *, after: int, limit: int) -> dict:
        with self.db.transaction(write=False) as tx:
            payments = tx.all(
                "SELECT payment_id, terminal_id, order_no, out_trade_no, channel, amount_fen, state, channel_txn_id, created_at "
                "FROM payments WHERE device_id = ? AND payment_id > ? ORDER BY payment_id LIMIT ?", (device.device_id, after, limit))
            refunds: dict[int, list[dict]] = {}
            if payments:
                ids = [int(p[0]) for p in payments]
                marks = ", ".join("?" for _ in ids)
                for r in tx.all(f"SELECT payment_id, out_refund_no, amount_fen, state, channel_refund_id, created_at FROM refunds "
                                f"WHERE payment_id IN ({marks}) ORDER BY refund_id", ids):
                    refunds.setdefault(int(r[0]), []).append({"out_refund_no": r[1], "amount_fen": int(r[2]), "state": r[3],
                                                              "channel_refund_id": r[4], "created_at": int(r[5])})
        orders = [{"payment_id": int(p[0]), "terminal_id": p[1], "order_no": p[2], "out_trade_no": p[3], "channel": p[4],
                   "amount_fen": int(p[5]), "state": p[6], "channel_txn_id": p[7], "created_at": int(p[8]),
                   "refunds": refunds.get(int(p[0]), [])} for p in payments]
        return {"orders": orders, "next": orders[-1]["payment_id"] if len(orders) == limit else None}
