"""The sandbox's Alipay async notifications (异步通知): signed forms POSTed to the trade's notify_url.

As Alipay does: `application/x-www-form-urlencoded`, the notification's fields plus notify_time,
notify_id, sign_type=RSA2 and `sign` (RSA2 over every other field but sign and sign_type, sorted, raw
values `&`-joined, signed with the "Alipay" private key). The receiver must answer the seven bytes
`success`; anything else (an error, a timeout, another body) is tried again, here after
RETRY_DELAYS_S (Alipay spaces its retries over 25 hours: 4m, 10m, 10m, 1h, 2h, 6h, 15h). Every
delivery is kept for the tester (`GET /sandbox/v1/alipay/notifications`), with its signed form, so a
test can also send one again by hand (a duplicate).
"""

from __future__ import annotations

import datetime
import logging
import secrets
import threading
from dataclasses import dataclass, field

import requests
from Crypto.PublicKey import RSA

from firmware_sim.sandbox.reply import SignatureFault, corrupt_signature
from firmware_sim.sandbox.store import SHANGHAI
from gateway.channels.alipay_codec import notify_sign_content, rsa2_sign

log = logging.getLogger(__name__)
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
POST_TIMEOUT_S = 5.0


@dataclass
class Delivery:
    url: str
    form: dict[str, str]
    attempts: int = 0
    answered: str | None = None  # the first 64 characters of the last answer (or the error)
    delivered: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def as_json(self) -> dict[str, object]:
        return {"url": self.url, "form": self.form, "attempts": self.attempts, "answered": self.answered, "delivered": self.delivered}


class Notifier:
    def __init__(self, alipay_private_key: RSA.RsaKey, stopping: threading.Event, *, retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S) -> None:
        self._key = alipay_private_key
        self._stopping = stopping
        self._delays = retry_delays_s
        self._lock = threading.Lock()
        self.deliveries: list[Delivery] = []

    def sign(self, params: dict[str, str]) -> dict[str, str]:
        form = {k: v for k, v in params.items() if v != ""}
        form.setdefault("notify_time", datetime.datetime.now(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"))
        form.setdefault("notify_id", secrets.token_hex(16))
        form["sign_type"] = "RSA2"
        form["sign"] = rsa2_sign(notify_sign_content(form), self._key)
        return form

    def send(self, url: str, params: dict[str, str], fault: SignatureFault = SignatureFault.OK) -> Delivery:
        """Sign and deliver (with retries) one notification. `fault`: the same signature fault as the
        replies' (a gateway that cannot verify Alipay's replies cannot verify its notifications either:
        they are signed with the same key)."""
        form = self.sign(params)
        if fault is SignatureFault.CORRUPT:
            form["sign"] = corrupt_signature(form["sign"])
        elif fault is SignatureFault.TAMPER:
            form["subject"] = form.get("subject", "") + " "
        elif fault is SignatureFault.MISSING:
            del form["sign"]
        delivery = Delivery(url, form)
        with self._lock:
            self.deliveries.append(delivery)
        threading.Thread(target=self._deliver, args=(delivery,), name="alipay-notify", daemon=True).start()
        return delivery

    def listing(self, out_trade_no: str | None = None) -> list[dict[str, object]]:
        with self._lock:
            found = [d for d in self.deliveries if out_trade_no is None or d.form.get("out_trade_no") == out_trade_no]
        return [d.as_json() for d in found]

    def _deliver(self, delivery: Delivery) -> None:
        for delay in (0.0, *self._delays):
            if delay and self._stopping.wait(delay):
                break
            delivery.attempts += 1
            try:
                reply = requests.post(delivery.url, data=delivery.form, timeout=POST_TIMEOUT_S)
                delivery.answered = reply.text[:64]
                if reply.status_code == 200 and reply.text.strip() == "success":
                    delivery.delivered = True
                    break
            except requests.RequestException as exc:
                delivery.answered = type(exc).__name__
            log.info("alipay notification for %s not acknowledged (%s); will retry", delivery.form.get("out_trade_no"), delivery.answered)
        delivery.done.set()
