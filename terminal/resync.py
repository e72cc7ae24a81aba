"""Re-sync a POS's orders from the payment gateway after its storage was rolled back (issue 14).

The gateway keeps the highest journal mark each POS reported (gateway.device_sync); a POS whose journal
is behind it (an old copy of the whole storage put back) starts locked (terminal.gateway_marks). The
field engineer's recovery is `python -m terminal.journal_admin resync JOURNAL` with the POS app
stopped: it checks the journal's own rows and leaves a request file beside it (`<journal>.resync`).
At its next start the POS app, which holds the device key and the gateway's address, fetches every
order of this device from the gateway (`POST /v1/orders`) and writes what its journal lacks, in one
transaction whose commit number is raised to the gateway's mark, then removes the request file:

- a collection the gateway recorded as succeeded becomes a finished `collect` instruction, its
  attempt and its `collections` row: a second `+` for that order is refused (duplicate_order);
- its refunds (succeeded, or still under way) become finished `refund` instructions and `refunds`
  rows: what is left to refund is what the gateway says, so earlier orders can be refunded again.

The re-synced instructions carry kid `resync` and msg_id `resync-<out_trade_no|out_refund_no>`;
they have no sealed result (HIS already had theirs, or gets it from the bridge's journal).
Collections under way at the gateway (paying, reversing) are left to the gateway's jobs (gateway.channel_work);
a `+` for such an order is refused by the gateway itself (one order, one payment).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from protocol.errors import CodedError
from protocol.messages import PayChannel, PayStatus
from terminal.journal import Journal
from terminal.machine import Kind, State

log = logging.getLogger(__name__)

RESYNC_KID = "resync"
# Set by a re-sync, cleared at the next marks exchange with the bridge (`after_resync_bridge_mark`).
RESYNCED_META = "resynced_from_gateway"
PAGE = 200


class ResyncError(CodedError):
    """The gateway could not be asked, or answered what cannot be written; nothing was written."""

    code = "resync_failed"


def request_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.name + ".resync")


@dataclass(frozen=True, slots=True)
class ResyncReport:
    collections: int  # collections added
    refunds: int  # refunds added
    already: int  # orders the journal already had
    under_way: int  # collections still under way at the gateway (not written)
    mark: int  # the journal's mark after the re-sync


def fetch_orders(post: Callable[[str, dict], tuple[int, dict]]) -> Iterator[dict]:
    after = 0
    while True:
        status, reply = post("/v1/orders", {"after": after, "limit": PAGE})
        if status != 200 or not isinstance(reply.get("orders"), list):
            raise ResyncError(f"the gateway did not give this POS's orders: {status} {reply.get('error')}")
        yield from reply["orders"]
        if reply.get("next") is None:
            return
        after = int(reply["next"])


def after_resync_bridge_mark(journal: Journal, bridge_holds: int | None) -> None:
    """The first marks exchange with a bridge after a re-sync. The bridge may hold a higher mark than
    the gateway had heard (commits reported at link-up but not yet to the gateway): the journal's
    money rows are now the gateway's, so the bridge's mark is taken too, once, instead of locking
    the POS again for the same rollback. Later exchanges follow the usual rule."""
    if journal.locked or not journal.meta(RESYNCED_META):
        return
    with journal.transaction("resync:bridge_mark") as tx:
        if bridge_holds is not None and bridge_holds > journal.high_water_mark:
            log.warning("after the re-sync from the gateway, the bridge's mark %d for this journal is taken too", bridge_holds)
            journal.raise_mark(bridge_holds + 1)
        tx.set_meta(RESYNCED_META, "")


def resync(journal: Journal, orders: list[dict], *, gateway_mark: int | None, clock: Callable[[], float] = time.time) -> ResyncReport:
    """Write what `journal` lacks of `orders` (the gateway's list) in one transaction."""
    added = refunds = already = under_way = 0
    now = clock()
    with journal.transaction("resync") as tx:
        for order in orders:
            if order["state"] in ("paying", "reversing"):
                under_way += 1
                continue
            if order["state"] != "succeeded":
                continue
            order_no, out_trade_no, fen = order["order_no"], order["out_trade_no"], int(order["amount_fen"])
            channel, at = PayChannel(order["channel"]), float(order["created_at"])
            have = journal.collection(order_no)
            if have is not None:
                already += 1
                if have.out_trade_no != out_trade_no:
                    log.error("re-sync: order %s is collected here as %s, at the gateway as %s", order_no, have.out_trade_no, out_trade_no)
            else:
                seq = tx.add_instruction(kid=RESYNC_KID, msg_id=f"resync-{out_trade_no}", envelope_ts=int(at), terminal_id=order["terminal_id"],
                                         order_no=order_no, kind=Kind.COLLECT, amount_fen=fen, display=None, now=now)
                tx.advance(seq, State.QUEUED, State.FINISHED, now, channel=channel.value, pay_status=PayStatus.SUCCESS.value, finished_at=at)
                tx.add_attempt(seq=seq, out_trade_no=out_trade_no, attempt_no=1, channel=channel, code_masked="(re-synced)", now=at, deadline=at)
                tx.settle_attempt(out_trade_no, outcome="success", channel_txn_id=order["channel_txn_id"], paid_fen=fen)
                tx.add_collection(order_no=order_no, seq=seq, out_trade_no=out_trade_no, channel=channel,
                                  channel_txn_id=order["channel_txn_id"] or out_trade_no, paid_fen=fen, now=at)
                added += 1
            for refund in order["refunds"]:
                if refund["state"] == "failed" or journal.refund_known(refund["out_refund_no"]):
                    continue
                r_fen, r_at = int(refund["amount_fen"]), float(refund["created_at"])
                seq = tx.add_instruction(kid=RESYNC_KID, msg_id=f"resync-{refund['out_refund_no']}", envelope_ts=int(r_at),
                                         terminal_id=order["terminal_id"], order_no=order_no, kind=Kind.REFUND, amount_fen=r_fen,
                                         display=None, now=now)
                done = refund["state"] == "succeeded"
                tx.advance(seq, State.QUEUED, State.FINISHED, now, channel=channel.value,
                           pay_status=PayStatus.REFUNDED.value if done else None, finished_at=r_at)
                if not tx.reserve_refund(out_refund_no=refund["out_refund_no"], seq=seq, order_no=order_no, refund_fen=r_fen, now=r_at):
                    raise ResyncError(f"the gateway's refunds of order {order_no} exceed its collection")
                if done:
                    tx.settle_refund(refund["out_refund_no"], refunded=True, channel_refund_id=refund["channel_refund_id"], now=r_at)
                refunds += 1
        if gateway_mark is not None:
            journal.raise_mark(gateway_mark + 1)
        tx.set_meta(RESYNCED_META, str(gateway_mark or 0))
    log.warning("re-synced from the gateway: %d collections and %d refunds added, %d orders already here, %d under way at the "
                "gateway; journal mark now %d", added, refunds, already, under_way, journal.high_water_mark)
    return ResyncReport(added, refunds, already, under_way, journal.high_water_mark)
