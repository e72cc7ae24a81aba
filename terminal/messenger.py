"""What the bridge is told, and whether it can be told now.

    Messenger(outbox, journal, core, clock, link_up=False)
    up                                   the link is up (the handshake completed)
    came_up() / went_down()              the link came up (every undelivered result is queued again,
                                         oldest first) / went down (queued results are dropped)
    sealed(envelope_bytes)               a result sealed just now (signed when sealed)
    stored(envelope_bytes)               a stored result, sent again (signed again)
    progress(row)                        where `row` is, with the event HIS shows as `last_event`
    queued(row)                          `row` waits behind another instruction (Progress.DELIVERED)
    not_taken(msg_id, code, message)     an instruction that cannot be answered with a sealed result

What it owns: the `up` flag and the service's outbox (terminal.outbox), and how a journal row
becomes a protocol.link.app message. While the link is down nothing is queued: the journal keeps
every result until the bridge acknowledges it, so `came_up()` sends them all again. Call with the
service lock held, so messages leave in the order their commits happened.
"""

from __future__ import annotations

from typing import Callable

from protocol.envelope import MsgType, parse_envelope
from protocol.errors import ErrorCode
from protocol.link.app import MAX_EVENT_MESSAGE, NotTakenMsg, ProgressEvent, ProgressMsg, ResultMsg
from terminal import machine, texts
from terminal.his_outcomes import progress_event
from terminal.journal import InstructionRow, Journal
from terminal.lifecycle import Lifecycle
from terminal.machine import State
from terminal.outbox import Outbox


def progress_message(row: InstructionRow, at: int) -> ProgressMsg:
    """The progress message for `row`, with the event HIS shows as `last_event`: a decline's reason
    (1.1 C), or, handed to a person (issue 17), code `needs_person`, the reason and what to do."""
    if row.state in machine.NEEDS_PERSON:
        words = texts.needs_person_text(row.last_error_code)
        detail = f" ({row.last_error_message})" if row.last_error_message else ""
        message = f"{row.last_error_code}: {words.en}{detail}"[:MAX_EVENT_MESSAGE]
        return ProgressMsg(row.msg_id, machine.PROGRESS[row.state], ProgressEvent("needs_person", message, at))
    return ProgressMsg(row.msg_id, machine.PROGRESS[row.state], progress_event(row, at))


class Messenger:
    def __init__(self, outbox: Outbox, journal: Journal, core: Lifecycle, clock: Callable[[], float], *,
                 link_up: bool = False) -> None:
        self.outbox = outbox
        self._journal = journal
        self._core = core
        self._clock = clock
        self._up = link_up

    @property
    def up(self) -> bool:
        return self._up

    def came_up(self) -> None:
        self._up = True
        self.requeue()

    def went_down(self) -> None:
        self._up = False
        self.outbox.drop_results()

    def requeue(self) -> None:
        """Queue every result the bridge has not acknowledged, oldest first (nothing while down)."""
        if not self._up:
            return
        for row in self._journal.undelivered():
            self.outbox.put(ResultMsg(self._core.signed(row.envelope)))

    def sealed(self, envelope: bytes) -> None:
        self._send(ResultMsg(parse_envelope(envelope, expect=MsgType.RESULT)))

    def stored(self, envelope: bytes) -> None:
        self._send(ResultMsg(self._core.signed(envelope)))

    def progress(self, row: InstructionRow) -> None:
        self._send(progress_message(row, self._core.result_time(self._clock())))

    def queued(self, row: InstructionRow) -> None:
        self._send(ProgressMsg(row.msg_id, machine.PROGRESS[State.QUEUED]))

    def not_taken(self, msg_id: str, code: ErrorCode, message: str) -> None:
        self._send(NotTakenMsg(msg_id, code, message))

    def _send(self, message: ResultMsg | ProgressMsg | NotTakenMsg) -> None:
        if self._up:
            self.outbox.put(message)
