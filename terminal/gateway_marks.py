"""The POS's journal high-water mark, kept by the payment gateway too (issue 14).

The bridge keeps the POS's mark (exchanged at link-up, docs/link-protocol.md §7); the gateway keeps it
as well (gateway.device_sync), because a POS may start, and pay, before it next meets its bridge, and
because a rollback of the POS's whole storage (its journal and its own mark file put back from an
old copy) is invisible on the POS itself. This module owns the POS's side:

- at start-up, before the service resumes anything, the journal's mark is reported; a gateway that
  held a higher one means the storage was rolled back: the journal is locked (journal_integrity, the
  screen says why and names both marks) and no money moves;
- if a field engineer asked for a re-sync (`python -m terminal.journal_admin resync JOURNAL`, which
  leaves `<journal>.resync`), the orders are fetched from the gateway and written first
  (terminal.resync), the journal's mark is raised to the gateway's, and the POS starts unlocked;
- while the POS runs, the mark is reported after every answered money request (pay, refund,
  reverse: `GatewayConnection.after_money_request`) and every `interval_s` when it moved, from a
  thread of its own, so the gateway's mark is never far behind the journal.

A gateway that cannot be reached at start-up is logged and the POS starts (the bridge's mark still
guards it); a requested re-sync that cannot reach the gateway keeps the POS locked until it starts
again with the gateway reachable.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from protocol.errors import CodedError
from terminal.gateway_client import GatewayConnection
from terminal.journal import JournalUnavailable
from terminal.resync import ResyncError, fetch_orders, request_path, resync

if TYPE_CHECKING:
    from terminal.service import TerminalService

log = logging.getLogger(__name__)

MARK_REPORT_INTERVAL_S = 60.0
START_TIMEOUT_S = (3.0, 5.0)  # connect, read: a gateway that is away does not hold the POS's start-up long


class MarkReportFailed(CodedError):
    code = "gateway_mark"


def rollback_problem(yours: int, mine: int) -> str:
    return (f"the payment gateway holds high-water mark {yours} for this POS's journal, which is at {mine}: the journal was "
            "rolled back (an old copy of the POS's storage was put back). Recover: stop the POS app, run "
            "python -m terminal.journal_admin resync JOURNAL, and start it with the gateway reachable: it re-syncs its "
            "orders from the gateway (docs/terminal.md)")


class GatewayMarks:
    def __init__(self, connection: GatewayConnection, *, interval_s: float = MARK_REPORT_INTERVAL_S) -> None:
        self.connection = connection
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported: int | None = None
        connection.after_money_request = self.poke

    def report(self, mine: int, *, timeout: tuple[float, float] | None = None) -> int | None:
        """Report `mine`; the mark the gateway held before it (None: it held none)."""
        status, reply = self.connection.post("/v1/journal-mark", {"mine": mine}, timeout=timeout)
        if status != 200:
            raise MarkReportFailed(f"{status} {reply.get('error', {}).get('code', 'no answer')}")
        self._reported = mine
        yours = reply.get("yours")
        return yours if isinstance(yours, int) and not isinstance(yours, bool) else None

    def at_start(self, service: "TerminalService") -> None:
        """Before the service resumes anything: check the journal against the gateway's mark, and
        re-sync from the gateway if a field engineer asked for it."""
        journal = service.journal
        if journal.locked:  # its own check failed: restore it first
            return
        pending = request_path(journal.path).exists()
        mine = journal.high_water_mark
        try:
            yours = self.report(mine, timeout=START_TIMEOUT_S)
        except MarkReportFailed as exc:
            if pending:
                service.journal_rolled_back(f"a re-sync from the payment gateway was asked for, but the gateway did not answer "
                                            f"({exc}); start the POS again when it can reach the gateway")
            else:
                log.warning("cannot check this POS's journal mark with the payment gateway at start-up: %s", exc)
            return
        if pending:
            try:
                report = resync(journal, list(fetch_orders(self.connection.post)), gateway_mark=yours)
            except (ResyncError, JournalUnavailable, KeyError, ValueError, TypeError) as exc:
                service.journal_rolled_back(f"the re-sync from the payment gateway failed ({exc}); nothing of it was written: "
                                            "start the POS again, or call the service desk")
                return
            request_path(journal.path).unlink(missing_ok=True)
            log.warning("journal re-synced from the payment gateway: %d collections, %d refunds added (mark %d)",
                        report.collections, report.refunds, report.mark)
            self.poke()
            return
        if yours is not None and yours > mine:
            service.journal_rolled_back(rollback_problem(yours, mine))

    def poke(self) -> None:
        """Report the mark soon (the journal has just moved money rows)."""
        self._wake.set()

    def start(self, service: "TerminalService") -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(service,), name="gateway-marks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, service: "TerminalService") -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            journal = service.journal
            if journal.dead:  # closed, or the power went: this service is over
                return
            if journal.locked:
                continue
            mine = journal.high_water_mark
            if mine == self._reported:
                continue
            try:
                yours = self.report(mine)
            except MarkReportFailed as exc:
                log.info("journal mark not reported to the gateway (asked again later): %s", exc)
                continue
            if yours is not None and yours > mine:
                service.journal_rolled_back(rollback_problem(yours, mine))
