"""WeChat Pay refund notifications (退款结果通知): verified, then applied to the ledger as a second
source beside the refund queries.

    POST /v1/notify/wechat/{hospital_id}     the notify_url the gateway gives WeChat Pay in each refund
    (Alipay's notifications: gateway.notifications)

Both API versions arrive there; the body says which:
- API v2 (XML): `req_info` is the refund, AES-256-ECB under the MD5 of the API key. Nothing else
  authenticates it, so a req_info that opens with the hospital's (or its provider's) API key and
  names the hospital's merchant ids is believed; one that does not open is refused.
- APIv3 (JSON): the platform's signature (Wechatpay-Signature over timestamp, nonce and body, with
  the key named by Wechatpay-Serial) must verify with a platform key the merchant settings hold (or a
  platform certificate the gateway downloaded for the signing merchant), and
  the resource must open (AEAD_AES_256_GCM under the APIv3 key, its nonce and associated_data).

Applying is idempotent: SUCCESS settles a `refunding` refund as succeeded, CLOSED as failed; the
same notification again (WeChat repeats them until answered) finds the refund already in that state
and changes nothing. A notification that contradicts a settled refund, or reports 退款异常
(CHANGE / ABNORMAL), raises an alarm for a person and changes nothing. A notification for a refund
the ledger does not know, or whose order, amount or merchant differ, is refused with a stable code
(`unknown_refund`, `notification_mismatch`, `bad_notification`) and logged with its references only:
never a key, never the decrypted document.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from protocol.amount import parse_fen, parse_fen_text
from protocol.errors import ProtocolError
from protocol.messages import PayChannel

from gateway.alarms import AlarmKind, Alarms
from gateway.channel_clients import WECHAT_NOTIFY_PREFIX
from gateway.channels import wechat_v3_codec as v3
from gateway.channels.wechat_codec import WeChatXmlError, parse_xml, to_xml
from gateway.errors import GatewayCode, GatewayError
from gateway.ledger import Ledger, RefundState
from gateway.tenancy import Directory, Mode
from gateway.wechat_certificates import DatabaseCertificateStore

log = logging.getLogger(__name__)
PREFIX = WECHAT_NOTIFY_PREFIX
_HOSPITAL = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)



def _notified_fen(value: object, parse: Callable[..., int]) -> int | None:
    """The refunded fen a notification states, through the one parser of its form (v2 text, v3 JSON
    integer); None when it states none. A malformed amount is refused, not skipped: the amount is what
    the notification is checked against."""
    if value is None:
        return None
    try:
        return parse(value, what="the notification's refund amount")
    except ProtocolError as exc:
        raise GatewayError(GatewayCode.BAD_NOTIFICATION, str(exc)) from None

@dataclass(frozen=True, slots=True)
class RefundNotice:
    """What a notification says, once verified and opened."""

    out_trade_no: str
    out_refund_no: str
    status: str  # SUCCESS, CLOSED, CHANGE / ABNORMAL (v2 / v3 spelling of 退款异常)
    refund_fen: int | None
    refund_id: str | None


@dataclass(frozen=True, slots=True)
class _Keys:
    """The hospital's WeChat Pay settings that notifications are checked against (its own, or its provider's)."""

    secrets: Mapping[str, str]
    signer: str  # mch_id / mchid, or sp_mchid
    sub: str | None  # the sub-merchant, in service-provider mode


def _reply_v2(ok: bool, message: str) -> tuple[int, bytes, str]:
    return 200, to_xml({"return_code": "SUCCESS" if ok else "FAIL", "return_msg": message}), "text/xml; charset=utf-8"


def _reply_v3(ok: bool, code: str, message: str, status: int) -> tuple[int, bytes, str]:
    if ok:
        return 204, b"", "text/plain"
    return status, json.dumps({"code": "FAIL", "message": f"{code}: {message}"}, ensure_ascii=False).encode("utf-8"), "application/json"


_STATUS = {GatewayCode.UNKNOWN_HOSPITAL: 404, GatewayCode.UNKNOWN_REFUND: 404, GatewayCode.NO_MERCHANT: 404,
           GatewayCode.BAD_NOTIFICATION: 400, GatewayCode.NOTIFICATION_MISMATCH: 400}


class WeChatNotifications:
    def __init__(self, directory: Directory, ledger: Ledger, alarms: Alarms) -> None:
        self.directory = directory
        self.ledger = ledger
        self.alarms = alarms

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes, str]:
        """(HTTP status, body, content type) to answer WeChat Pay with."""
        hospital_id = path[len(PREFIX):]
        v2 = body.lstrip()[:1] == b"<"
        try:
            if _HOSPITAL.fullmatch(hospital_id) is None:
                raise GatewayError(GatewayCode.UNKNOWN_HOSPITAL, "the notify URL names no hospital")
            keys = self._keys(hospital_id)
            notice = self._open_v2(keys, body) if v2 else self._open_v3(keys, headers, body)
            result = self.apply(hospital_id, notice)
        except GatewayError as exc:
            log.warning("wechat %s refund notification for %s refused: %s", "v2" if v2 else "v3", hospital_id[:64], exc)
            return _reply_v2(False, exc.code.value) if v2 else _reply_v3(False, exc.code.value, exc.message, _STATUS.get(exc.code, 400))
        return _reply_v2(True, result) if v2 else _reply_v3(True, "", result, 204)

    # --- verifying and opening --------------------------------------------------------------------

    def _keys(self, hospital_id: str) -> _Keys:
        key = self.directory.merchant_key(hospital_id, PayChannel.WECHAT)  # unknown_hospital / no_merchant
        if self.directory.hospital(hospital_id).mode is Mode.SERVICE_PROVIDER:
            provider = self.directory.provider_key(PayChannel.WECHAT)
            return _Keys(provider.secrets, provider.merchant_id, key.merchant_id)
        return _Keys(key.secrets, key.merchant_id, None)

    def _open_v2(self, keys: _Keys, body: bytes) -> RefundNotice:
        try:
            outer = parse_xml(body)
        except WeChatXmlError as exc:
            raise GatewayError(GatewayCode.BAD_NOTIFICATION, f"not a WeChat Pay notification: {exc.args[0] if exc.args else exc}") from None
        api_key = keys.secrets.get("api_key")
        if not api_key:
            raise GatewayError(GatewayCode.BAD_NOTIFICATION, "a v2 notification, but the merchant settings hold no v2 API key")
        if outer.get("return_code") != "SUCCESS" or not outer.get("req_info"):
            raise GatewayError(GatewayCode.BAD_NOTIFICATION, "the notification carries no req_info")
        if outer.get("mch_id") != keys.signer or (outer.get("sub_mch_id") or None) != keys.sub:
            raise GatewayError(GatewayCode.NOTIFICATION_MISMATCH, "the notification is for another merchant")
        try:
            plain = v3.req_info_decrypt(api_key, outer["req_info"])
        except v3.WeChatV3Error:
            raise GatewayError(GatewayCode.BAD_NOTIFICATION, "req_info does not open with this merchant's API key") from None
        text = plain.strip()
        if not (text.startswith(b"<root>") and text.endswith(b"</root>")):
            raise GatewayError(GatewayCode.BAD_NOTIFICATION, "req_info is not a <root> document")
        try:
            fields = parse_xml(b"<xml>" + text[len(b"<root>"):-len(b"</root>")] + b"</xml>")
        except WeChatXmlError:
            raise GatewayError(GatewayCode.BAD_NOTIFICATION, "req_info is not well-formed") from None
        fen = _notified_fen(fields.get("refund_fee"), parse_fen_text)
        return RefundNotice(fields.get("out_trade_no", ""), fields.get("out_refund_no", ""), fields.get("refund_status", ""),
                            fen, fields.get("refund_id") or None)

    def _open_v3(self, keys: _Keys, headers: Mapping[str, str], body: bytes) -> RefundNotice:
        secrets = keys.secrets
        apiv3_key = secrets.get("apiv3_key")
        if not apiv3_key:
            raise GatewayError(GatewayCode.BAD_NOTIFICATION, "an APIv3 notification, but the merchant settings hold no APIv3 key")
        platform: dict[str, v3.PublicKey] = {}
        try:
            if secrets.get("platform_public_key_pem") and secrets.get("platform_public_key_id"):
                platform[secrets["platform_public_key_id"]] = v3.load_public_key(secrets["platform_public_key_pem"])
            if secrets.get("platform_certificate_pem"):
                pem = secrets["platform_certificate_pem"]
                platform[v3.certificate_serial(pem)] = v3.load_public_key(pem)
        except v3.WeChatV3Error as exc:
            raise GatewayError(GatewayCode.BAD_CONFIG, f"the WeChat Pay platform key in the merchant settings: {exc}") from None
        serial = headers.get(v3.H_SERIAL, "")
        if serial and serial not in platform:  # a platform certificate the gateway downloaded (gateway.wechat_certificates)
            held = DatabaseCertificateStore(self.directory.db, self.directory.vault, keys.signer).load()
            platform.update({c.serial_no: c.public_key() for c in held if c.serial_no == serial})
        signature, timestamp, nonce = headers.get(v3.H_SIGNATURE, ""), headers.get(v3.H_TIMESTAMP, ""), headers.get(v3.H_NONCE, "")
        key = platform.get(serial)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise GatewayError(GatewayCode.BAD_NOTIFICATION, "the notification is not UTF-8") from None
        if key is None or not signature or not v3.rsa_verify(v3.response_message(timestamp, nonce, text), signature, key):
            raise GatewayError(GatewayCode.BAD_NOTIFICATION, "the notification's signature does not verify with the platform key we hold"
                               + ("" if key is not None else f" (it names key {serial[:64]!r})"))
        try:
            document = json.loads(text)
            resource = document["resource"]
            if document.get("resource_type") != "encrypt-resource" or resource.get("algorithm") != "AEAD_AES_256_GCM":
                raise GatewayError(GatewayCode.BAD_NOTIFICATION, "the resource is not AEAD_AES_256_GCM")
            plain = v3.aead_decrypt(apiv3_key, str(resource["nonce"]), str(resource.get("associated_data") or ""), str(resource["ciphertext"]))
            refund = json.loads(plain.decode("utf-8"))
            if not isinstance(refund, dict):
                raise ValueError("not an object")
        except v3.WeChatV3Error:
            raise GatewayError(GatewayCode.BAD_NOTIFICATION, "the resource does not open with this merchant's APIv3 key") from None
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            raise GatewayError(GatewayCode.BAD_NOTIFICATION, "the notification is not a WeChat Pay refund notification") from None
        signer_field = "sp_mchid" if keys.sub is not None else "mchid"
        if refund.get(signer_field) != keys.signer or (keys.sub is not None and refund.get("sub_mchid") != keys.sub):
            raise GatewayError(GatewayCode.NOTIFICATION_MISMATCH, "the notification is for another merchant")
        amount = refund.get("amount")
        fen = _notified_fen(amount.get("refund") if isinstance(amount, dict) else None, parse_fen)
        return RefundNotice(str(refund.get("out_trade_no", "")), str(refund.get("out_refund_no", "")), str(refund.get("refund_status", "")),
                            fen, refund.get("refund_id") if isinstance(refund.get("refund_id"), str) else None)

    # --- applying ---------------------------------------------------------------------------------

    def apply(self, hospital_id: str, notice: RefundNotice) -> str:
        """Apply a verified notice to the ledger; what was done, for the reply and the log."""
        try:
            refund = self.ledger.refund(notice.out_refund_no, hospital_id=hospital_id)
        except GatewayError as exc:
            if exc.code is GatewayCode.UNKNOWN_REFUND:
                raise GatewayError(GatewayCode.UNKNOWN_REFUND, f"no refund {notice.out_refund_no[:64]!r} of hospital {hospital_id}") from None
            raise
        with self.directory.db.transaction(write=False) as tx:
            row = tx.one("SELECT out_trade_no, order_no FROM payments WHERE payment_id = ?", (refund.payment_id,))
        assert row is not None  # a refund row always references its payment (foreign key)
        out_trade_no, order_no = row[0], row[1]
        if notice.out_trade_no != out_trade_no or (notice.refund_fen is not None and notice.refund_fen != refund.amount_fen):
            raise GatewayError(GatewayCode.NOTIFICATION_MISMATCH,
                               f"refund {refund.out_refund_no}: the notification's order or amount differ from the ledger's")
        wanted = {"SUCCESS": RefundState.SUCCEEDED, "CLOSED": RefundState.FAILED, "REFUNDCLOSE": RefundState.FAILED}.get(notice.status)
        if wanted is None:
            if notice.status in ("CHANGE", "ABNORMAL"):
                self.alarms.raise_alarm(hospital_id=hospital_id, kind=AlarmKind.REFUND, reason="refund_abnormal", reference=refund.out_refund_no,
                                        order_no=order_no, channel=PayChannel.WECHAT.value, amount_fen=refund.amount_fen,
                                        message=f"WeChat Pay notification: refund {notice.status}")
                return f"refund {refund.out_refund_no}: {notice.status}, handed to a person"
            raise GatewayError(GatewayCode.BAD_NOTIFICATION, f"refund status {notice.status[:32]!r} is not one WeChat Pay sends")
        if refund.state is wanted:
            log.info("wechat refund notification for %s/%s: already %s (a repeat)", hospital_id, refund.out_refund_no, wanted.value)
            return f"refund {refund.out_refund_no} already {wanted.value}"
        if refund.state is not RefundState.REFUNDING:
            self.alarms.raise_alarm(hospital_id=hospital_id, kind=AlarmKind.REFUND, reason="notification_conflict", reference=refund.out_refund_no,
                                    order_no=order_no, channel=PayChannel.WECHAT.value, amount_fen=refund.amount_fen,
                                    message=f"the ledger says {refund.state.value}, a WeChat Pay notification says {notice.status}")
            return f"refund {refund.out_refund_no}: contradicts the ledger, handed to a person"
        self.ledger.settle_refund(refund.out_refund_no, hospital_id=hospital_id, state=wanted, channel_refund_id=notice.refund_id)
        log.info("wechat refund notification for %s/%s: %s", hospital_id, refund.out_refund_no, wanted.value)
        return f"refund {refund.out_refund_no} {wanted.value}"
