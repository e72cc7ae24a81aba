"""The sandbox's WeChat Pay APIv3 code payment (付款码支付 v3), for the direct merchant and for the
service provider acting for a bound sub-merchant:

    POST /v3/pay/transactions/codepay                          POST /v3/pay/partner/transactions/codepay
    GET  /v3/pay/transactions/out-trade-no/{no}?mchid=         GET  /v3/pay/partner/transactions/out-trade-no/{no}?sp_mchid=&sub_mchid=
    POST /v3/pay/transactions/out-trade-no/{no}/reverse        POST /v3/pay/partner/transactions/out-trade-no/{no}/reverse
    POST /v3/refund/domestic/refunds                           GET  /v3/refund/domestic/refunds/{no}[?sub_mchid=]
    GET  /v3/bill/tradebill?bill_date=&bill_type=[&sub_mchid=]  -> {hash_type, hash_value, download_url}
    GET  /v3/billdownload/file?token=                          the bill (v2's CSV format), unsigned as WeChat serves it
    GET  /v3/certificates                                      the platform certificates, each AEAD_AES_256_GCM under
                                                               the caller's APIv3 key (`wechat_platform`: rotation)

Requests are checked as WeChat Pay checks them: the Authorization header (WECHATPAY2-SHA256-RSA2048)
names a merchant and the serial of its API certificate, and its signature over "METHOD\\nURL\\n
TIMESTAMP\\nNONCE\\nBODY\\n" must verify with that certificate's key, else 401 SIGN_ERROR (unsigned).
Every other reply is signed by the platform (Wechatpay-Signature / -Timestamp / -Nonce / -Serial):
with the platform public key (its id in -Serial) when the request named that id in its
Wechatpay-Serial header (public-key mode), otherwise, and always for /v3/certificates, with the
platform certificate that currently signs (its serial in -Serial; `wechat_platform` rotates it). Errors are {"code", "message"} with WeChat's HTTP
status. The orders are the v2 API's (one merchant account, two APIs): an order paid through one is
queried, reversed and refunded through the other. A refund request with a notify_url gets its
refund notification there (`wechat_notify`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import threading
import logging
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Mapping


from firmware_sim.sandbox import bills
from firmware_sim.sandbox.behaviour import FOREIGN, Kind, channel_of_code, foreign_code, mask
from firmware_sim.sandbox.reply import Faults, Reply, SignatureFault, corrupt_signature
from firmware_sim.sandbox.store import SHANGHAI, Order, OrderState, PayResult, RefundResult, ReverseResult, Store
from firmware_sim.sandbox.wechat_notify import RefundNotifier
from firmware_sim.sandbox.wechat_platform import PlatformCertificates
from gateway.channels import wechat_v3_certs
from gateway.channels import wechat_v3_codec as v3

log = logging.getLogger(__name__)
CHANNEL = "WECHAT"
PREFIX = "/v3/"
# WeChat Pay refuses requests signed longer ago than this (5 minutes).
MAX_REQUEST_AGE_S = 300
_OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_\-|*]{6,32}", re.ASCII)
_OUT_REFUND_NO = re.compile(r"[A-Za-z0-9_\-|*@]{1,64}", re.ASCII)
_JSON = "application/json; charset=utf-8"
_ORDER_PATH = re.compile(r"/v3/pay/(partner/)?transactions/out-trade-no/([^/]+)(/reverse)?", re.ASCII)
_REFUND_PATH = re.compile(r"/v3/refund/domestic/refunds/([^/]+)", re.ASCII)


@dataclass(frozen=True, slots=True)
class V3Merchant:
    """A merchant account's APIv3 side: its ids, its API certificate's serial and public key, its APIv3 key."""

    appid: str
    mchid: str
    serial_no: str
    public_key: v3.PublicKey = field(repr=False)
    apiv3_key: str = field(repr=False)
    sub_mchids: frozenset[str] = frozenset()  # a service provider's bound sub-merchants


@dataclass(frozen=True, slots=True)
class _Caller:
    merchant: V3Merchant
    partner: bool
    sub_mchid: str | None = None
    sub_appid: str | None = None

    @property
    def payee(self) -> str:
        return self.sub_mchid or ""

    def ids(self) -> dict[str, str]:
        if not self.partner:
            return {"appid": self.merchant.appid, "mchid": self.merchant.mchid}
        ids = {"sp_appid": self.merchant.appid, "sp_mchid": self.merchant.mchid}
        if self.sub_appid:
            ids["sub_appid"] = self.sub_appid
        ids["sub_mchid"] = self.sub_mchid or ""
        return ids

    def notify_ids(self) -> dict[str, str]:
        return {"sp_mchid": self.merchant.mchid, "sub_mchid": self.sub_mchid or ""} if self.partner else {"mchid": self.merchant.mchid}


class _Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, SHANGHAI).isoformat(timespec="seconds")


class WeChatV3Api:
    def __init__(self, store: Store, direct: V3Merchant, provider: V3Merchant, faults: Faults, *, platform_key: v3.PrivateKey,
                 platform_public_key_id: str, platform_certs: PlatformCertificates, notifier: RefundNotifier | None = None,
                 base_url: Callable[[], str] = lambda: "") -> None:
        self.store = store
        self.merchants = {direct.mchid: direct, provider.mchid: provider}
        self.provider_mchid = provider.mchid
        self.faults = faults
        self.platform_key = platform_key
        self.public_key_id = platform_public_key_id
        self.platform_certs = platform_certs
        self.notifier = notifier
        self.base_url = base_url
        self._bills: dict[str, bytes] = {}  # download token -> bill (the latest few)
        self._bills_lock = threading.Lock()

    # -- the request ------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        parts = urllib.parse.urlsplit(target)
        # A merchant verifying with the platform public key names its id in Wechatpay-Serial; any other
        # is in platform-certificate mode (wechatpayv3 sends no Wechatpay-Serial then).
        cert_mode = parts.path == wechat_v3_certs.PATH or headers.get(v3.H_SERIAL) != self.public_key_id
        signer = self.platform_certs.signer() if cert_mode else None
        serial, key = (signer.serial_no, signer.private_key) if signer is not None else (self.public_key_id, self.platform_key)
        try:
            merchant = self._authenticate(method, target, headers, body)
            query = dict(urllib.parse.parse_qsl(parts.query))
            try:
                document = json.loads(body.decode("utf-8")) if body else {}
            except (UnicodeDecodeError, ValueError):
                raise _Error(400, "PARAM_ERROR", "请求体不是JSON") from None
            if not isinstance(document, dict):
                raise _Error(400, "PARAM_ERROR", "请求体不是JSON对象")
            if method == "GET" and parts.path == "/v3/billdownload/file":
                with self._bills_lock:
                    data = self._bills.get(query.get("token", ""))
                if data is None:
                    raise _Error(404, "RESOURCE_NOT_EXISTS", "账单文件不存在或已过期")
                return Reply(200, "application/octet-stream", data)  # WeChat does not sign the file; its hash is in the signed reply
            if method == "GET" and parts.path == wechat_v3_certs.PATH:
                return self._signed(200, self._certificates(merchant), serial, 0.0, key)
            status, answer, delay, swallow = self._route(method, parts.path, query, document, merchant, (serial, key))
        except _Error as error:
            if error.status == 401:
                return Reply(401, _JSON, json.dumps({"code": error.code, "message": error.message}, ensure_ascii=False).encode("utf-8"))
            status, answer, delay, swallow = error.status, {"code": error.code, "message": error.message}, 0.0, False
        if swallow:
            return Reply(200, _JSON, b"", swallow=True)
        return self._signed(status, answer, serial, delay, key)

    def _certificates(self, merchant: V3Merchant) -> dict[str, object]:
        """The platform certificates, each sealed with the asking merchant's APIv3 key (GET /v3/certificates)."""
        return {"data": [wechat_v3_certs.encrypt_entry(c.pem, c.serial_no, c.not_before, c.not_after, merchant.apiv3_key,
                                                       secrets.token_hex(6))
                         for c in self.platform_certs.listed()]}

    def _authenticate(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> V3Merchant:
        try:
            auth = v3.parse_authorization(headers.get("Authorization", ""))
        except v3.WeChatV3Error as exc:
            raise _Error(401, "SIGN_ERROR", f"Authorization格式错误: {exc.args[0] if exc.args else exc}") from None
        merchant = self.merchants.get(auth.mchid)
        if merchant is None:
            raise _Error(401, "SIGN_ERROR", "商户号不存在")
        if auth.serial_no != merchant.serial_no:
            raise _Error(401, "SIGN_ERROR", "商户证书序列号有误")
        if not auth.timestamp.isdigit() or abs(time.time() - int(auth.timestamp)) > MAX_REQUEST_AGE_S:
            raise _Error(401, "SIGN_ERROR", "请求时间戳与当前时间相差过大")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Error(401, "SIGN_ERROR", "请求体不是UTF-8") from None
        if not v3.rsa_verify(v3.request_message(method, target, auth.timestamp, auth.nonce_str, text), auth.signature, merchant.public_key):
            log.info("wechat v3 %s: bad request signature", method)
            raise _Error(401, "SIGN_ERROR", "签名错误")
        return merchant

    def _caller(self, merchant: V3Merchant, partner: bool, ids: Mapping[str, object]) -> _Caller:
        if partner != (merchant.mchid == self.provider_mchid):
            raise _Error(403, "NO_AUTH", "服务商接口只能由服务商调用" if partner else "服务商请使用服务商接口(partner)")
        signer_field = "sp_mchid" if partner else "mchid"
        if ids.get(signer_field) != merchant.mchid:
            raise _Error(400, "PARAM_ERROR", f"{signer_field}与请求签名的商户号不一致")
        if not partner:
            return _Caller(merchant, False)
        sub = ids.get("sub_mchid")
        if not isinstance(sub, str) or not sub:
            raise _Error(400, "PARAM_ERROR", "缺少参数sub_mchid")
        if sub not in merchant.sub_mchids:
            log.info("wechat v3: sub_mchid %s is not bound to provider %s", sub, merchant.mchid)
            raise _Error(403, "NO_AUTH", "特约商户号sub_mchid与服务商sp_mchid不存在绑定关系")
        sub_appid = ids.get("sub_appid")
        return _Caller(merchant, True, sub, sub_appid if isinstance(sub_appid, str) and sub_appid else None)

    def _signed(self, status: int, answer: dict[str, object], serial: str, delay: float, key: v3.PrivateKey) -> Reply:
        text = json.dumps(answer, ensure_ascii=False, separators=(",", ":")) if answer else ""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = v3.rsa_sign(v3.response_message(timestamp, nonce, text), key)
        fault = self.faults.signature(CHANNEL)
        if fault is SignatureFault.CORRUPT:
            signature = corrupt_signature(signature)
        elif fault is SignatureFault.TAMPER and text:
            text = text.replace('"total":', '"total":1', 1) if '"total":' in text else text + " "
        headers = {v3.H_TIMESTAMP: timestamp, v3.H_NONCE: nonce, v3.H_SERIAL: serial, v3.H_SIGNATURE_TYPE: v3.SIGNATURE_TYPE}
        if fault is not SignatureFault.MISSING:
            headers[v3.H_SIGNATURE] = signature
        return Reply(status, _JSON if text else "text/plain", text.encode("utf-8"), delay_s=delay, headers=headers)

    # -- routing ----------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, str], document: dict[str, object],
               merchant: V3Merchant, signer: tuple[str, v3.PrivateKey]) -> tuple[int, dict[str, object], float, bool]:
        if method == "POST" and path in ("/v3/pay/transactions/codepay", "/v3/pay/partner/transactions/codepay"):
            return self._codepay(self._caller(merchant, "/partner/" in path, document), document)
        match = _ORDER_PATH.fullmatch(path)
        if match is not None:
            partner, out_trade_no, reverse = match.group(1) is not None, urllib.parse.unquote(match.group(2)), match.group(3) is not None
            if method == "POST" and reverse:
                return self._reverse(self._caller(merchant, partner, document), out_trade_no)
            if method == "GET" and not reverse:
                return self._query(self._caller(merchant, partner, query), out_trade_no)
        if method == "POST" and path == "/v3/refund/domestic/refunds":
            return self._refund(self._refund_caller(merchant, document), document, signer)
        if method == "GET" and path == "/v3/bill/tradebill":
            return self._trade_bill(self._refund_caller(merchant, query), query)
        match = _REFUND_PATH.fullmatch(path)
        if method == "GET" and match is not None:
            return self._refund_query(self._refund_caller(merchant, query), urllib.parse.unquote(match.group(1)))
        raise _Error(404, "NOT_FOUND", "接口不存在")

    def _refund_caller(self, merchant: V3Merchant, ids: Mapping[str, object]) -> _Caller:
        """The refund APIs are shared: a service provider names the sub-merchant in sub_mchid."""
        partner = merchant.mchid == self.provider_mchid
        return self._caller(merchant, partner, {**ids, ("sp_mchid" if partner else "mchid"): merchant.mchid})

    def _order(self, caller: _Caller, out_trade_no: str) -> Order | None:
        return self.store.order(CHANNEL, out_trade_no, merchant=caller.payee)  # numbers are each merchant's own

    # -- endpoints --------------------------------------------------------------------------------

    def _codepay(self, caller: _Caller, doc: dict[str, object]) -> tuple[int, dict[str, object], float, bool]:
        out_trade_no = _text(doc, "out_trade_no", _OUT_TRADE_NO)
        _text(doc, "description")
        amount, payer = doc.get("amount"), doc.get("payer")
        if not isinstance(amount, dict) or type(amount.get("total")) is not int or not 0 < amount["total"] <= 10**11:
            raise _Error(400, "PARAM_ERROR", "amount.total必须是正整数(分)")
        if not isinstance(payer, dict) or not isinstance(payer.get("auth_code"), str) or not payer["auth_code"]:
            raise _Error(400, "PARAM_ERROR", "缺少参数payer.auth_code")
        if not isinstance(doc.get("scene_info"), dict):
            raise _Error(400, "PARAM_ERROR", "缺少参数scene_info")
        total_fen, code = int(amount["total"]), payer["auth_code"]
        if channel_of_code(code) != CHANNEL:
            kind = foreign_code(code)
            raise _Error(400, "AUTH_CODE_INVALID", FOREIGN[kind][1] if kind else "付款码无效，请重新扫码")
        account = self.store.account(code)
        behaviour = account.behaviour if account is not None and account.channel == CHANNEL else None
        log.info("wechat v3 codepay %s code %s %d fen", out_trade_no, mask(code), total_fen)
        if behaviour is not None and behaviour.kind is Kind.NOREPLY:
            return 200, {}, 0.0, True
        delay = behaviour.seconds if behaviour is not None and behaviour.kind is Kind.SLOW else 0.0
        device = doc["scene_info"].get("device_id") if isinstance(doc["scene_info"], dict) else None
        result, order = self.store.pay(CHANNEL, out_trade_no, code, total_fen, str(doc["description"])[:128],
                                       device if isinstance(device, str) else None, merchant=caller.payee)
        if result is PayResult.PAID:
            assert order is not None
            return 200, self._paid(caller, order, account.buyer_id if account else ""), delay, False
        if result is PayResult.USERPAYING:
            return 202, {"code": "USERPAYING", "message": "需要用户输入支付密码", "trade_state": "USERPAYING"}, delay, False
        status, err, message = {
            PayResult.INSUFFICIENT: (403, "NOT_ENOUGH", "用户账户余额不足"),
            PayResult.CODE_INVALID: (400, "AUTH_CODE_INVALID", "每个二维码仅限使用一次，请刷新再试"),
            PayResult.CODE_EXPIRED: (400, "AUTH_CODE_EXPIRE", "二维码已过期，请用户在微信上刷新后再试"),
            PayResult.SYSTEM_ERROR: (500, "SYSTEM_ERROR", "系统超时"),
            PayResult.ALREADY_PAID: (400, "ORDER_PAID", "订单已支付"),
            PayResult.ALREADY_CLOSED: (400, "ORDER_REVERSED", "订单已撤销"),
            PayResult.ALREADY_REVOKED: (400, "ORDER_REVERSED", "订单已撤销"),
            PayResult.CONFLICT: (400, "OUT_TRADE_NO_USED", "商户订单号重复"),
        }[result]
        raise _Error(status, err, message)

    def _paid(self, caller: _Caller, order: Order, openid: str) -> dict[str, object]:
        return {**caller.ids(), "out_trade_no": order.out_trade_no, "transaction_id": order.txn_id, "trade_type": "MICROPAY",
                "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
                "success_time": _iso(order.paid_at or order.created_at),
                "payer": {"sp_openid" if caller.partner else "openid": openid},
                "amount": {"total": order.total_fen, "payer_total": order.total_fen, "currency": "CNY", "payer_currency": "CNY"}}

    def _query(self, caller: _Caller, out_trade_no: str) -> tuple[int, dict[str, object], float, bool]:
        order = self._order(caller, out_trade_no)
        if order is None:
            raise _Error(404, "ORDER_NOT_EXIST", "订单不存在")
        if order.state is OrderState.SUCCESS:
            account = self.store.account(order.code) if order.code else None
            answer = self._paid(caller, order, account.buyer_id if account else "")
            if order.refunded_fen:
                answer.update(trade_state="REFUND", trade_state_desc="转入退款")
            return 200, answer, 0.0, False
        state, desc = {OrderState.USERPAYING: ("USERPAYING", "需要用户输入支付密码"), OrderState.PAYERROR: ("PAYERROR", "支付失败"),
                       OrderState.CLOSED: ("REVOKED", "已撤销"), OrderState.REVOKED: ("REVOKED", "已撤销")}[order.state]
        return 200, {**caller.ids(), "out_trade_no": order.out_trade_no, "trade_state": state, "trade_state_desc": desc}, 0.0, False

    def _reverse(self, caller: _Caller, out_trade_no: str) -> tuple[int, dict[str, object], float, bool]:
        _check(out_trade_no, _OUT_TRADE_NO, "out_trade_no")
        result, _order = self.store.reverse(CHANNEL, out_trade_no, merchant=caller.payee)
        if result is ReverseResult.EXPIRED:
            raise _Error(400, "REVERSE_EXPIRE", "订单已超过撤销期限")
        return 200, {**caller.ids(), "out_trade_no": out_trade_no}, 0.0, False

    def _refund_fields(self, caller: _Caller, order: Order, refund_id: str, out_refund_no: str, amount_fen: int, created: float,
                       status: str) -> dict[str, object]:
        answer: dict[str, object] = {
            "refund_id": refund_id, "out_refund_no": out_refund_no, "transaction_id": order.txn_id, "out_trade_no": order.out_trade_no,
            "channel": "ORIGINAL", "user_received_account": "支付用户零钱", "create_time": _iso(created), "status": status,
            "funds_account": "UNSETTLED",
            "amount": {"total": order.total_fen, "refund": amount_fen, "payer_total": order.total_fen, "payer_refund": amount_fen,
                       "settlement_total": order.total_fen, "settlement_refund": amount_fen, "discount_refund": 0, "currency": "CNY"},
        }
        if caller.partner:
            answer["sub_mchid"] = caller.sub_mchid
        if status == "SUCCESS":
            answer["success_time"] = _iso(created)
        return answer

    def _refund(self, caller: _Caller, doc: dict[str, object], signer: tuple[str, v3.PrivateKey]) -> tuple[int, dict[str, object], float, bool]:
        out_trade_no = _text(doc, "out_trade_no", _OUT_TRADE_NO)
        out_refund_no = _text(doc, "out_refund_no", _OUT_REFUND_NO)
        amount = doc.get("amount")
        if (not isinstance(amount, dict) or type(amount.get("refund")) is not int or type(amount.get("total")) is not int
                or amount.get("currency") not in (None, "CNY") or not 0 < amount["refund"] <= amount["total"]):
            raise _Error(400, "PARAM_ERROR", "amount.refund / amount.total 必须是正整数(分)且退款不超过原订单金额")
        if self._order(caller, out_trade_no) is None:
            raise _Error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        reason = doc.get("reason")
        result, refund, order = self.store.refund(CHANNEL, out_trade_no, out_refund_no, int(amount["refund"]), total_fen=int(amount["total"]),
                                                  merchant=caller.payee,
                                                  reason=reason if isinstance(reason, str) else "")
        if result in (RefundResult.DONE, RefundResult.DUPLICATE):
            assert refund is not None and order is not None
            notify_url = doc.get("notify_url")
            if result is RefundResult.DONE and self.notifier is not None and isinstance(notify_url, str) and notify_url:
                # signed as the merchant's replies are: platform public key or the certificate that signs now
                self.notifier.refund_done_v3(notify_url, caller.notify_ids(), caller.merchant.apiv3_key, refund, order,
                                             serial=signer[0], key=signer[1])
            # WeChat: a refund is accepted, then processed; its query (or notification) says when it is done.
            return 200, self._refund_fields(caller, order, refund.refund_id, out_refund_no, refund.amount_fen, refund.created_at,
                                            "PROCESSING"), 0.0, False
        status, code, message = {
            RefundResult.MISMATCH: (400, "INVALID_REQUEST", "订单金额或退款金额与之前请求不一致，请核实后再试"),
            RefundResult.NOT_EXIST: (404, "RESOURCE_NOT_EXISTS", "订单不存在"),
            RefundResult.NOT_PAID: (400, "INVALID_REQUEST", "订单状态错误，订单未支付或已撤销"),
            RefundResult.TOTAL_MISMATCH: (400, "PARAM_ERROR", "您的请求参数与订单信息不一致"),
            RefundResult.FULLY_REFUNDED: (400, "INVALID_REQUEST", "订单已全额退款"),
            RefundResult.EXCEEDS: (400, "INVALID_REQUEST", "申请退款金额超过订单可退金额"),
        }[result]
        raise _Error(status, code, message)

    def _refund_query(self, caller: _Caller, out_refund_no: str) -> tuple[int, dict[str, object], float, bool]:
        refund = self.store.find_refund(CHANNEL, out_refund_no, merchant=caller.payee)
        order = self._order(caller, refund.out_trade_no) if refund is not None else None
        if refund is None or order is None:
            raise _Error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return 200, self._refund_fields(caller, order, refund.refund_id, out_refund_no, refund.amount_fen, refund.created_at,
                                        "SUCCESS"), 0.0, False


    def _trade_bill(self, caller: _Caller, query: Mapping[str, str]) -> tuple[int, dict[str, object], float, bool]:
        bill_type = query.get("bill_type") or "ALL"
        if bill_type not in bills.WECHAT_BILL_TYPES:
            raise _Error(400, "PARAM_ERROR", "bill_type必须是ALL、SUCCESS或REFUND")
        try:
            day = datetime.date.fromisoformat(query.get("bill_date", ""))
        except ValueError:
            raise _Error(400, "PARAM_ERROR", "bill_date格式为YYYY-MM-DD") from None
        if day >= self.store.today():
            raise _Error(400, "INVALID_REQUEST", "账单日期不合法：当日账单次日生成")
        paid, refunds = self.store.day_activity(CHANNEL, day, merchant=caller.payee)
        if not paid and not refunds:
            raise _Error(400, "NO_STATEMENT_EXIST", "账单不存在")
        accounts = {o.code: self.store.account(o.code) for o in paid + [r[1] for r in refunds] if o.code}
        buyer = {code: (a.buyer_id if a else "") for code, a in accounts.items()}
        text = bills.wechat_bill(bill_type, caller.merchant.appid, caller.merchant.mchid,
                                 [bills.payment_line(o, buyer.get(o.code or "", "")) for o in paid],
                                 [bills.refund_line(r, o, buyer.get(o.code or "", "")) for r, o in refunds],
                                 sub_mch_id=caller.sub_mchid or "0").encode("utf-8")
        token = secrets.token_urlsafe(16)
        with self._bills_lock:
            self._bills[token] = text
            while len(self._bills) > 64:
                del self._bills[next(iter(self._bills))]
        return 200, {"hash_type": "SHA1", "hash_value": hashlib.sha1(text).hexdigest(),
                     "download_url": f"{self.base_url()}/v3/billdownload/file?token={token}"}, 0.0, False


def _check(value: str, pattern: re.Pattern[str], name: str) -> str:
    if pattern.fullmatch(value) is None:
        raise _Error(400, "PARAM_ERROR", f"参数{name}格式错误")
    return value


def _text(doc: Mapping[str, object], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise _Error(400, "PARAM_ERROR", f"缺少参数{name}")
    return _check(value, pattern, name) if pattern is not None else value
