"""The one place the screens meet the terminal service: `ServiceBackend` turns the service's
cashier side (terminal.service.TerminalService, terminal.view.ScreenView) into the UI's model
(terminal.ui.model) and forwards the cashier's actions.

The service calls observers on whatever thread made the change; we keep the newest view (by
`revision`) and only then tell the view-model, which re-reads it on the Kivy main thread, so the
main thread never waits for the service's lock while a view is drawn.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from importlib import metadata
from typing import Callable
from urllib.parse import urlsplit

from protocol.messages import PayStatus
from terminal.receipt import Receipt
from terminal.service import PinStatus, ScanStatus, TerminalService
from terminal.texts import STRINGS, Text, text
from terminal.ui.model import (About, CashierView, ChannelTotal, HistoryRow, Item, LinkState, NetState, Order, Outcome,
                               PinAnswer, PinState, Phase)
from terminal.view import Screen as ServiceScreen
from terminal.view import ScreenView

log = logging.getLogger(__name__)

_PHASE = {
    ServiceScreen.IDLE: Phase.IDLE,
    ServiceScreen.AWAITING_SCAN: Phase.AWAITING_SCAN,
    ServiceScreen.DECLINED: Phase.AWAITING_SCAN,
    ServiceScreen.PAYING: Phase.PAYING,
    ServiceScreen.AWAITING_SUPERVISOR: Phase.AWAITING_SUPERVISOR,
    ServiceScreen.REFUNDING: Phase.REFUNDING,
    ServiceScreen.RESULT: Phase.RESULT,
}
# How often the network probe tries to reach the payment channels' hosts.
NETWORK_PROBE_INTERVAL_S = 30.0
NETWORK_PROBE_TIMEOUT_S = 3.0
PRODUCTION_HOSTS = ("api.mch.weixin.qq.com", "api2.mch.weixin.qq.com", "openapi.alipay.com")


def app_version() -> str:
    try:
        return metadata.version("his-smartpos")
    except metadata.PackageNotFoundError:
        return "dev"


def channel_endpoints(channels: object) -> list[str]:
    """The base URLs in the configuration's "channels" section (wechat.base_url, alipay.gateway)."""
    urls: list[str] = []
    if isinstance(channels, dict):
        for section, key in (("wechat", "base_url"), ("alipay", "gateway")):
            entry = channels.get(section)
            if isinstance(entry, dict) and isinstance(entry.get(key), str):
                urls.append(entry[key])
    return urls


def is_sandbox(urls: list[str]) -> bool:
    """Every payment channel is on this machine: the channel sandbox, no real money moves."""
    hosts = {urlsplit(u).hostname for u in urls if urlsplit(u).hostname}
    return bool(hosts) and hosts <= {"127.0.0.1", "localhost", "::1"}


def channel_environment(urls: list[str]) -> Text:
    hosts = sorted({urlsplit(u).netloc for u in urls if urlsplit(u).netloc})
    if not hosts:
        return STRINGS["env.none"]
    if is_sandbox(urls):
        return text("env.sandbox", hosts=", ".join(hosts))
    if all(h.split(":")[0] in PRODUCTION_HOSTS for h in hosts):
        return STRINGS["env.production"]
    return text("env.other", hosts=", ".join(hosts))


class NetworkProbe:
    """Can this device open a TCP connection to its payment channels? Checked in the background."""

    def __init__(self, urls: list[str], on_change: Callable[[], None]) -> None:
        self.state = NetState.UNKNOWN
        self._targets = []
        for url in urls:
            parts = urlsplit(url)
            if parts.hostname:
                self._targets.append((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pos-ui-netprobe", daemon=True)

    def start(self) -> None:
        if self._targets:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            state = NetState.OK if all(self._reach(t) for t in self._targets) else NetState.DOWN
            if state is not self.state:
                self.state = state
                self._on_change()
            self._stop.wait(NETWORK_PROBE_INTERVAL_S)

    @staticmethod
    def _reach(target: tuple[str, int]) -> bool:
        try:
            with socket.create_connection(target, timeout=NETWORK_PROBE_TIMEOUT_S):
                return True
        except OSError:
            return False


class ServiceBackend:
    """model.Backend over a running TerminalService."""

    def __init__(self, service: TerminalService, *, firmware_version: str | None = None, probe_network: bool = True) -> None:
        self.service = service
        self.config = service.config
        self.firmware_version = firmware_version or app_version()
        self._lock = threading.Lock()
        self._latest: ScreenView = service.view()
        self._callbacks: list[Callable[[], None]] = []
        self._totals: tuple[ChannelTotal, ...] = ()
        self._totals_key: object = object()
        self._deadline_total: tuple[str | None, float] = (None, 0.0)
        urls = [self.config.gateway.url] if self.config.gateway is not None else []  # the POS reaches the channels through it
        self._env = channel_environment(urls)
        self._sandbox = is_sandbox(urls)
        self.probe = NetworkProbe(urls, self._changed) if probe_network else None
        self._remove_observer = service.add_observer(self._observe)
        if self.probe is not None:
            self.probe.start()

    # --- service -> UI ---------------------------------------------------------------------------

    def _observe(self, view: ScreenView) -> None:
        with self._lock:
            if view.revision >= self._latest.revision:
                self._latest = view
        self._changed()

    def _changed(self) -> None:
        for callback in list(self._callbacks):
            callback()

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def view(self) -> CashierView:
        with self._lock:
            v = self._latest
        order = None
        if v.order_no is not None and v.direction is not None and v.amount_fen is not None:
            order = Order(v.order_no, v.direction, v.amount_fen, v.patient,
                          tuple(Item(i.name, i.qty, i.amount_fen) for i in v.items), v.channel, v.original)
        deadline = total = None
        if v.countdown_s is not None:
            deadline = time.time() + v.countdown_s  # the service's clock may be injected: keep only the interval
            key = f"{v.msg_id}:{v.deadline}"
            if self._deadline_total[0] != key:
                self._deadline_total = (key, max(1.0, float(int(v.countdown_s + 0.999))))
            total = self._deadline_total[1]
        warning = v.notice is not None or v.screen is ServiceScreen.DECLINED or v.needs_person
        pin = None
        if v.pin_tries_left is not None:
            pin = PinState(v.pin_tries_left, self.config.supervisor.max_wrong_tries, v.pin_locked_until or 0.0)
        return CashierView(
            phase=_PHASE[v.screen], order=order, message=v.notice or v.message, warning=warning,
            deadline=deadline, deadline_total_s=total, can_cancel=v.can_cancel, outcome=self._outcome(v),
            needs_person=v.needs_person, can_recheck=v.can_recheck,
            pin=pin, link=LinkState.UP if v.link_up else LinkState.DOWN,
            network=self.probe.state if self.probe is not None else NetState.UNKNOWN,
            queued=v.queued, totals=self._day_totals(v),
        )

    def _outcome(self, v: ScreenView) -> Outcome | None:
        r = v.last_result
        if r is None:
            return None
        reason = None if r.ok and r.error_code is None else r.message
        return Outcome(r.order_no, r.direction, r.amount_fen, r.pay_status, r.finished_at, r.channel, r.pay_order_no,
                       reason, r.error_code, msg_id=r.msg_id)

    def _day_totals(self, v: ScreenView) -> tuple[ChannelTotal, ...]:
        # Re-read the day's totals only when something finished (or the day changed), not per view.
        key = (None if v.last_result is None else (v.last_result.msg_id, v.last_result.finished_at), time.strftime("%Y%m%d"))
        if key != self._totals_key:
            day = self.service.totals()
            self._totals = tuple(ChannelTotal(c.channel, c.collected_count + c.refunded_count, c.collected_fen, c.refunded_fen)
                                 for c in day.channels)
            self._totals_key = key
        return self._totals

    # --- UI -> service ---------------------------------------------------------------------------

    def scan(self, code: str) -> Text | None:
        reply = self.service.scan(code)
        return None if reply.status is ScanStatus.ACCEPTED else reply.message

    def cancel(self) -> None:
        self.service.cancel()

    def confirm_refund(self, pin: str) -> PinAnswer:
        return self._pin_answer(self.service.confirm_refund(pin))

    def check_admin_pin(self, pin: str) -> PinAnswer:
        return self._pin_answer(self.service.check_admin_pin(pin))

    def _pin_answer(self, reply: object) -> PinAnswer:
        status, message = reply.status, reply.message  # type: ignore[attr-defined]
        if status is PinStatus.ACCEPTED:
            return PinAnswer(True, message)
        if status in (PinStatus.WRONG, PinStatus.LOCKED) and reply.tries_left is not None:  # type: ignore[attr-defined]
            pin = PinState(reply.tries_left, self.config.supervisor.max_wrong_tries,  # type: ignore[attr-defined]
                           reply.locked_until or 0.0, wrong=True)  # type: ignore[attr-defined]
            return PinAnswer(False, message, pin)
        return PinAnswer(False, message)

    def decline_refund(self) -> None:
        self.service.decline_refund()

    def recheck(self) -> None:
        self.service.recheck()

    def dismiss_result(self) -> None:
        self.service.dismiss()

    def history(self, search: str = "") -> list[HistoryRow]:
        rows = []
        for e in self.service.history(order_no=search or None):
            reason = None if e.pay_status in (PayStatus.SUCCESS, PayStatus.REFUNDED) and e.error_code is None else e.message
            rows.append(HistoryRow(e.order_no, e.direction, e.amount_fen, e.pay_status, e.finished_at, e.channel,
                                   e.pay_order_no, reason, e.msg_id))
        return rows

    def about(self) -> About:
        c = self.config
        return About(c.device.device_id, self.firmware_version, c.device.model, c.device.serial_no,
                     Text(c.merchant_name, c.merchant_name_en or c.merchant_name), self._env, self._sandbox,
                     c.admin_pin_hash is not None)

    def receipt(self, msg_id: str) -> Receipt | None:
        return self.service.receipt(msg_id)

    def close(self) -> None:
        """Stop the network probe and stop listening to the service (a replaced backend stays silent)."""
        if self.probe is not None:
            self.probe.stop()
        self._remove_observer()
        self._callbacks.clear()
