"""The one place the screens meet the terminal service: `ServiceBackend` forwards the cashier's
actions to terminal.service.TerminalService and hands its views (terminal.view.ScreenView, the one
view model) to the screens, with the gateway's state from terminal.gateway_watch filled in.

The service calls observers on whatever thread made the change; we keep the newest view (by
`revision`) and only then tell the view-model, which re-reads it on the Kivy main thread, so the
main thread never waits for the service's lock while a view is drawn.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from importlib import metadata
from typing import Callable
from urllib.parse import urlsplit

from terminal.gateway_client import GatewayChannelClient
from terminal.gateway_watch import GatewayWatch
from terminal.receipt import Receipt
from terminal.service import PinReply, PinStatus, ScanStatus, TerminalService
from terminal.texts import STRINGS, Text, text
from terminal.ui.model import About, PinAnswer
from terminal.history import DayTotals, HistoryEntry
from terminal.view import NeedsPersonCase, ScreenView

log = logging.getLogger(__name__)

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


class ServiceBackend:
    """model.Backend over a running TerminalService."""

    def __init__(self, service: TerminalService, *, firmware_version: str | None = None, probe_network: bool = True) -> None:
        self.service = service
        self.config = service.config
        self.firmware_version = firmware_version or app_version()
        self._lock = threading.Lock()
        self._latest: ScreenView = service.view()
        self._callbacks: list[Callable[[], None]] = []
        urls = [self.config.gateway.url] if self.config.gateway is not None else []  # the POS reaches the channels through it
        self._env = channel_environment(urls)
        self._sandbox = is_sandbox(urls)
        self.probe_network = probe_network  # a TCP probe in the background (replies are read either way)
        self.watch = GatewayWatch(urls[0] if urls else None, self._changed)
        self._stop_watching = [client.connection.add_reply_observer(self.watch.reply)
                               for client in service.clients.values() if isinstance(client, GatewayChannelClient)]
        self._remove_observer = service.add_observer(self._observe)
        if probe_network:
            self.watch.start()

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

    def view(self) -> ScreenView:
        with self._lock:
            latest = self._latest
        return dataclasses.replace(latest, gateway=self.watch.state)

    def totals(self) -> DayTotals:
        return self.service.totals()

    def needs_person(self) -> list[NeedsPersonCase]:
        return self.service.needs_person()

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

    def reset_pin_lockout(self, admin_pin: str) -> PinAnswer:
        return self._pin_answer(self.service.reset_pin_lockout(admin_pin))

    @staticmethod
    def _pin_answer(reply: PinReply) -> PinAnswer:
        if reply.status is PinStatus.ACCEPTED:
            return PinAnswer(True, reply.message)
        if reply.status in (PinStatus.WRONG, PinStatus.LOCKED) and reply.tries_left is not None:
            return PinAnswer(False, reply.message, reply.tries_left, reply.locked_until or 0.0)
        return PinAnswer(False, reply.message)

    def decline_refund(self) -> None:
        self.service.decline_refund()

    def recheck(self) -> None:
        self.service.recheck()

    def dismiss_result(self) -> None:
        self.service.dismiss()

    def history(self, search: str = "") -> list[HistoryEntry]:
        return self.service.history(order_no=search or None)

    def about(self) -> About:
        c = self.config
        return About(c.device.device_id, self.firmware_version, c.device.model, c.device.serial_no,
                     Text(c.merchant_name, c.merchant_name_en or c.merchant_name), self._env, self._sandbox,
                     c.admin_pin_hash is not None)

    def receipt(self, msg_id: str) -> Receipt | None:
        return self.service.receipt(msg_id)

    def close(self) -> None:
        """Stop the gateway watch and stop listening to the service (a replaced backend stays silent)."""
        self.watch.stop()
        for stop in self._stop_watching:
            stop()
        self._remove_observer()
        self._callbacks.clear()
