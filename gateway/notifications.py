"""Alipay async notifications (异步通知) at the gateway: verified, then applied to the ledger as a second
source beside the queries.

Alipay POSTs a form to the notify_url given with alipay.trade.pay whenever the trade changes (paid,
closed, refunded) and repeats it until it reads the body `success`. So:
- the form is read strictly (UTF-8, no repeated field);
- the trade is looked up by out_trade_no (an unknown one: `unknown_payment`, logged without the form);
- the RSA2 signature (every field but sign and sign_type, sorted, `&`-joined) must verify with the Alipay
  key of the hospital's settings (public key, or the Alipay public certificates in certificate mode),
  and app_id and amount must be that payment's: else `bad_signature` / `notification_mismatch`;
- TRADE_SUCCESS / TRADE_FINISHED settle a collection under way as succeeded; TRADE_CLOSED settles one
  under way (or being reversed) as closed; a refund (out_biz_no + refund_fee + gmt_refund) settles our
  refund of that out_refund_no as succeeded. A state already reached changes nothing (a duplicate, or
  the query got there first). A notification that contradicts a final state (paid after failed) changes
  nothing either, raises a `notification_conflict` alarm (Alipay's repeats are counted on it) and is
  not acknowledged: Alipay sends it again while a person checks the trade;
- `success` is answered only after the ledger has committed.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass

from protocol.amount import parse_yuan
from protocol.errors import ProtocolError
from protocol.messages import PayChannel

from gateway.alarms import AlarmKind, Alarms
from gateway.channel_clients import ChannelFactory
from gateway.errors import GatewayCode, GatewayError
from gateway.ledger import Ledger, PaymentState, RefundState

log = logging.getLogger(__name__)
ACK = b"success"
PATH_ALIPAY = "/v1/notify/alipay"
MAX_FORM_BYTES = 16 * 1024

_PAID = ("TRADE_SUCCESS", "TRADE_FINISHED")


@dataclass(frozen=True, slots=True)
class Applied:
    """What a notification did: `change` is None when the ledger already said so (a duplicate)."""

    out_trade_no: str
    change: str | None


def parse_form(body: bytes) -> dict[str, str]:
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise GatewayError(GatewayCode.BAD_REQUEST, "an Alipay notification is a UTF-8 form (application/x-www-form-urlencoded)") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise GatewayError(GatewayCode.BAD_REQUEST, "a field of the notification is repeated")
    return form


class AlipayNotifications:
    def __init__(self, ledger: Ledger, channels: ChannelFactory, alarms: Alarms) -> None:
        self.ledger = ledger
        self.channels = channels
        self.alarms = alarms

    def handle(self, body: bytes) -> Applied:
        form = parse_form(body)
        out_trade_no = form.get("out_trade_no", "")
        payment = self.ledger.find_payment(out_trade_no)  # unknown_payment
        if payment is None or payment.channel is not PayChannel.ALIPAY:
            log.warning("alipay notification for a trade we do not know (%r); not acknowledged", out_trade_no[:64])
            raise GatewayError(GatewayCode.UNKNOWN_PAYMENT, f"no Alipay collection {out_trade_no[:64]!r} at this gateway")
        client = self.channels.alipay(payment.hospital_id)
        if not client.verify_notification(form):
            log.warning("alipay notification for %s (hospital %s): the signature does not verify; ignored", out_trade_no, payment.hospital_id)
            raise GatewayError(GatewayCode.BAD_SIGNATURE, "the notification's signature does not verify with the hospital's Alipay key")
        if form.get("app_id") != client.config.app_id:
            raise self._mismatch(out_trade_no, "app_id", "is not the app this hospital pays with")
        try:
            total = parse_yuan(form.get("total_amount"))
        except ProtocolError:
            raise self._mismatch(out_trade_no, "total_amount", "is not an amount") from None
        if total != payment.amount_fen:
            raise self._mismatch(out_trade_no, "total_amount", f"is {total} fen, the collection {payment.amount_fen}")
        status = form.get("trade_status", "")
        hospital = payment.hospital_id
        if form.get("out_biz_no") and form.get("gmt_refund"):
            return self._refund(form, payment.payment_id, hospital, out_trade_no)
        moves_from: tuple[PaymentState, ...]
        if status in _PAID:
            target = PaymentState.SUCCEEDED
            moves_from = (PaymentState.PAYING,)
        elif status == "TRADE_CLOSED":
            target = PaymentState.CLOSED
            moves_from = (PaymentState.PAYING, PaymentState.REVERSING)
        else:
            return Applied(out_trade_no, None)  # WAIT_BUYER_PAY: nothing to record
        if payment.state is target:
            return Applied(out_trade_no, None)
        if payment.state not in moves_from:
            if payment.state is PaymentState.REVERSING or target is PaymentState.CLOSED:
                return Applied(out_trade_no, None)  # the reversal under way, or a later refund, decides; queries confirm
            log.error("alipay notification says %s %s but the ledger has it %s: left for the queries and a person", out_trade_no, status,
                      payment.state.value)
            self.alarms.raise_alarm(hospital_id=hospital, kind=AlarmKind.COLLECT, reason="notification_conflict", reference=out_trade_no,
                                    message=f"Alipay notified {status}; the gateway has the collection {payment.state.value}",
                                    order_no=payment.order_no, channel=PayChannel.ALIPAY.value, amount_fen=payment.amount_fen,
                                    device_id=payment.device_id)
            raise GatewayError(GatewayCode.BAD_TRANSITION, f"collection {out_trade_no} is {payment.state.value}; Alipay says {status}")
        settled = self.ledger.settle_payment(out_trade_no, hospital_id=hospital, state=target,
                                             channel_txn_id=form.get("trade_no") or None, result_code=status)
        log.info("alipay notification: %s -> %s", out_trade_no, settled.state.value)
        return Applied(out_trade_no, settled.state.value)

    def _refund(self, form: dict[str, str], payment_id: int, hospital: str, out_trade_no: str) -> Applied:
        out_refund_no = form["out_biz_no"]
        refund = self.ledger.refund(out_refund_no, hospital_id=hospital)  # unknown_refund
        if refund.payment_id != payment_id:
            raise self._mismatch(out_trade_no, "out_biz_no", "is a refund of another collection")
        try:
            refunded_total = parse_yuan(form.get("refund_fee"))
        except ProtocolError:
            raise self._mismatch(out_trade_no, "refund_fee", "is not an amount") from None
        if refunded_total < refund.amount_fen:
            # refund_fee is the trade's refunded total: it holds at least this refund.
            raise self._mismatch(out_trade_no, "refund_fee", f"({refunded_total} fen) is less than refund {out_refund_no}")
        if refund.state is RefundState.SUCCEEDED:
            return Applied(out_trade_no, None)
        if refund.state is RefundState.FAILED:
            log.error("alipay notification says refund %s moved money but the ledger has it failed: left for a person", out_refund_no)
            self.alarms.raise_alarm(hospital_id=hospital, kind=AlarmKind.REFUND, reason="notification_conflict", reference=out_refund_no,
                                    message=f"Alipay notified refund {out_refund_no} made (refund_fee {form.get('refund_fee')}); "
                                            "the gateway has it failed", channel=PayChannel.ALIPAY.value, amount_fen=refund.amount_fen,
                                    device_id=refund.device_id)
            raise GatewayError(GatewayCode.BAD_TRANSITION, f"refund {out_refund_no} is failed; Alipay says it was made")
        self.ledger.settle_refund(out_refund_no, hospital_id=hospital, state=RefundState.SUCCEEDED, channel_refund_id=out_refund_no)
        log.info("alipay notification: refund %s -> succeeded", out_refund_no)
        return Applied(out_trade_no, "refund_succeeded")

    @staticmethod
    def _mismatch(out_trade_no: str, field: str, why: str) -> GatewayError:
        log.warning("alipay notification for %s: %s %s; ignored", out_trade_no, field, why)
        return GatewayError(GatewayCode.NOTIFICATION_MISMATCH, f"the notification's {field} {why}")
