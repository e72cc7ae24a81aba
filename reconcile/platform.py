"""The platform leg: the gateway's ledger for one hospital's day (`his-platform-ledger-v1`).

The provider writes it with `gateway-admin ledger export --hospital H --day D` (gateway/
ledger_export.py documents the format); reconcile reads the file and never the provider's database.
Rows stream as `Entry`-layout tuples in batches, like the bills:

    payment succeeded                        moved (collected)
    refund succeeded                         moved (refunded)
    payment failed / closed, refund failed   nothing moved
    paying / reversing / refunding           pending: the gateway has not finished it

The funds key is what our journal's results carry (reconcile.match): the channel's transaction id
for a payment; for a refund the channel's refund id (WeChat) or our out_request_no (Alipay names a
refund by it, and so do our results). The header's format line, the hospital and day lines, the
column header and the `#END,<rows>` trailer are checked: a truncated or foreign file is refused.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Iterator

from reconcile.errors import BadInput, SourceUnavailable
from reconcile.fen import FenParser
from reconcile.lines import BATCH
from reconcile.model import CHANNEL_BY_NAME, COLLECT, REFUND, Channel, State

FORMAT = "#his-platform-ledger-v1"
COLUMNS = "kind,order_no,out_no,instruction_msg_id,terminal_id,device_id,channel,amount,state,channel_id,created_at,finished_at"
_STATES = {
    ("payment", "succeeded"): State.MOVED, ("payment", "failed"): State.NOT_MOVED, ("payment", "closed"): State.NOT_MOVED,
    ("payment", "paying"): State.PENDING, ("payment", "reversing"): State.PENDING,
    ("refund", "succeeded"): State.MOVED, ("refund", "failed"): State.NOT_MOVED, ("refund", "refunding"): State.PENDING,
}
_DIRECTION = {"payment": COLLECT, "refund": REFUND}


def read_platform(path: str | Path, day: datetime.date | None = None) -> Iterator[list[tuple]]:
    """Batches of (line, order_no, msg_id, direction, fen, state, channel, funds_id, out_no, finished_at)."""
    name = Path(path).name
    try:
        f = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise SourceUnavailable(f"cannot read the platform ledger {path}: {exc.strerror or exc} "
                                "(the provider writes it with `gateway-admin ledger export`)") from None
    with f:
        yield from _rows(f, name, day)


def _rows(f, name: str, day: datetime.date | None) -> Iterator[list[tuple]]:  # type: ignore[no-untyped-def]
    head = [f.readline().rstrip("\r\n") for _ in range(4)]
    if head[0] != FORMAT:
        raise BadInput(name, 1, None, f"not a platform ledger (the first line must be {FORMAT}); write it with `gateway-admin ledger export`")
    if not head[1].startswith("#hospital=") or not head[2].startswith("#day="):
        raise BadInput(name, 2, None, "the #hospital= and #day= lines are missing")
    if day is not None and head[2] != f"#day={day.isoformat()}":
        raise BadInput(name, 3, None, f"this is the ledger of {head[2][5:]}, not of {day.isoformat()}: export the day being reconciled")
    if head[3] != COLUMNS:
        raise BadInput(name, 4, None, f"the column header must be {COLUMNS}")
    amounts = FenParser(name)
    memo, parse = amounts.memo, amounts.parse
    batch: list[tuple] = []
    rows = 0
    line = 4
    for text in f:
        line += 1
        text = text.rstrip("\r\n")
        if text.startswith("#END,"):
            if text[5:] != str(rows):
                raise BadInput(name, line, None, f"the trailer says {text[5:]} rows, the file has {rows}: the export is incomplete; export it again")
            if f.readline():
                raise BadInput(name, line + 1, None, "lines after the #END trailer")
            if batch:
                yield batch
            return
        fields = text.split(",")
        if len(fields) != 12:
            raise BadInput(name, line, None, f"{len(fields)} fields, expected 12")
        kind, order_no, out_no, msg_id, _terminal, _device, channel_name, amount, state_name, channel_id, _created, finished = fields
        state = _STATES.get((kind, state_name))
        if state is None:
            raise BadInput(name, line, "state" if kind in _DIRECTION else "kind", f"{kind!r} {state_name!r} is not a ledger row's kind and state")
        channel = CHANNEL_BY_NAME.get(channel_name)
        if channel is None:
            raise BadInput(name, line, "channel", f"{channel_name!r} is not WECHAT or ALIPAY")
        fen = memo.get(amount)
        if fen is None:
            fen = parse(amount, line, "amount")
        direction = _DIRECTION[kind]
        funds = out_no if direction == REFUND and channel == Channel.ALIPAY else channel_id
        batch.append((line, order_no, msg_id, direction, fen, int(state), int(channel), funds, out_no, finished))
        rows += 1
        if len(batch) >= BATCH:
            yield batch
            batch = []
    raise BadInput(name, line, None, "no #END trailer: the export is incomplete; export it again")
