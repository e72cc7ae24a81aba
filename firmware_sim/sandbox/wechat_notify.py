"""The sandbox's WeChat Pay refund notifications (退款结果通知), sent to the refund request's notify_url.

API v2: an XML document with the merchant's ids and `req_info` (the refund's fields in a `<root>`
document, AES-256-ECB under the MD5 of the API key); the receiver answers `<xml><return_code>SUCCESS
</return_code>...`. APIv3: a JSON document whose `resource` is the refund, AEAD_AES_256_GCM under the
APIv3 key, signed by the platform (Wechatpay-* headers); the receiver answers 200 or 204.

Each notification is sent from a thread of its own, again after a failure (WeChat retries for hours;
the sandbox a few times, `RETRY_DELAYS_S`), and is recorded: the control API lists them and sends one
again on request (WeChat sends duplicates too; a receiver must not apply one twice).
"""

from __future__ import annotations

import datetime
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

import requests

from firmware_sim.sandbox.store import SHANGHAI, Order, Refund
from gateway.channels import wechat_v3_codec as v3
from gateway.channels.wechat_codec import parse_xml, to_xml

log = logging.getLogger(__name__)
# The sandbox's retry schedule (WeChat's own: 15 s, 15 s, 30 s, 3 min, 10 min, 20 min, 30 min ... over 24 h).
RETRY_DELAYS_S = (0.0, 0.5, 2.0, 5.0)
MAX_KEPT = 1000


@dataclass
class Delivery:
    delivery_id: int
    url: str
    kind: str  # "v2" or "v3"
    out_refund_no: str
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    attempts: int = 0
    delivered: bool = False
    last_status: int | None = None

    def describe(self) -> dict[str, object]:
        return {"id": self.delivery_id, "url": self.url, "kind": self.kind, "out_refund_no": self.out_refund_no,
                "attempts": self.attempts, "delivered": self.delivered, "last_status": self.last_status}


def _time(ts: float, fmt: str) -> str:
    return datetime.datetime.fromtimestamp(ts, SHANGHAI).strftime(fmt)


def _root_xml(fields: dict[str, str]) -> bytes:
    """req_info's plaintext is a `<root>` document (not `<xml>`)."""
    return b"<root>" + to_xml(fields)[len(b"<xml>"):-len(b"</xml>")] + b"</root>"


class RefundNotifier:
    def __init__(self, *, platform_key: v3.PrivateKey | None = None, platform_serial: str = "",
                 retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S, stopping: threading.Event | None = None) -> None:
        self.platform_key = platform_key
        self.platform_serial = platform_serial
        self.retry_delays_s = retry_delays_s
        self.stopping = stopping or threading.Event()
        self._lock = threading.Lock()
        self._deliveries: dict[int, Delivery] = {}
        self._next_id = 1

    # -- building ----------------------------------------------------------------------------

    def refund_done_v2(self, url: str, ids: dict[str, str], api_key: str, refund: Refund, order: Order) -> Delivery:
        plain = {
            "transaction_id": order.txn_id, "out_trade_no": order.out_trade_no, "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no, "total_fee": str(order.total_fen), "settlement_total_fee": str(order.total_fen),
            "refund_fee": str(refund.amount_fen), "settlement_refund_fee": str(refund.amount_fen), "refund_status": "SUCCESS",
            "success_time": _time(refund.created_at, "%Y-%m-%d %H:%M:%S"), "refund_recv_accout": "支付用户零钱",
            "refund_account": "REFUND_SOURCE_UNSETTLED_FUNDS", "refund_request_source": "API",
        }
        body = to_xml({"return_code": "SUCCESS", **ids, "nonce_str": secrets.token_hex(16),
                       "req_info": v3.req_info_encrypt(api_key, _root_xml(plain))})
        return self._send(url, "v2", refund.out_refund_no, body, {"Content-Type": "text/xml; charset=utf-8"})

    def refund_done_v3(self, url: str, ids: dict[str, str], apiv3_key: str, refund: Refund, order: Order,
                       serial: str | None = None, key: v3.PrivateKey | None = None) -> Delivery:
        assert self.platform_key is not None
        resource = {
            **ids, "out_trade_no": order.out_trade_no, "transaction_id": order.txn_id, "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id, "refund_status": "SUCCESS",
            "success_time": _time(refund.created_at, "%Y-%m-%dT%H:%M:%S+08:00"), "user_received_account": "支付用户零钱",
            "amount": {"total": order.total_fen, "refund": refund.amount_fen, "payer_total": order.total_fen,
                       "payer_refund": refund.amount_fen},
        }
        nonce = secrets.token_hex(6)  # 12 characters, as WeChat's
        ciphertext = v3.aead_encrypt(apiv3_key, nonce, "refund", json.dumps(resource, ensure_ascii=False).encode("utf-8"))
        created = _time(time.time(), "%Y-%m-%dT%H:%M:%S+08:00")
        document = {"id": secrets.token_hex(18), "create_time": created, "resource_type": "encrypt-resource",
                    "event_type": "REFUND.SUCCESS", "summary": "退款成功",
                    "resource": {"original_type": "refund", "algorithm": "AEAD_AES_256_GCM", "ciphertext": ciphertext,
                                 "associated_data": "refund", "nonce": nonce}}
        text = json.dumps(document, ensure_ascii=False)
        timestamp, sig_nonce = str(int(time.time())), secrets.token_hex(16)
        headers = {"Content-Type": "application/json", v3.H_TIMESTAMP: timestamp, v3.H_NONCE: sig_nonce,
                   v3.H_SERIAL: serial or self.platform_serial, v3.H_SIGNATURE_TYPE: v3.SIGNATURE_TYPE,
                   v3.H_SIGNATURE: v3.rsa_sign(v3.response_message(timestamp, sig_nonce, text), key or self.platform_key)}
        return self._send(url, "v3", refund.out_refund_no, text.encode("utf-8"), headers)

    # -- sending -----------------------------------------------------------------------------

    def _send(self, url: str, kind: str, out_refund_no: str, body: bytes, headers: dict[str, str]) -> Delivery:
        with self._lock:
            delivery = Delivery(self._next_id, url, kind, out_refund_no, body, headers)
            self._next_id += 1
            self._deliveries[delivery.delivery_id] = delivery
            while len(self._deliveries) > MAX_KEPT:
                del self._deliveries[min(self._deliveries)]
        threading.Thread(target=self._deliver, args=(delivery,), name="wechat-notify", daemon=True).start()
        return delivery

    def resend(self, delivery_id: int) -> Delivery | None:
        """Send a recorded notification once more, as WeChat does when it did not see the answer."""
        with self._lock:
            delivery = self._deliveries.get(delivery_id)
        if delivery is not None:
            self._attempt(delivery)
        return delivery

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries.values())

    def _deliver(self, delivery: Delivery) -> None:
        for delay in self.retry_delays_s:
            if delay and self.stopping.wait(delay):
                return
            if self._attempt(delivery):
                return
        log.info("wechat notification %d (%s) not acknowledged after %d attempts", delivery.delivery_id, delivery.kind, delivery.attempts)

    def _attempt(self, delivery: Delivery) -> bool:
        delivery.attempts += 1
        try:
            response = requests.post(delivery.url, data=delivery.body, headers=delivery.headers, timeout=5, allow_redirects=False)
        except requests.RequestException as exc:
            log.info("wechat notification %d to %s: %s", delivery.delivery_id, delivery.url, exc.__class__.__name__)
            return False
        delivery.last_status = response.status_code
        ok = response.status_code in (200, 204)
        if ok and delivery.kind == "v2":
            try:
                ok = parse_xml(response.content).get("return_code") == "SUCCESS"
            except ValueError:
                ok = False
        delivery.delivered = delivery.delivered or ok
        return ok
