"""The headless POS terminal service: instructions in, money moved, results out, nothing lost.

    TerminalService(config, journal, clients, *, device_key_seed, clock=time.time, rng=os.urandom, link_up=False)
    service.start()   # recovery: resume every unfinished instruction; call once, before anything else
    service.close()   # stop worker threads (the journal stays valid; a new service resumes from it)

LINK side (the device's link loop, terminal/link/endpoint.py; runs on the link thread)
    submit_instruction(envelope)   an instruction envelope from the bridge (protocol.envelope.Envelope).
                                   Checked (protocol order of checks, device clock window, provisioned
                                   terminal list, per-transaction limit, his_sig) and journaled before it
                                   returns, so ACK the frame after this call. The answer goes to the outbox:
                                   ProgressMsg (accepted; and on every later change of Progress), or a
                                   ResultMsg, sealed and signed with the device key (a refusal too:
                                   unknown_terminal, bad_amount, clock_skew, ... is a FAILED /
                                   REFUND_FAILED result with that error_code), or NotTakenMsg when no result
                                   can be sealed (auth_failed, unknown_kid: the keys differ; msg_id_conflict,
                                   replay): that ends nothing. An identical envelope again executes nothing:
                                   it gets the stored result or the current progress.
    submit_instruction(envelope, expires_at=N)   the same with the bridge's expiry (his-interface 1.1 C)
    withdraw(cancel_envelope)      HIS withdraws an instruction (1.1 C, terminal.his_outcomes): ended with
                                   CLOSED / REFUND_FAILED `withdrawn` once nothing is under way
    check_deadlines()              end what has expired (a thread of the service calls it when due)
    outbox                         terminal.outbox.Outbox of protocol.link.app messages, in commit order.
    mark_delivered(result_msg_id)  the link ACKed the DATA frame carrying that result: stop re-sending it.
    link_up() / link_down()        the link (handshake) came up / went down. While down nothing is queued;
                                   link_up() queues every undelivered result again, oldest first. Drop the
                                   results in LinkDown.unacked: the service re-sends them.
CASHIER side (the Kivy UI, the simulator's control API; any thread)
    scan(code) -> ScanReply        the scanner/camera read a code (routed WeChat/Alipay; anything else is
                                   refused in plain words and the instruction stays open)
    cancel() -> ActionReply        before a scan: CLOSED/cancelled; after a decline: FAILED with the
                                   decline's error_code; while the patient confirms: reverse, then CLOSED;
                                   on a refund: the same as decline_refund()
    confirm_refund(pin) -> PinReply, decline_refund() -> ActionReply, dismiss()  (hide the result screen)
    recheck() -> ActionReply       a person fixed what an instruction was handed over for (needs_person):
                                   ask the channel again (the oldest such instruction)
    needs_person() -> list         those instructions (terminal.view.NeedsPersonCase), oldest first
    reset_pin_lockout(admin_pin)   the administrator clears the supervisor PIN's lockout (terminal.pin)
    view() -> ScreenView           what the POS shows now (terminal.view); history(day, order_no),
                                   totals(day), receipt(msg_id), check_admin_pin(pin)
    add_observer(fn) -> remove     fn(ScreenView) after every change, on the thread that made it (a UI
                                   marshals it to its main thread); views carry a growing `revision`

Threads: one lock guards the journal and the lifecycle; channel calls run on a worker thread per
active instruction, never under the lock and never on the caller's thread. Time (`clock`, unix
seconds, used for every timestamp and deadline) and randomness (`rng(n) -> n bytes`: result msg_ids
and nonces) are injected so tests are deterministic. Waits between polls are real time.
wake()                             the clock was set: waits on it look again now (terminal.driver)

This class is a façade: it commits each transition (terminal.lifecycle) under its lock and tells the
link and the screen. The parts own their state: terminal.supervision (threads, `dead`),
terminal.driver (what a worker sees: pacing, clocks, the reverse rule), terminal.worker (the channel
calls), terminal.messenger (the outbox, link up/down), terminal.observers (revision, notice,
observers), terminal.history (history, totals, receipts), terminal.pin (PinDesk), terminal.his_outcomes
(expiry, withdrawal).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from protocol.envelope import Envelope
from protocol.link.app import MarksMsg
from protocol.messages import PayChannel, ResultCode
from terminal import machine, texts
from terminal.alarms import AlarmSink
from terminal.channels.base import ChannelClient, PayOutcome, RefundOutcome
from terminal.config import DeviceConfig
from terminal.driver import Driver
from terminal.gateway_marks import GatewayMarks
from terminal.his_outcomes import WAITING, DeadlineWatcher, Outcomes
from terminal.history import DayTotals, History, HistoryEntry
from terminal.journal import Journal, JournalUnavailable, StaleState
from terminal.resync import after_resync_bridge_mark
from terminal.lifecycle import BACKGROUND, Accepted, Change, Lifecycle, NotTaken, Refused, Repeat
from terminal.machine import Event, Kind, State
from terminal.messenger import Messenger
from terminal.observers import Observers, ScreenState
from terminal.outbox import Outbox
from terminal.pin import PinCheck, PinDesk, PinVerdict, is_locked, tries_left
from terminal.receipt import Receipt
from terminal.routing import CodeRefused, mask_code, route_code
from terminal.supervision import Supervision
from terminal.texts import Text
from terminal.view import (NeedsPersonCase, ResultView, ScreenView, journal_problem, needs_person_case, original_payment,
                           result_message, result_view, screen_view)
from terminal.worker import Worker

log = logging.getLogger("terminal.service")

# Expired msg_id records are purged at start and then at most this often (on the next arrival).
SEEN_PURGE_INTERVAL_S = 3600.0
# A POS clock further than this off the bridge's is worth a warning in the log (the bridge's window).
CLOCK_WARN_S = 300.0
# States after which an expired or withdrawn instruction may be ended (terminal.his_outcomes).
SETTLE_AFTER = WAITING | {State.USER_PAYING}


def _peer_mark_key(bridge_key: bytes) -> str:
    """Where the bridge's mark is kept: per bridge key (a new bridge PC starts afresh)."""
    return f"peer_mark:{bridge_key.hex()[:16]}"


class ScanStatus(enum.Enum):
    ACCEPTED = "accepted"  # the payment is under way
    REFUSED = "refused"  # not a payment code; scan again
    NOT_AWAITING = "not_awaiting"  # nothing is waiting for a code (e.g. a double read while paying)
    UNAVAILABLE = "unavailable"  # the channel is not configured on this device


@dataclass(frozen=True, slots=True)
class ScanReply:
    status: ScanStatus
    message: Text
    channel: PayChannel | None = None
    reason: str | None = None  # stable code of a refusal (routing.CodeRefused.reason)


class PinStatus(enum.Enum):
    ACCEPTED = "accepted"
    WRONG = "wrong"
    LOCKED = "locked"
    NOT_AWAITING = "not_awaiting"


@dataclass(frozen=True, slots=True)
class PinReply:
    status: PinStatus
    message: Text
    tries_left: int | None = None
    locked_until: float | None = None


@dataclass(frozen=True, slots=True)
class ActionReply:
    ok: bool
    message: Text


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    unfinished: int  # instructions found unfinished in the journal
    resumed: int  # of which the service resumed talking to the channel about
    undelivered: int  # finished, result not yet acknowledged by the bridge


class TerminalService:
    def __init__(self, config: DeviceConfig, journal: Journal, clients: Mapping[PayChannel, ChannelClient], *,
                 device_key_seed: bytes, clock: Callable[[], float] = time.time, rng: Callable[[int], bytes] = os.urandom,
                 link_up: bool = False, limits: machine.Limits = machine.Limits(), alarms: AlarmSink | None = None,
                 gateway_marks: GatewayMarks | None = None) -> None:
        self.config = config
        self.gateway_marks = gateway_marks  # the gateway keeps this journal's mark too (terminal.gateway_marks)
        self.journal = journal
        self.clients = dict(clients)
        self.clock = clock
        self.limits = limits
        self.alarms = alarms
        self.outbox = Outbox()
        self._core = Lifecycle(config, journal, clock=clock, rng=rng, device_key_seed=device_key_seed)
        self._bridge = Messenger(self.outbox, journal, self._core, clock, link_up=link_up)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)  # every change to an instruction notifies it
        self._screen = ScreenState()
        self._observers: Observers[ScreenView] = Observers()
        self._threads = Supervision(self._cond, work=self._work, needs_work=self._needs_work,
                                    storage_dead=lambda: journal.dead)
        self._driver = Driver(self._cond, journal, config, self.clients, clock=clock, limits=limits, alarms=alarms,
                              supervision=self._threads, commit=self._apply, changed=self._screen.changed,
                              notify=self._notify)
        self._history = History(journal, config, clock)
        # Wrong-PIN counts, kept in the journal (the admin PIN follows the supervisor's lockout settings).
        self._pins = PinDesk(self._core.lockout, self._core.save_lockout, clock,
                             hashes={"supervisor": config.supervisor.pin_hash, "admin": config.admin_pin_hash},
                             max_tries=config.supervisor.max_wrong_tries, lockout_s=config.supervisor.lockout_s)
        self._last_purge = float("-inf")
        self._outcomes = Outcomes(journal)
        self._deadlines = DeadlineWatcher(self._seconds_to_next_expiry, self.check_deadlines)
        self._threads.add_background(self._deadlines)

    # == lifecycle of the service ==================================================================
    def start(self) -> RecoveryReport:
        """Resume: in-flight payments are queried and completed or reversed, refunds queried,
        the instruction on screen shown again; undelivered results go out at link_up()."""
        if self.gateway_marks is not None:  # before anything resumes: a rolled-back journal moves no money
            self.gateway_marks.at_start(self)
        with self._lock:
            self._alive()
            if self.journal.locked:  # money work waits for the journal's recovery (issue 14, finding 2)
                log.critical("the journal failed its integrity check; no money moves until it is recovered: %s",
                             self.journal.integrity.reason)
                self._screen.changed()
                if self.gateway_marks is not None:
                    self.gateway_marks.start(self)
                return RecoveryReport(0, 0, 0)
            self._purge_seen()
            unfinished = self.journal.unfinished()
            resumed = 0
            for row in unfinished:
                if row.state in machine.AUTOMATIC:
                    resumed += 1
                    self._threads.kick(row.seq)
            undelivered = self.journal.undelivered()
            self._bridge.requeue()  # before activate(): what it finishes now is sent by _after
            self._after(self._core.activate())
            self._settle_outcomes()
            last = self.journal.last_finished()
            self._screen.remember_last(None if last is None else last.seq)
            self._screen.changed()
        self._threads.start_background()
        if self.gateway_marks is not None:
            self.gateway_marks.start(self)
        log.info("terminal service started: %d unfinished (%d resumed with the channel), %d results undelivered",
                 len(unfinished), resumed, len(undelivered))
        self._notify()
        return RecoveryReport(len(unfinished), resumed, len(undelivered))

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker and deadline threads (the journal stays valid; a new service resumes from it)."""
        self._threads.close(timeout)
        if self.gateway_marks is not None:
            self.gateway_marks.stop(timeout)

    @property
    def dead(self) -> bool:
        """True after a PowerLostAtCommit: this object does nothing more; start a new service on the journal."""
        return self._threads.dead

    def _alive(self) -> None:
        self._threads.check_alive()

    # == LINK side ===================================================================================
    # -- high-water marks, exchanged at link-up (issue 14; docs/link-protocol.md section 7) ----------
    def marks(self, bridge_key: bytes) -> MarksMsg:
        """What this POS tells the bridge (pinned key `bridge_key`) first thing after link-up."""
        with self._lock:
            held = self.journal.meta(_peer_mark_key(bridge_key))
            return MarksMsg(self.journal.high_water_mark, None if held is None else int(held))

    def bridge_marks(self, bridge_key: bytes, message: MarksMsg) -> None:
        """The bridge's marks: lock the journal if the bridge holds a higher mark for it than it has
        (this POS's storage was rolled back as a whole); else keep the bridge's mark for next time."""
        with self._lock:
            self._alive()
            try:
                after_resync_bridge_mark(self.journal, message.yours)
            except JournalUnavailable as exc:
                log.warning("cannot take the bridge's mark after the re-sync: %s", exc)
            mine = self.journal.high_water_mark
            if message.yours is not None and message.yours > mine:
                problem = (f"the bridge holds high-water mark {message.yours} for this POS's journal, which is at {mine}: "
                           "the journal was rolled back (an old copy of the POS's storage was put back). Recover: "
                           "python -m terminal.journal_admin restore JOURNAL BACKUP with the newest backup, or "
                           f"restore JOURNAL --accept-current --mark {message.yours} (docs/terminal.md)")
                log.critical("%s", problem)
                self.journal.rolled_back(problem)
                self._screen.changed()
            elif not self.journal.locked and self.journal.meta(_peer_mark_key(bridge_key)) != str(message.mine):
                try:
                    self._core.save_peer_mark(_peer_mark_key(bridge_key), message.mine)
                except JournalUnavailable as exc:  # asked again at the next link-up
                    log.warning("cannot keep the bridge's mark: %s", exc)
        self._notify()

    def journal_rolled_back(self, problem: str) -> None:
        """A peer (the payment gateway: terminal.gateway_marks) holds a higher mark for this journal
        than it has: locked like a failed check on open, until it is recovered."""
        with self._lock:
            log.critical("%s", problem)
            self.journal.rolled_back(problem)
            self._screen.changed()
        self._notify()

    def bridge_clock_heard(self, bridge_unix: float) -> None:
        """The bridge said what its clock reads (with an instruction): results are stamped with it and
        the clock checks of the next instruction use it, never an offset measured before a clock step."""
        self._core.bridge_clock.heard(bridge_unix)

    def submit_instruction(self, envelope: Envelope, *, expires_at: int | None = None) -> None:
        try:
            self._submit_instruction(envelope, expires_at)
        except JournalUnavailable as exc:  # nothing journaled or charged; the link lives on
            # The POS cannot journal, so it cannot seal a result either: an unsealed not_taken ends
            # nothing, and the bridge sends the instruction again when this device next attaches.
            log.error("cannot take instruction %s: %s", envelope.msg_id, exc)
            with self._lock:
                self._bridge.not_taken(envelope.msg_id, exc.code, f"the POS cannot record it: {exc.code.value}; "
                                       "nothing was charged; it is sent again once the POS is recovered")
                self._screen.changed()
            self._notify()

    def _submit_instruction(self, envelope: Envelope, expires_at: int | None) -> None:
        with self._lock:
            self._alive()
            if self.clock() - self._last_purge > SEEN_PURGE_INTERVAL_S:
                self._purge_seen()
            outcome = self._core.accept(envelope, expires_at)
            if isinstance(outcome, NotTaken):
                r = outcome.refusal
                log.warning("cannot answer instruction %s: %s: %s", r.msg_id, r.code.value, r.message)
                self._bridge.not_taken(r.msg_id, r.code, r.message)
                return
            if isinstance(outcome, Refused):
                r = outcome.refusal
                log.warning("refused instruction %s: %s: %s", r.msg_id, r.code.value, r.message)
                assert outcome.change.result is not None  # journaled and finished: never on the cashier's screen
                self._bridge.sealed(outcome.change.result.envelope)
                return
            if isinstance(outcome, Repeat):
                if outcome.result is not None:
                    self._bridge.stored(outcome.result.envelope)
                else:
                    self._bridge.progress(outcome.row)
                return
            assert isinstance(outcome, Accepted)
            row = self.journal.instruction(outcome.seq)
            log.info("instruction %s: %s %s for order %s", row.msg_id, row.kind.value, row.amount, row.order_no)
            changes = [c for c in (self._core.decide_on_arrival(outcome.seq),) if c is not None]
            changes += self._core.activate()
            if self.journal.instruction(outcome.seq).state is State.QUEUED:
                self._bridge.queued(row)
            self._after(changes)
            self._settle_outcomes()  # already expired on arrival: ended at once
            self._deadlines.wake()
        self._notify()

    # == HIS's bounds and wishes (his-interface 1.1 C; terminal.his_outcomes) ========================
    def withdraw(self, envelope: Envelope) -> bool:
        """HIS withdraws an instruction (a sealed `cancel`). True if it was taken (now or already)."""
        with self._lock:
            self._alive()
            row = self._outcomes.named_by(envelope, self.config, self.clock())
            if row is None:
                return False
            if self._outcomes.mark_withdrawn(row):
                self._settle_outcomes()
                self._cond.notify_all()
                self._screen.changed()
        self._notify()
        return True

    def check_deadlines(self) -> int:
        """End what has expired now (also called by the service's own deadline thread); how many."""
        with self._lock:
            self._alive()
            if self.journal.locked:
                return 0
            ended = self._settle_outcomes()
        if ended:
            self._notify()
        return ended

    def _settle_outcomes(self) -> int:
        """Under the lock: end every instruction that is expired or withdrawn and waits for nobody."""
        now = self._core.result_time(self.clock())
        ended = 0
        for row in self.journal.unfinished():
            ending = self._outcomes.due(row, now)
            if ending is None:
                continue
            change = self._core.apply(row.seq, ending.state, ending.event, reason=ending.reason)
            if change is None:
                continue
            log.info("order %s: instruction %s %s", row.order_no, row.msg_id, ending.reason)
            ended += 1
            self._after([change])
            if change.after is State.REVERSING:
                self._threads.kick(row.seq)
        return ended

    def _seconds_to_next_expiry(self) -> float | None:
        with self._lock:
            if self._threads.stopping or self.journal.dead:
                return None
            due = self._outcomes.next_deadline(self.journal.unfinished())
            return None if due is None else due - self._core.result_time(self.clock())

    def _purge_seen(self) -> None:
        try:
            self._core.forget_old_msg_ids()
        except JournalUnavailable as exc:  # housekeeping: tried again later
            log.warning("msg_id purge skipped: %s", exc)
        self._last_purge = self.clock()

    def mark_delivered(self, result_msg_id: str) -> bool:
        with self._lock:
            self._alive()
            done = self._core.mark_delivered(result_msg_id)
        return done

    def link_up(self, bridge_clock: float | None = None) -> None:
        """The link came up. `bridge_clock` is the bridge's clock from its HELLO_ACK, if it sent one."""
        with self._lock:
            self._alive()
            if bridge_clock is not None:
                self._core.bridge_clock.heard(bridge_clock)
                offset = self.clock() - bridge_clock
                if abs(offset) > CLOCK_WARN_S:
                    log.warning("the POS clock is %+.0f s off the bridge clock; results are stamped with the bridge's "
                                "time; set the POS clock (network time)", offset)
            self._bridge.came_up()
            self._screen.changed()
        self._notify()

    def link_down(self) -> None:
        with self._lock:
            self._bridge.went_down()
            self._screen.changed()
        self._notify()

    # == CASHIER side ================================================================================
    def scan(self, code: str) -> ScanReply:
        with self._lock:
            self._alive()
            head = self._core.head()
            if head is None or head.state not in (State.AWAITING_SCAN, State.DECLINED):
                return ScanReply(ScanStatus.NOT_AWAITING, texts.NOTHING_TO_SCAN)
            expired = self._outcomes.blocked(head, self._core.result_time(self.clock()))
            if expired:
                self._settle_outcomes()  # no payment starts after expiry or withdrawal (1.1 C)
        if expired:
            self._notify()
            return ScanReply(ScanStatus.NOT_AWAITING, texts.EXPIRED)
        with self._lock:
            self._alive()
            head = self._core.head()
            if head is None or head.state not in (State.AWAITING_SCAN, State.DECLINED):
                return ScanReply(ScanStatus.NOT_AWAITING, texts.NOTHING_TO_SCAN)
            try:
                channel, code = route_code(code)
            except CodeRefused as refused:
                self._screen.set_notice(refused.text)
                reply = ScanReply(ScanStatus.REFUSED, refused.text, reason=refused.reason)
            else:
                client = self.clients.get(channel)
                if client is None:
                    self._screen.set_notice(texts.CHANNEL_NOT_CONFIGURED)
                    reply = ScanReply(ScanStatus.UNAVAILABLE, texts.CHANNEL_NOT_CONFIGURED, channel)
                else:
                    try:
                        attempt = self._core.begin_attempt(head.seq, head.state, channel, mask_code(code), self._driver.polling(channel)[1])
                    except StaleState as exc:
                        log.warning("scan refused: %s", exc)
                        return ScanReply(ScanStatus.NOT_AWAITING, texts.BUSY)
                    log.info("order %s: paying with %s, out_trade_no %s, code %s", head.order_no, channel.value,
                             attempt.out_trade_no, attempt.code_masked)
                    self._driver.hand_code(head.seq, code)
                    self._after([Change(head.seq, head.state, State.PAYING)])
                    self._threads.kick(head.seq)
                    reply = ScanReply(ScanStatus.ACCEPTED, texts.PAYING, channel)
        self._notify()
        return reply

    def cancel(self) -> ActionReply:
        with self._lock:
            self._alive()
            head = self._core.head()
            if head is None:
                return ActionReply(False, texts.IDLE)
            if head.state is State.AWAITING_SUPERVISOR:
                change = self._core.apply(head.seq, head.state, Event.SUPERVISOR_DECLINED, reason="supervisor_declined")
            elif head.state in (State.AWAITING_SCAN, State.DECLINED, State.USER_PAYING):
                change = self._core.apply(head.seq, head.state, Event.CANCEL, reason="cancelled")
            else:
                return ActionReply(False, texts.BUSY)
            if change is None:
                return ActionReply(False, texts.BUSY)
            self._after([change])
            if change.after is State.REVERSING:
                self._threads.kick(head.seq)
            self._cond.notify_all()  # wake a worker waiting to poll: it must reverse now
            row = self.journal.instruction(head.seq)
        self._notify()
        if change.after is State.REVERSING:
            return ActionReply(True, texts.REVERSING)
        assert row.pay_status is not None
        return ActionReply(True, result_message(row.pay_status, row.error_code))

    def decline_refund(self) -> ActionReply:
        with self._lock:
            self._alive()
            head = self._core.head()
            if head is None or head.state is not State.AWAITING_SUPERVISOR:
                return ActionReply(False, texts.BUSY if head else texts.IDLE)
            change = self._core.apply(head.seq, head.state, Event.SUPERVISOR_DECLINED, reason="supervisor_declined")
            if change is None:
                return ActionReply(False, texts.BUSY)
            self._after([change])
        self._notify()
        return ActionReply(True, texts.REASON[ResultCode.SUPERVISOR_DECLINED])

    def confirm_refund(self, pin: str) -> PinReply:
        """The supervisor's PIN for the refund on screen. The attempt is counted as a failure before
        its hash runs (a right PIN then clears the count): parallel guesses are counted as they
        arrive, so the lockout stops them, not the first verdict (terminal.pin.AttemptCounter)."""
        with self._lock:
            self._alive()
            head = self._core.head()
            if head is None or head.state is not State.AWAITING_SUPERVISOR:
                return PinReply(PinStatus.NOT_AWAITING, texts.BUSY if head else texts.IDLE)
            seq = head.seq
            expired = self._outcomes.blocked(head, self._core.result_time(self.clock()))
            if expired:
                self._settle_outcomes()  # no refund starts after expiry or withdrawal (1.1 C)
        if expired:
            self._notify()
            return PinReply(PinStatus.NOT_AWAITING, texts.EXPIRED)
        verdict = self._pins.check("supervisor", pin)  # outside the service lock: no queue behind an fsync or a hash
        if verdict.check is PinCheck.LOCKED:
            return PinReply(PinStatus.LOCKED, texts.PIN_LOCKED, 0, verdict.state.locked_until)
        with self._lock:
            self._alive()
            if verdict.check is not PinCheck.RIGHT:
                reply = self._wrong_pin(verdict)
            else:
                head = self._core.head()
                if head is None or head.seq != seq or head.state is not State.AWAITING_SUPERVISOR:
                    return PinReply(PinStatus.NOT_AWAITING, texts.BUSY)
                change = self._core.confirm_supervisor(seq)
                if change is not None:
                    self._after([change])
                    if change.after is State.REFUNDING:
                        self._driver.allow_refund(seq)
                        self._threads.kick(seq)
                reply = PinReply(PinStatus.ACCEPTED, texts.REFUNDING)
        self._notify()
        return reply

    def check_admin_pin(self, pin: str) -> PinReply:
        """The settings screen's PIN (config "admin"; without one, settings stay closed)."""
        return self._admin_pin(pin, reset_supervisor=False)

    def reset_pin_lockout(self, admin_pin: str) -> PinReply:
        """An administrator, on the device, clears the supervisor PIN's lockout and its escalation
        with the admin PIN (which has its own lockout)."""
        reply = self._admin_pin(admin_pin, reset_supervisor=True)
        if reply.status is PinStatus.ACCEPTED:
            self._notify()
        return reply

    def _admin_pin(self, pin: str, *, reset_supervisor: bool) -> PinReply:
        if self.config.admin_pin_hash is None:
            return PinReply(PinStatus.NOT_AWAITING, texts.ADMIN_PIN_NOT_SET)
        with self._lock:
            self._alive()
        verdict = self._pins.check("admin", pin)
        if verdict.check is PinCheck.LOCKED:
            return PinReply(PinStatus.LOCKED, texts.PIN_LOCKED, 0, verdict.state.locked_until)
        with self._lock:
            self._alive()
            if verdict.check is not PinCheck.RIGHT:
                return self._wrong_pin(verdict)
            if reset_supervisor:
                self._pins.reset("supervisor")
                log.warning("supervisor PIN lockout reset by the administrator")
                self._screen.clear_notice()
            return PinReply(PinStatus.ACCEPTED, texts.PIN_VERIFIED)

    def _wrong_pin(self, verdict: PinVerdict) -> PinReply:
        """Under the lock, after a wrong PIN (counted and logged by terminal.pin.PinDesk)."""
        self._screen.changed()
        if verdict.check is PinCheck.WRONG_NOW_LOCKED:
            self._screen.set_notice(texts.PIN_LOCKED)
            return PinReply(PinStatus.LOCKED, texts.PIN_LOCKED, 0, verdict.state.locked_until)
        self._screen.set_notice(texts.WRONG_PIN)
        return PinReply(PinStatus.WRONG, texts.WRONG_PIN, verdict.tries_left)

    def recheck(self) -> ActionReply:
        """A person fixed the cause (the merchant key at the gateway, the refund on the merchant
        platform): ask the channel again about the oldest instruction handed over to a person."""
        with self._lock:
            self._alive()
            parked = [row for row in self.journal.unfinished() if row.state in machine.NEEDS_PERSON]
            if not parked:
                return ActionReply(False, texts.NOTHING_NEEDS_PERSON)
            row = parked[0]
            change = self._core.apply(row.seq, row.state, Event.RECHECK)
            if change is None:
                return ActionReply(False, texts.BUSY)
            log.warning("order %s: %s handed back to the service by a person (recheck)", row.order_no, row.kind.value)
            self._after([change])
            self._threads.kick(row.seq)
        self._notify()
        return ActionReply(True, texts.RECHECKING)

    def needs_person(self) -> list[NeedsPersonCase]:
        """The unfinished instructions handed to a person, oldest first (recheck() takes the first)."""
        with self._lock:
            self._alive()
            return [needs_person_case(row) for row in self.journal.unfinished() if row.state in machine.NEEDS_PERSON]

    def wake(self) -> None:
        """The clock was set (network time, or an injected clock moved): waits on it look again now."""
        self._driver.wake()

    def dismiss(self) -> None:
        """Hide the result screen and any notice."""
        with self._lock:
            self._screen.dismiss()
        self._notify()

    # == views ======================================================================================
    def view(self) -> ScreenView:
        with self._lock:
            self._alive()
            unfinished = self.journal.unfinished()
            # The cashier's instruction; one handed to a person, or a refund settling in the background,
            # shows only when nothing else does (the person's case first).
            head = self._core.head() or next((r for r in unfinished if r.state in machine.NEEDS_PERSON), None) \
                or (unfinished[0] if unfinished else None)
            attempt = self.journal.current_attempt(head.seq) if head is not None and head.kind is Kind.COLLECT else None
            parked = sum(1 for row in unfinished if row.state in machine.NEEDS_PERSON and (head is None or row.seq != head.seq))
            lockout = self._pins.state("supervisor")
            screen = self._screen
            last = self._result_view(screen.last_seq) if screen.last_seq is not None else None
            view = screen_view(
                revision=screen.revision, head=head, attempt=attempt, queued=max(0, len(unfinished) - 1), now=self.clock(),
                last_result=last, show_result=screen.show_result, notice=screen.notice, link_up=self._bridge.up,
                pin_tries_left=tries_left(lockout, self.config.supervisor.max_wrong_tries),
                pin_locked_until=lockout.locked_until if is_locked(lockout, self.clock()) else None,
                original=original_payment(self.journal, head), reverse_at=None if head is None else self._driver.reverse_at(head.seq),
            )
            return dataclasses.replace(view, journal_problem=journal_problem(self.journal), needs_person_elsewhere=parked)

    def _result_view(self, seq: int) -> ResultView | None:
        row = self.journal.instruction(seq)
        result = self.journal.result_for(seq)
        return None if result is None else result_view(row, result.pay_order_no, result.amount_fen)

    def history(self, day: datetime.date | None = None, order_no: str | None = None) -> list[HistoryEntry]:
        """Finished instructions of a local day (default today), newest first; `order_no` filters
        by a case-insensitive part of the order number (terminal.history)."""
        with self._lock:
            self._alive()
            return self._history.entries(day, order_no)

    def totals(self, day: datetime.date | None = None) -> DayTotals:
        with self._lock:
            self._alive()
            return self._history.totals(day)

    def receipt(self, msg_id: str) -> Receipt | None:
        """The receipt of a finished instruction (by its HIS msg_id), or None."""
        with self._lock:
            self._alive()
            return self._history.receipt(msg_id)

    def add_observer(self, observer: Callable[[ScreenView], None]) -> Callable[[], None]:
        """`observer(view)` after every change, on the thread that made it; returns its remover."""
        return self._observers.add(observer)

    def _notify(self) -> None:
        if self.dead:
            return
        self._observers.tell(self.view)

    # == after a commit =============================================================================
    def _after(self, changes: list[Change]) -> None:
        """Tell the link and the screen about committed changes; bring the next instruction forward."""
        more: list[Change] = []
        for change in changes:
            if change.before is change.after:
                continue
            self._screen.moved_on()
            row = self.journal.instruction(change.seq)
            log.info("order %s: %s %s -> %s", row.order_no, row.kind.value, change.before.value, change.after.value)
            if change.result is not None:
                self._bridge.sealed(change.result.envelope)  # signed when sealed
                current = self._core.head()
                if change.before not in BACKGROUND or current is None or current.state is State.QUEUED:
                    self._screen.finished(change.seq, show=True)
                # else: a refund finished in the background while the cashier serves the next patient:
                # its result goes to HIS and the history, not over the patient at the window.
                more = self._core.activate()
            elif (change.after in machine.NEEDS_PERSON or change.after is State.DECLINED
                  or machine.PROGRESS[change.after] is not machine.PROGRESS[change.before]):
                # a decline is told to HIS as it happens (1.1 C last_event), the cashier may scan again;
                # a hand-over to a person too (issue 17: last_event needs_person)
                self._bridge.progress(row)
                if change.after in machine.NEEDS_PERSON:
                    log.error("order %s: handed to a person: %s", row.order_no, row.last_error_code)
                    more = self._core.activate()  # it steps aside: the next instruction comes forward
        if more:
            self._after(more)
        if any(c.after in SETTLE_AFTER and c.before is not c.after for c in changes):
            self._settle_outcomes()  # e.g. declined after HIS withdrew it, or after it expired

    # == workers: the channel calls (terminal.worker through terminal.driver; terminal.supervision) ==
    def _work(self, seq: int) -> None:
        Worker(self._driver, seq).run()

    def _needs_work(self, seq: int) -> bool:
        """Under the lock: `seq` still needs a worker (a change may have landed after its last look)."""
        return self.journal.instruction(seq).state in machine.AUTOMATIC

    def _apply(self, seq: int, expect: State, event: Event, *, pay: PayOutcome | None = None,
               refund: RefundOutcome | None = None, reason: str | None = None) -> None:
        """Commit what a channel answer means (a worker's terminal.driver.Commit), then tell everyone."""
        with self._lock:
            self._alive()
            change = self._core.apply(seq, expect, event, pay=pay, refund=refund, reason=reason)
            if change is not None:
                self._after([change])
        self._notify()
