"""The view-model: the only object the screens bind to (Kivy properties over a `Backend`).

The backend (the terminal service through `terminal.ui.adapter`) calls back from its own threads;
`notify()` only schedules a refresh on the Kivy main thread, where `refresh()` reads one snapshot
and sets properties. Cashier actions run on one worker thread so a slow PIN hash or a channel call
never freezes the screen; their answers come back through the main thread too.

Texts are kept as `Text` objects and picked in the .kv with the current `lang`, so switching the
language re-renders everything without asking the service again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from kivy.clock import Clock
from kivy.event import EventDispatcher
from kivy.properties import (BooleanProperty, ListProperty, NumericProperty, ObjectProperty, OptionProperty,
                             StringProperty)

from protocol.amount import Direction
from protocol.messages import PayStatus
from terminal.gateway_watch import GatewayState
from terminal.texts import CHANNEL_NAME, DEFAULT_LANGUAGE, LANGUAGES, STRINGS, Text, WRONG_PIN, pick, text, tr
from terminal.texts import display_yuan
from terminal.ui.model import About, Backend, PinAnswer
from terminal.ui.screens import widget_name
from terminal.history import DayTotals, HistoryEntry
from terminal.view import NeedsPersonCase, Screen, ScreenView, route

if TYPE_CHECKING:
    from terminal.ui.receipt_render import ReceiptFonts

log = logging.getLogger(__name__)

# Longest PIN the keypad takes (terminal.pin accepts 4 to 12 digits).
MAX_PIN_DIGITS = 12
# How often the countdown on the paying screen is redrawn.
COUNTDOWN_TICK_S = 0.25


class ActionWorker:
    """One background thread running cashier actions in order; results return on the main thread."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], object], Callable[[object], None] | None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pos-ui-actions", daemon=True)
        self._thread.start()
        self.busy = 0

    def submit(self, job: Callable[[], object], done: Callable[[object], None] | None = None) -> None:
        self.busy += 1
        self._jobs.put((job, done))

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, done = item
            try:
                answer: object = job()
            except Exception as exc:  # reported on screen and in the log, never swallowed
                log.exception("cashier action failed")
                answer = exc
            Clock.schedule_once(lambda dt, a=answer, d=done: self._finish(a, d), 0)

    def _finish(self, answer: object, done: Callable[[object], None] | None) -> None:
        self.busy -= 1
        if done is not None:
            done(answer)

    def stop(self) -> None:
        self._jobs.put(None)


class PosViewModel(EventDispatcher):
    lang = OptionProperty(DEFAULT_LANGUAGE, options=list(LANGUAGES))
    screen = StringProperty(widget_name(Screen.IDLE))  # the Kivy screen on show (terminal.ui.screens)
    shown = StringProperty(Screen.IDLE.value)  # what it shows: a terminal.view.Screen value
    # the order in front of the cashier
    order_no = StringProperty("")
    direction = StringProperty("collect")  # "collect" | "refund": the kv picks colour, word and marker
    amount_text = StringProperty("")
    patient = StringProperty("")
    items = ListProperty([])  # [(name, qty, amount_text)]
    message = ObjectProperty(None, allownone=True)  # Text
    warning = BooleanProperty(False)
    queued = NumericProperty(0)
    original = ObjectProperty(None, allownone=True)  # a refund: the payment it goes back against (view.OriginalPayment)
    # paying
    countdown = NumericProperty(0)
    countdown_total = NumericProperty(0)
    can_cancel = BooleanProperty(False)
    needs_person = BooleanProperty(False)  # handed to a person: the message says what to do
    can_recheck = BooleanProperty(False)
    needs_person_count = NumericProperty(0)  # open "needs a person" cases: the home screen opens their list
    needs_person_rows = ListProperty([])  # [dict] for the list (terminal.view.NeedsPersonCase)
    # PIN pad (refund and admin)
    pin_entry = StringProperty("")
    pin_message = ObjectProperty(None, allownone=True)  # Text
    pin_busy = BooleanProperty(False)
    pin_locked = BooleanProperty(False)  # the supervisor PIN is locked out: an admin may clear it
    admin_for = StringProperty("settings")  # what the admin PIN opens: "settings" | "reset_lockout"
    # result
    outcome = ObjectProperty(None, allownone=True)  # terminal.view.ResultView
    result_ok = BooleanProperty(False)
    print_message = ObjectProperty(None, allownone=True)  # Text
    # home (and every top bar)
    clock_text = StringProperty("")  # "10:15", local time
    test_env = BooleanProperty(False)  # the channels are the sandbox: a banner says no real money moves
    last_receipt_id = StringProperty("")  # msg_id of the last payment or refund that went through: reprint
    reprint_message = ObjectProperty(None, allownone=True)  # Text
    link = StringProperty("down")  # "up" | "down": the bridge on the cashier PC
    network = StringProperty(GatewayState.UNKNOWN.value)  # terminal.gateway_watch.GatewayState
    problem = ObjectProperty(None, allownone=True)  # Text: why this POS cannot take payments now
    totals = ListProperty([])  # [(channel Text, count, collected_text, refunded_text)]
    today_count = NumericProperty(0)
    # history, settings
    history_rows = ListProperty([])  # [dict] for the RecycleView
    history_query = StringProperty("")
    about = ObjectProperty(None, allownone=True)  # model.About
    camera_status = StringProperty("no_camera")
    printer = StringProperty("")
    admin_pin_set = BooleanProperty(True)
    # set on every refresh: benchmarks and tests wait for it
    refreshed = NumericProperty(0)

    def __init__(self, backend: Backend, *, receipts_dir: Path | None = None, print_command: str = "",
                 receipt_fonts: "ReceiptFonts | None" = None, clock: Callable[[], float] = time.time, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self.clock = clock  # unix seconds: the countdown and PIN lockouts (stopped in screenshots)
        self.receipts_dir = receipts_dir
        self.printer = print_command
        self.receipt_fonts = receipt_fonts
        self.worker = ActionWorker()
        self.last_receipt: Path | None = None
        self._manual: Screen | None = None
        self._dismissed: tuple[object, ...] | None = None
        self._order_key: tuple[str, str] | None = None
        self._view: ScreenView = backend.view()
        self._deadline: float | None = None
        self._deadline_key: tuple[str | None, float | None] = (None, None)
        self._totals_key: object = None
        self._pending = False
        self._closed = False
        self.about = backend.about()
        self._tick(0)
        Clock.schedule_interval(self._tick, COUNTDOWN_TICK_S)
        backend.subscribe(self.notify)
        self._find_last_receipt()

    # --- from the service ------------------------------------------------------------------------

    def rebind(self, backend: Backend) -> None:
        """Show another backend from now on (a device powered on again with a new service). Main
        thread. Where the cashier had navigated and which result was closed belong to the old one."""
        self.backend = backend
        self._manual, self._dismissed, self._order_key = None, None, None
        self.pin_entry, self.pin_message, self.print_message = "", None, None
        self.about = backend.about()
        self.last_receipt_id, self.reprint_message = "", None
        backend.subscribe(self.notify)
        self.refresh()
        self._find_last_receipt()

    def on_about(self, instance: object, about: About | None) -> None:
        self.test_env = bool(about and about.sandbox)
        self.admin_pin_set = bool(about is None or about.admin_pin_set)

    def _find_last_receipt(self) -> None:
        """The newest payment or refund of today that went through: what "reprint" prints."""
        def newest(answer: object) -> None:
            if isinstance(answer, list) and not self.last_receipt_id:
                ok = [row for row in answer if isinstance(row, HistoryEntry) and row.error_code is None
                      and row.pay_status in (PayStatus.SUCCESS, PayStatus.REFUNDED) and row.msg_id]
                if ok:
                    self.last_receipt_id = ok[0].msg_id
        self.worker.submit(lambda: self.backend.history(""), newest)

    def notify(self) -> None:
        """Called from any thread when the service's state changed."""
        if not self._pending and not self._closed:
            self._pending = True
            Clock.schedule_once(lambda dt: self.refresh(), 0)

    def refresh(self) -> None:
        self._pending = False
        if self._closed:
            return  # the app has stopped: its widgets must not be touched any more
        self.apply(self.backend.view())

    def apply(self, view: ScreenView) -> None:
        key = (view.order_no, view.direction.value) if view.order_no is not None and view.direction is not None else None
        if key != self._order_key:  # a new order: forget where the cashier navigated for the last one
            self._order_key = key
            if key is not None:
                self._manual = None
                self.pin_entry, self.pin_message = "", None
        outcome = view.last_result
        if outcome is not None and (self._view.last_result is None or outcome.key != self._view.last_result.key):
            self.print_message = None
        self._view = view
        if view.order_no is not None and view.direction is not None and view.amount_fen is not None:
            self.order_no = view.order_no
            self.direction = "refund" if view.direction is Direction.REFUND else "collect"
            self.amount_text = display_yuan(view.amount_fen)
            self.patient = view.patient or ""
            self.items = [(i.name, i.qty, display_yuan(i.amount_fen)) for i in view.items]
            self.original = view.original
        if view.needs_person:  # a parked case: the home screen shows, with the count; its words are in the list
            self.message, self.warning = view.notice or STRINGS["home.idle"], view.notice is not None
        else:
            self.message, self.warning = view.shown_message, view.warning
        self.queued = view.queued
        self.can_cancel = view.can_cancel
        self.needs_person, self.can_recheck = view.needs_person, view.can_recheck
        self.needs_person_count = view.needs_person_count
        self._follow_deadline(view)
        self.pin_locked = view.pin_locked_until is not None and view.pin_locked_until > 0
        self._say_lockout()
        self.outcome = outcome
        self.result_ok = bool(outcome and outcome.went_through)
        if outcome is not None and outcome.went_through and outcome.msg_id:
            self.last_receipt_id = outcome.msg_id
        self.link, self.network = ("up" if view.link_up else "down"), view.gateway.value
        self.problem = _problem_text(view)
        totals_key = (None if outcome is None else outcome.key, time.strftime("%Y%m%d", time.localtime(self.clock())))
        if totals_key != self._totals_key:  # re-read the day's totals only when something finished
            self._totals_key = totals_key
            self.worker.submit(self.backend.totals, self._set_totals)
        self._route()
        self.refreshed = time.perf_counter()

    def _follow_deadline(self, view: ScreenView) -> None:
        """The countdown runs on this clock: the service's may be injected, so keep only the interval."""
        if view.countdown_s is None:
            self._deadline, self._deadline_key = None, (None, None)
            self.countdown_total = 0
        elif (view.msg_id, view.deadline) != self._deadline_key:
            self._deadline_key = (view.msg_id, view.deadline)
            self._deadline = self.clock() + view.countdown_s
            self.countdown_total = view.deadline_total_s or max(1.0, float(int(view.countdown_s + 0.999)))
        self._tick(0)

    def _set_totals(self, answer: object) -> None:
        if isinstance(answer, DayTotals):
            self.totals = [(CHANNEL_NAME[c.channel], c.collected_count + c.refunded_count, display_yuan(c.collected_fen),
                            display_yuan(c.refunded_fen)) for c in answer.channels]
            self.today_count = sum(c.collected_count + c.refunded_count for c in answer.channels)

    def _route(self) -> None:
        outcome = self._view.last_result
        dismissed = outcome is not None and outcome.key == self._dismissed
        shown = route(self._view, self._manual, dismissed)
        self.shown = shown.value
        self.screen = widget_name(shown)

    def _tick(self, dt: float) -> None:
        self.clock_text = time.strftime("%H:%M", time.localtime(self.clock()))
        if self._deadline is None:
            self.countdown = 0
            return
        self.countdown = max(0, int(self._deadline - self.clock() + 0.999))

    # --- cashier actions -------------------------------------------------------------------------

    def scan(self, code: str) -> None:
        """A code from the wedge scanner or the camera."""
        self.worker.submit(lambda: self.backend.scan(code), self._after_scan)

    def _after_scan(self, answer: object) -> None:
        if isinstance(answer, Text):
            self.message, self.warning = answer, True
        elif isinstance(answer, Exception):
            self.message, self.warning = text("msg.error", error=answer), True

    def cancel(self) -> None:
        self.worker.submit(self.backend.cancel)

    def recheck(self) -> None:
        self.worker.submit(self.backend.recheck, lambda answer: self._load_needs_person())

    def open(self, name: str, purpose: str = "settings") -> None:
        """The cashier opened a screen by hand (history, settings, camera scan, a PIN pad, the cases
        for a person); `purpose` says what the admin PIN pad is for ("settings" or "reset_lockout")."""
        screen = Screen(name)
        self._manual = screen
        self.pin_entry, self.pin_message = "", None
        if screen is Screen.ADMIN_PIN:
            self.admin_for = purpose
        self._say_lockout()
        if screen is Screen.HISTORY:
            self.search_history(self.history_query)
        if screen is Screen.SETTINGS:
            self.worker.submit(self.backend.about, self._set_about)
        if screen is Screen.NEEDS_PERSON:
            self._load_needs_person()
        self._route()

    def _say_lockout(self) -> None:
        """The supervisor PIN is locked out: the refund PIN pad says for how long (and offers the admin)."""
        until = self._view.pin_locked_until
        if self.pin_locked and until is not None and self.pin_message is None and self._manual is Screen.REFUND_PIN:
            self.pin_message = _pin_text(0, until, self.clock())

    def _load_needs_person(self) -> None:
        self.worker.submit(self.backend.needs_person, self._set_needs_person)

    def _set_needs_person(self, answer: object) -> None:
        if isinstance(answer, list):
            self.needs_person_rows = [_case_row(case) for case in answer if isinstance(case, NeedsPersonCase)]

    def back(self) -> None:
        self._manual = None
        self.pin_entry, self.pin_message = "", None
        self._route()

    def forget_dismissed(self) -> None:
        """Show a result the cashier closed again when it comes back (the screenshots' fixed results)."""
        self._dismissed = None

    def _set_about(self, answer: object) -> None:
        if isinstance(answer, About):
            self.about = answer

    def set_language(self, lang: str) -> None:
        self.lang = lang

    # PIN pad: digits stay in this object only, and are cleared after each check
    def pin_key(self, key: str) -> None:
        if self.pin_busy:
            return
        if key == "del":
            self.pin_entry = self.pin_entry[:-1]
        elif key == "clear":
            self.pin_entry = ""
        elif key.isdigit() and len(key) == 1 and len(self.pin_entry) < MAX_PIN_DIGITS:
            self.pin_entry += key
            self.pin_message = None

    def pin_submit(self) -> None:
        pin, self.pin_entry = self.pin_entry, ""
        if len(pin) < 4:
            self.pin_message = STRINGS["pin.too_short"]
            return
        self.pin_busy = True
        self.pin_message = STRINGS["pin.checking"]
        if self.shown == Screen.ADMIN_PIN.value and self.admin_for == "reset_lockout":
            self.worker.submit(lambda: self.backend.reset_pin_lockout(pin), self._after_lockout_reset)
        elif self.shown == Screen.ADMIN_PIN.value:
            self.worker.submit(lambda: self.backend.check_admin_pin(pin), self._after_admin_pin)
        else:
            self.worker.submit(lambda: self.backend.confirm_refund(pin), self._after_refund_pin)

    def _after_refund_pin(self, answer: object) -> None:
        self.pin_busy = False
        self.pin_message = _answer_text(answer, self.clock())

    def _after_admin_pin(self, answer: object) -> None:
        self.pin_busy = False
        if isinstance(answer, PinAnswer) and answer.accepted:
            self.pin_message = None
            self.open(Screen.SETTINGS.value)
        else:
            self.pin_message = _answer_text(answer, self.clock())

    def _after_lockout_reset(self, answer: object) -> None:
        """The supervisor PIN's lockout is cleared: back to the supervisor's PIN pad."""
        self.pin_busy = False
        if isinstance(answer, PinAnswer) and answer.accepted:
            self.open(Screen.REFUND_PIN.value)
            self.pin_message = STRINGS["pin.lockout_cleared"]
        else:
            self.pin_message = _answer_text(answer, self.clock())

    def decline_refund(self) -> None:
        self._manual = None
        self.worker.submit(self.backend.decline_refund)

    def dismiss_result(self) -> None:
        if self._view.last_result is not None:
            self._dismissed = self._view.last_result.key
        self._manual = None
        self.worker.submit(self.backend.dismiss_result)
        self._route()

    def search_history(self, query: str) -> None:
        self.history_query = query.strip()
        self.worker.submit(lambda: self.backend.history(self.history_query), self._set_history)

    def _set_history(self, answer: object) -> None:
        if isinstance(answer, list):
            self.history_rows = [_history_row(row) for row in answer]

    def print_receipt(self) -> None:
        """The receipt of the result on screen (only a payment or refund that went through has one)."""
        outcome, lang = self.outcome, self.lang
        if outcome is None or not outcome.went_through:
            self.print_message = STRINGS["receipt.none_for_failure"]
            return
        self.print_message = STRINGS["result.printing"]
        self.worker.submit(lambda: self._print(outcome.msg_id, lang), self._after_print)

    def reprint_last(self) -> None:
        """The receipt of the last payment or refund that went through, again (a jammed printer, a
        patient who lost it)."""
        msg_id, lang = self.last_receipt_id, self.lang
        if not msg_id:
            self.reprint_message = STRINGS["home.nothing_to_reprint"]
            return
        self.reprint_message = STRINGS["result.printing"]
        self.worker.submit(lambda: self._print(msg_id, lang), self._after_reprint)

    def _print(self, msg_id: str, lang: str) -> Text:
        from terminal.ui import receipt_render as rr

        if self.receipts_dir is None or self.receipt_fonts is None:
            return STRINGS["result.no_receipts_dir"]
        receipt = self.backend.receipt(msg_id)
        if receipt is None:
            return STRINGS["result.no_receipt"]
        image = rr.render_receipt(receipt, self.receipt_fonts, lang)
        path = rr.save_receipt(image, self.receipts_dir, receipt)
        self.last_receipt = path
        where = _shown_path(path)
        if not self.printer:
            return text("result.saved", path=where)
        try:
            rr.print_png(path, self.printer)
        except rr.PrintError as exc:
            return text("result.print_failed", error=exc, path=where)
        return STRINGS["result.printed"]

    def _after_print(self, answer: object) -> None:
        self.print_message = answer if isinstance(answer, Text) else Text(str(answer), str(answer))

    def _after_reprint(self, answer: object) -> None:
        self.reprint_message = answer if isinstance(answer, Text) else Text(str(answer), str(answer))

    # --- helpers the .kv files call ---------------------------------------------------------------

    def say(self, text: Text | None, lang: str) -> str:
        return pick(text, lang)

    def close(self) -> None:
        self._closed = True
        self.worker.stop()


def _shown_path(path: Path) -> str:
    """Where a receipt went, as the cashier (or the demo's user) can find it: relative to the
    working directory when it lies below it, else absolute."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def _pin_text(tries_left: int, locked_until: float, now: float) -> Text:
    if locked_until > now:
        minutes = max(1, int((locked_until - now + 59) // 60))
        return text("pin.locked", minutes=minutes)
    return text("pin.wrong", n=tries_left)


def _answer_text(answer: object, now: float) -> Text | None:
    if isinstance(answer, PinAnswer):
        if answer.accepted:
            return None
        if answer.tries_left is not None:
            return _pin_text(answer.tries_left, answer.locked_until, now)
        return answer.message or WRONG_PIN
    if isinstance(answer, Exception):
        return text("msg.error", error=answer)
    return None


def _problem_text(view: ScreenView) -> Text | None:
    if view.journal_problem is not None:
        return view.journal_problem
    if view.gateway is GatewayState.DISABLED:
        return STRINGS["problem.device_disabled"]
    if view.gateway is GatewayState.UNREACHABLE:
        return STRINGS["problem.gateway_unreachable"]
    return None


def _case_row(case: NeedsPersonCase) -> dict[str, object]:
    sign = STRINGS["sign.refund"].zh if case.direction is Direction.REFUND else "+"
    return {
        "order_no": case.order_no,
        "amount": f"{sign}{display_yuan(case.amount_fen)}",
        "refund": case.direction is Direction.REFUND,
        "message": case.message,
        "channel": CHANNEL_NAME[case.channel] if case.channel else Text("", ""),
        "since": time.strftime("%H:%M", time.localtime(case.since)),
    }


def _history_row(row: object) -> dict[str, object]:
    assert isinstance(row, HistoryEntry)
    sign = STRINGS["sign.refund"].zh if row.direction is Direction.REFUND else "+"  # U+2212, as on the amount screens
    return {
        "order_no": row.order_no,
        "time": time.strftime("%H:%M:%S", time.localtime(row.finished_at)),
        "amount": f"{sign}{display_yuan(row.amount_fen)}",
        "refund": row.direction is Direction.REFUND,
        "status_key": f"status.{row.pay_status.value}",
        "ok": row.pay_status in (PayStatus.SUCCESS, PayStatus.REFUNDED),
        "channel": CHANNEL_NAME[row.channel] if row.channel else Text("", ""),
    }
