"""Channel pacing for the terminal's workers: what a worker (terminal.worker) may see and do.

    Driver(cond, journal, config, clients, clock=, limits=, alarms=, supervision=, commit=, changed=)
    look(seq) -> Look | None          the instruction's rows and hand-offs, or None: nothing to drive
    hand_code(seq, code)              the cashier scanned: the worker pays with it, once
    allow_refund(seq)                 the supervisor confirmed: the worker may call refund once
    polling(channel) -> (interval, deadline)     the channel's cadence, config overrides first
    reverse_not_before(channel)       the channel's minimum after a payment before a reverse
    pause(seq, state, seconds)        wait; False early if the instruction left `state` or we stop
    wait_for_clock(seq, state, when)  wait until the service clock reads `when` (the reverse rule)
    reverse_at(seq)                   when a waiting reverse goes out (shown on the screen), or None
    call(fn, unknown)                 one channel call, at most MAX_CHANNEL_CALLS at once
    commit(seq, expect, event, ...)   commit what an answer means (the service's transition + fan-out)
    report_alarm(seq, reason, words)  tell the gateway an instruction is handed to a person
    wake()                            waiters look at the clock again (it was set, or an injected one moved)

What it owns: the clock every wait is measured against, the channels' pacing (query interval, pay
deadline, WeChat Pay's 15 s before a reverse), the limit on concurrent channel calls, and the two
hand-offs from the cashier's thread to a worker (the scanned code, which is never journaled, and
the permission to send a refund). Waits are real time on the service's condition: whatever changes
an instruction notifies it, so a worker never sleeps through a cancel. A wait for the clock never
lasts longer than that much real time, so a clock stepped back cannot stall it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol, TypeVar

from protocol.messages import PayChannel
from terminal import machine
from terminal.alarms import Alarm, AlarmSink
from terminal.channels.base import ChannelClient, PayOutcome, RefundOutcome
from terminal.config import DeviceConfig
from terminal.journal import AttemptRow, CollectionRow, InstructionRow, Journal, RefundRow
from terminal.machine import Event, Kind, State
from terminal.supervision import Supervision

log = logging.getLogger("terminal.driver")
T = TypeVar("T")

# Channel calls in flight at once (recovery may resume many instructions together).
MAX_CHANNEL_CALLS = 8
# A wait for the clock looks at it again at least this often (an injected clock may move unannounced).
CLOCK_LOOK_S = 1.0


class Commit(Protocol):
    """The service's transition: commit `event` on `seq` if it is still in `expect`, then tell
    the link and the screen."""

    def __call__(self, seq: int, expect: State, event: Event, *, pay: PayOutcome | None = None,
                 refund: RefundOutcome | None = None, reason: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Look:
    """What a worker reads about its instruction in one go, under the lock."""

    row: InstructionRow
    attempt: AttemptRow | None
    collection: CollectionRow | None
    refund: RefundRow | None
    code: str | None  # the code the cashier scanned, handed over once (PAYING only)
    may_refund: bool  # the supervisor just confirmed: a refund call may go out


class Driver:
    def __init__(self, cond: threading.Condition, journal: Journal, config: DeviceConfig,
                 clients: dict[PayChannel, ChannelClient], *, clock: Callable[[], float], limits: machine.Limits,
                 alarms: AlarmSink | None, supervision: Supervision, commit: Commit, changed: Callable[[], None],
                 notify: Callable[[], None]) -> None:
        self._cond = cond
        self.journal = journal
        self.config = config
        self.clients = clients
        self.clock = clock
        self.limits = limits
        self.alarms = alarms
        self.commit = commit
        self._supervision = supervision
        self._changed = changed  # under the lock: the screen changed (a new revision)
        self._notify = notify  # outside the lock: observers see the new view
        self._calls = threading.BoundedSemaphore(MAX_CHANNEL_CALLS)
        self._pending_codes: dict[int, str] = {}
        self._fresh_refunds: set[int] = set()
        self._reverse_at: dict[int, float] = {}  # instructions waiting out the channel's minimum before a reverse

    # -- hand-offs from the cashier's thread (call with the lock held) ------------------------------
    def hand_code(self, seq: int, code: str) -> None:
        self._pending_codes[seq] = code

    def allow_refund(self, seq: int) -> None:
        self._fresh_refunds.add(seq)

    def look(self, seq: int) -> Look | None:
        """The instruction as it is now, with what was handed over for it; None when no worker is
        wanted (the service is closing, or the instruction waits for a person or is finished)."""
        with self._cond:
            self._supervision.check_alive()
            if self._supervision.closing:
                return None
            row = self.journal.instruction(seq)
            if row.state not in machine.AUTOMATIC:
                return None
            code = self._pending_codes.pop(seq, None) if row.state is State.PAYING else None
            may_refund = seq in self._fresh_refunds
            self._fresh_refunds.discard(seq)
            return Look(row, self.journal.current_attempt(seq), self.journal.collection(row.order_no),
                        self.journal.refund_for(seq), code, may_refund)

    def sealed_instruction(self, seq: int) -> bytes | None:
        return self.journal.sealed_instruction(seq)

    # -- pacing ---------------------------------------------------------------------------------------
    def client(self, channel: PayChannel) -> ChannelClient:
        return self.clients[channel]

    def polling(self, channel: PayChannel) -> tuple[float, float]:
        """(query interval, pay deadline) in seconds: the device configuration's, else the client's."""
        client = self.clients[channel]
        override = self.config.polling.get(channel)
        interval = override.query_interval_s if override and override.query_interval_s else client.query_interval_s
        deadline = override.pay_deadline_s if override and override.pay_deadline_s else client.pay_deadline_s
        return interval, deadline

    def reverse_not_before(self, channel: PayChannel) -> float:
        override = self.config.polling.get(channel)
        if override is not None and override.reverse_not_before_s is not None:
            return override.reverse_not_before_s
        return float(getattr(self.clients[channel], "reverse_not_before_s", 0.0))

    def reverse_at(self, seq: int) -> float | None:
        """When the reverse `seq` waits for goes out (service clock), or None (call with the lock held)."""
        return self._reverse_at.get(seq)

    def _left(self, seq: int, state: State) -> bool:
        """Under the lock: the worker should stop waiting (it moved on, or we stop)."""
        return self._supervision.stopping or self.journal.instruction(seq).state is not state

    def pause(self, seq: int, state: State, seconds: float) -> bool:
        """Wait `seconds`; False early if the instruction left `state` or the service is stopping."""
        end = time.monotonic() + seconds
        with self._cond:
            while True:
                if self._left(seq, state):
                    return False
                left = end - time.monotonic()
                if left <= 0:
                    return True
                self._cond.wait(left)

    def wait_for_clock(self, seq: int, state: State, when: float) -> bool:
        """Wait until the service clock reaches `when` (an injected one: `wake()` after moving it);
        never longer than that much real time, so a clock stepped back cannot stall it. False early
        if the instruction left `state` or the service is stopping. The screen shows `when` meanwhile."""
        real_end = time.monotonic() + max(0.0, when - self.clock())
        with self._cond:
            self._reverse_at[seq] = when
            self._changed()
        self._notify()
        try:
            with self._cond:
                while True:
                    if self._left(seq, state):
                        return False
                    left = min(when - self.clock(), real_end - time.monotonic())
                    if left <= 0:
                        return True
                    self._cond.wait(min(left, CLOCK_LOOK_S))
        finally:
            with self._cond:
                self._reverse_at.pop(seq, None)
                self._changed()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- the channel and the gateway ------------------------------------------------------------------
    def call(self, call: Callable[[], T], unknown: Callable[[str], T]) -> T:
        """One channel call. A client that raises (the contract says it does not) gives `unknown`:
        we cannot know whether the call went out."""
        with self._calls:
            try:
                return call()
            except Exception as exc:
                log.exception("channel client raised")
                return unknown(f"{type(exc).__name__}: {exc}")

    def report_alarm(self, seq: int, reason: str, message: str | None) -> None:
        """Tell the gateway (outside the lock: it is a network call) that `seq` is handed to a person."""
        if self.alarms is None:
            return
        with self._cond:
            row = self.journal.instruction(seq)
            if row.kind is Kind.COLLECT:
                attempt = self.journal.current_attempt(seq)
                reference, channel = (attempt.out_trade_no, attempt.channel) if attempt else ("", row.channel)
            else:
                refund, collection = self.journal.refund_for(seq), self.journal.collection(row.order_no)
                reference = refund.out_refund_no if refund else ""
                channel = collection.channel if collection else row.channel
        alarm = Alarm(reason, row.kind.value, row.order_no, row.amount_fen, channel, reference, message)
        try:
            delivered = self.alarms.report(alarm)
        except Exception:  # an alarm must never take the worker down
            log.exception("order %s: could not report the alarm", row.order_no)
            delivered = False
        if not delivered:
            log.error("order %s: the gateway did not take the alarm %s; it shows on this POS and to HIS", row.order_no, alarm.reason)
