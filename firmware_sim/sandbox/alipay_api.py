"""The sandbox's Alipay OpenAPI gateway and its bill-file download.

Requests are checked as Alipay checks them: the common parameters, the app_id, RSA2 with the app's
public key (else 40002 isv.invalid-signature), then the method's biz_content. Replies are
`{"<method>_response": {...}, "sign": "..."}` signed with the sandbox's own "Alipay" private key
over the exact node text. Supported: alipay.trade.pay (scene bar_code), .query, .cancel, .refund,
.fastpay.refund.query and alipay.data.dataservice.bill.downloadurl.query (daily trade bills; the
bill URL points back at the sandbox (`/downloadBillFile.resource`) and is valid for 30 seconds), and
the third-party application's alipay.open.auth.token.app (app_auth_code -> app_auth_token, refresh)
and alipay.open.auth.token.app.query (lifetimes and grace: alipay_tenants.py).

Apps and modes (alipay_tenants.py): the merchant's own app, a third-party app calling with a merchant's
`app_auth_token` (a token not authorised to the calling app: 20001 aop.invalid-app-auth-token), and an
app in certificate mode (requests must carry `app_cert_sn` and `alipay_root_cert_sn`, replies carry
`alipay_cert_sn`). Each trade belongs to the merchant it was paid to; async notifications (异步通知) of
its changes go to the `notify_url` given with alipay.trade.pay (alipay_notify.py).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass
from typing import Callable

from Crypto.PublicKey import RSA

from firmware_sim.sandbox import bills
from firmware_sim.sandbox.behaviour import FOREIGN, Kind, channel_of_code, foreign_code, mask
from firmware_sim.sandbox.reply import Faults, Reply, SignatureFault, corrupt_signature
from firmware_sim.sandbox.scripts import Scripts
from firmware_sim.sandbox.store import SHANGHAI, Order, OrderState, PayResult, Refund, RefundResult, ReverseResult, Store
from protocol.amount import format_yuan
from protocol.errors import ProtocolError
from protocol.strictjson import loads_object
from firmware_sim.sandbox.alipay_notify import Notifier
from firmware_sim.sandbox.alipay_tenants import AlipayApp, AuthRefusal, Caller, Tenants
from gateway.channels.alipay_codec import response_node_name, rsa2_sign, rsa2_verify, sign_content

log = logging.getLogger(__name__)
CHANNEL = "ALIPAY"
BILL_URL_TTL_S = 30  # Alipay: "账单文件下载地址，30秒有效"
_NO = re.compile(r"[A-Za-z0-9_\-]{1,64}", re.ASCII)
_JSON = "application/json;charset=utf-8"
_MSG = {"10000": "Success", "20001": "Insufficient Token Permissions", "10003": "Order success pay inprocess", "20000": "Service Currently Unavailable",
        "40001": "Missing Required Arguments", "40002": "Invalid Arguments", "40004": "Business Failed"}
_COMMON = ("app_id", "method", "charset", "sign_type", "timestamp", "version", "biz_content")
_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,9})(?:\.([0-9]{1,2}))?", re.ASCII)


@dataclass(frozen=True, slots=True)
class AlipayMerchant:
    app_id: str
    pid: str  # the merchant's 2088... partner id, shown in bills
    app_public_key: RSA.RsaKey  # verifies the app's requests
    alipay_private_key: RSA.RsaKey  # signs the sandbox's replies


class _Answer(Exception):
    """Stop and answer with this code (and sub_code)."""

    def __init__(self, code: str, sub_code: str = "", sub_msg: str = "", **extra: object) -> None:
        super().__init__(sub_code or code)
        self.node: dict[str, object] = {"code": code, "msg": _MSG[code]}
        if sub_code:
            self.node.update(sub_code=sub_code, sub_msg=sub_msg)
        self.node.update(extra)


def _time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


class AlipayApi:
    def __init__(self, store: Store, merchant: AlipayMerchant, faults: Faults, base_url: Callable[[], str], secret: bytes,
                 scripts: Scripts | None = None, *, tenants: Tenants, apps: list[AlipayApp], root_cert_sn: str = "",
                 alipay_cert_sn: str = "", notifier: Notifier | None = None) -> None:
        self.store = store
        self.tenants = tenants
        self.apps = {merchant.app_id: AlipayApp(merchant.app_id, merchant.pid, merchant.app_public_key)} | {a.app_id: a for a in apps}
        self.root_cert_sn = root_cert_sn
        self.alipay_cert_sn = alipay_cert_sn
        self.notifier = notifier
        self.scripts = scripts or Scripts()
        self.merchant = merchant
        self.faults = faults
        self.base_url = base_url
        self._secret = secret  # signs bill download URLs

    # -- the gateway -------------------------------------------------------------------------

    def handle_gateway(self, pairs: list[tuple[str, str]]) -> Reply:
        """`pairs`: the form fields of the request (body and query string together)."""
        params = dict(pairs)
        method = params.get("method", "")
        handlers = {
            "alipay.trade.pay": self._pay,
            "alipay.trade.query": self._query,
            "alipay.trade.cancel": self._cancel,
            "alipay.trade.refund": self._refund,
            "alipay.trade.fastpay.refund.query": self._refund_query,
            "alipay.data.dataservice.bill.downloadurl.query": self._bill_url,
            "alipay.open.auth.token.app": self._token_app,
            "alipay.open.auth.token.app.query": self._token_app_query,
        }
        node_name = response_node_name(method) if method in handlers else "error_response"
        delay = 0.0
        app = self.apps.get(params.get("app_id", ""))
        biz: dict[str, object] | None = None
        caller: Caller | None = None
        try:
            if len(params) != len(pairs):
                raise _Answer("40002", "isv.invalid-parameter", "参数重复")
            checked, caller = self._check_request(params, method in handlers)
            self._check_owner(method, checked, caller, params.get("notify_url") or None)
            biz = checked
            if method == "alipay.data.dataservice.bill.downloadurl.query":
                result = self._bill_url(biz, caller.seller_id)
            elif method.startswith("alipay.open.auth.token.app"):
                result = self._token_app(biz, caller) if method == "alipay.open.auth.token.app" else self._token_app_query(biz, caller)
            else:
                result = handlers[method](biz, self._merchant_of(caller))
            if isinstance(result, Reply):
                return result
            node, delay = result
            node = {"code": "10000", "msg": "Success", **node}
        except _Answer as answer:
            node = answer.node
        if biz is not None and caller is not None:
            self._announce(method, biz, caller)  # also after an error answer: the money may have moved (SYSTEMERROR)
        return self._signed(node_name, node, delay, cert_mode=app is not None and app.cert_sn is not None)

    def _merchant_of(self, caller: Caller) -> str:
        """Whose order numbers the caller uses (the store's merchant): "" for our own merchant (its own app
        and its certificate-mode app), the seller id a third-party app's token acts for otherwise."""
        return "" if caller.seller_id == self.merchant.pid else caller.seller_id

    def _check_owner(self, method: str, biz: dict[str, object], caller: Caller, notify_url: str | None) -> None:
        """Record which app and notify_url a merchant's trade was paid through (for its notifications). A
        trade is its merchant's: the store keys orders by merchant, so another merchant's trade with the
        same number is simply another trade."""
        no = biz.get("out_trade_no")
        if method in ("alipay.trade.pay", "alipay.trade.cancel") and isinstance(no, str) and _NO.fullmatch(no) is not None:
            self.tenants.claim(no, caller, notify_url if method == "alipay.trade.pay" else None)

    def _announce(self, method: str, biz: dict[str, object], caller: Caller) -> None:
        """Send the async notification of what this call changed (each change once)."""
        no = biz.get("out_trade_no")
        if self.notifier is None or not isinstance(no, str) or method not in ("alipay.trade.pay", "alipay.trade.query",
                                                                                "alipay.trade.cancel", "alipay.trade.refund"):
            return
        owner = self.tenants.owner(no, caller.seller_id)
        merchant = self._merchant_of(caller)
        order = self.store.order(CHANNEL, no, merchant=merchant)
        if owner is None or not owner.notify_url or order is None or order.code is None:
            return
        if method == "alipay.trade.refund":
            request_no = biz.get("out_request_no") or no
            refund = self.store.find_refund(CHANNEL, str(request_no), no, merchant=merchant)
            if refund is None or not self.tenants.mark_notified(no, caller.seller_id, f"REFUND|{request_no}"):
                return
            status = "TRADE_SUCCESS" if order.refunded_fen < order.total_fen else "TRADE_CLOSED"
            extra = {"out_biz_no": str(request_no), "refund_fee": format_yuan(order.refunded_fen), "gmt_refund": _time(refund.created_at)}
        elif order.state is OrderState.SUCCESS and order.refunded_fen == 0:
            if owner.notified or not self.tenants.mark_notified(no, caller.seller_id, "TRADE_SUCCESS"):
                return
            status, extra = "TRADE_SUCCESS", {}
        elif order.state in (OrderState.CLOSED, OrderState.REVOKED) and method == "alipay.trade.cancel":
            if not self.tenants.mark_notified(no, caller.seller_id, "TRADE_CLOSED"):
                return
            status, extra = "TRADE_CLOSED", {"gmt_close": _time(order.closed_at or self.store.now())}
            if order.state is OrderState.REVOKED:
                extra.update(refund_fee=format_yuan(order.total_fen), gmt_refund=extra["gmt_close"])
        else:
            return
        amount = format_yuan(order.total_fen)
        params = {"notify_type": "trade_status_sync", "app_id": owner.app_id, "auth_app_id": owner.auth_app_id, "charset": "utf-8",
                  "version": "1.0", "trade_no": order.txn_id, "out_trade_no": no, "buyer_id": self._buyer(order),
                  "seller_id": owner.seller_id, "trade_status": status, "total_amount": amount, "receipt_amount": amount,
                  "buyer_pay_amount": amount, "subject": order.subject, "gmt_create": _time(order.created_at), **extra}
        if order.paid_at is not None:
            params["gmt_payment"] = _time(order.paid_at)
        self.notifier.send(owner.notify_url, params, fault=self.faults.signature(CHANNEL))

    def authorise(self, app_id: str | None) -> Reply:
        """Control API: a new merchant authorises a third-party app; its app_auth_token."""
        target = app_id or self._third_party_app()
        if target not in self.apps:
            return Reply(404, _JSON, json.dumps({"error": {"code": "not_found", "message": f"no app {target}"}}).encode())
        return Reply(200, _JSON, json.dumps(self.tenants.authorise(target, self.store.real())).encode())

    def issue_auth_code(self, request: dict[str, object]) -> Reply:
        """Control API: a merchant authorises a third-party app on its authorisation page; the app_auth_code
        the app receives. {"app_id"?, "user_id"? (a merchant authorising again), "expires_in"?, "re_expires_in"?}."""
        target = str(request.get("app_id") or self._third_party_app())
        lifetimes = {k: request[k] for k in ("expires_in", "re_expires_in") if k in request}
        if target not in self.apps or set(request) - {"app_id", "user_id", "expires_in", "re_expires_in"} or not all(
                type(v) is int and 0 < v <= 10 * 366 * 86400 for v in lifetimes.values()):
            message = f"no app {target}" if target not in self.apps else "fields: app_id, user_id, expires_in and re_expires_in (seconds)"
            return Reply(404 if target not in self.apps else 400, _JSON, json.dumps({"error": {"code": "bad_request", "message": message}}).encode())
        try:
            issued = self.tenants.issue_code(target, self.store.real(), seller_id=str(request["user_id"]) if request.get("user_id") else None,
                                             **{k: int(str(v)) for k, v in lifetimes.items()})
        except KeyError as exc:
            return Reply(404, _JSON, json.dumps({"error": {"code": "not_found", "message": str(exc.args[0])}}).encode())
        return Reply(200, _JSON, json.dumps(issued).encode())

    def _third_party_app(self) -> str:
        return next((a.app_id for a in self.apps.values() if a.app_id != self.merchant.app_id and a.cert_sn is None), self.merchant.app_id)

    def _token_app(self, biz: dict[str, object], caller: Caller) -> tuple[dict[str, object], float]:
        """alipay.open.auth.token.app: a code for the token pair, or a refresh token for a new pair (answered as
        Alipay's current documents show: the pair under "tokens", one entry per authorising merchant)."""
        grant = biz.get("grant_type")
        now = self.store.real()
        try:
            if grant == "authorization_code":
                pair = self.tenants.exchange_code(caller.app.app_id, _text(biz, "code"), now)
            elif grant == "refresh_token":
                pair = self.tenants.refresh(caller.app.app_id, _text(biz, "refresh_token"), now)
            else:
                raise AuthRefusal("isv.grant-type-invalid", "grant_type参数不正确")
        except AuthRefusal as refusal:
            log.info("alipay.open.auth.token.app %s for app %s: %s", grant, caller.app.app_id, refusal.sub_code)
            raise _Answer("40002", refusal.sub_code, refusal.sub_msg) from None
        return {"tokens": [pair]}, 0.0

    def _token_app_query(self, biz: dict[str, object], caller: Caller) -> tuple[dict[str, object], float]:
        info = self.tenants.token_info(_text(biz, "app_auth_token"), self.store.real())
        if info is None or info["app_id"] != caller.app.app_id:
            raise _Answer("20001", "aop.invalid-app-auth-token", "无效的应用授权令牌")
        methods = ["alipay.trade.pay", "alipay.trade.query", "alipay.trade.cancel", "alipay.trade.refund",
                   "alipay.trade.fastpay.refund.query", "alipay.data.dataservice.bill.downloadurl.query"]
        return {k: v for k, v in info.items() if k != "app_id"} | {"auth_methods": methods}, 0.0

    def trade_owner(self, out_trade_no: str) -> Reply:
        owner = self.tenants.owner(out_trade_no)  # the first merchant's with that number
        if owner is None:
            return Reply(404, _JSON, json.dumps({"error": {"code": "not_found", "message": "no such trade"}}).encode())
        return Reply(200, _JSON, json.dumps({"seller_id": owner.seller_id, "app_id": owner.app_id, "auth_app_id": owner.auth_app_id,
                                             "notify_url": owner.notify_url}).encode())

    def _check_request(self, params: dict[str, str], known_method: bool) -> tuple[dict[str, object], Caller]:
        if not params.get("sign"):
            raise _Answer("40001", "isv.missing-signature", "缺少签名参数")
        for name in _COMMON:
            if not params.get(name):
                raise _Answer("40001", f"isv.missing-{name.replace('_', '-')}", f"缺少{name}参数")
        if not known_method:
            raise _Answer("40002", "isv.invalid-method", "不存在的方法名")
        app = self.apps.get(params["app_id"])
        if app is None:
            raise _Answer("40002", "isv.invalid-app-id", "无效的AppID参数")
        if params["sign_type"] != "RSA2":
            raise _Answer("40002", "isv.invalid-signature-type", "无效的签名类型")
        if params["charset"].lower() != "utf-8":
            raise _Answer("40002", "isv.invalid-charset", "字符集错误")
        if app.cert_sn is not None:
            if params.get("app_cert_sn") != app.cert_sn:
                raise _Answer("40002", "isv.app-cert-not-exist", "应用公钥证书不存在")
            if params.get("alipay_root_cert_sn") != self.root_cert_sn:
                raise _Answer("40002", "isv.invalid-alipay-root-cert-sn", "无效支付宝根证书序列号")
        if not rsa2_verify(sign_content(params).encode("utf-8"), params["sign"], app.public_key):
            log.info("alipay %s: bad request signature", params["method"])
            raise _Answer("40002", "isv.invalid-signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配")
        try:
            datetime.datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise _Answer("40002", "isv.invalid-timestamp", "非法的时间戳参数") from None
        if params["version"] != "1.0":
            raise _Answer("40002", "isv.invalid-version", "版本号错误")
        caller = Caller(app, app.seller_id, app.app_id)
        token = params.get("app_auth_token")
        if token:
            granted = self.tenants.token(token, self.store.real())
            if granted is None or granted[0] != app.app_id:
                log.info("alipay %s: app_auth_token not authorised to app %s", params["method"], app.app_id)
                raise _Answer("20001", "aop.invalid-app-auth-token", "无效的应用授权令牌")
            caller = Caller(app, granted[1], granted[2])
        try:
            return loads_object(params["biz_content"], what="biz_content"), caller
        except ProtocolError:
            raise _Answer("40004", "ACQ.INVALID_PARAMETER", "参数无效: biz_content") from None

    def _signed(self, node_name: str, node: dict[str, object], delay: float, *, cert_mode: bool = False) -> Reply:
        raw = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
        signature = rsa2_sign(raw, self.merchant.alipay_private_key)
        fault = self.faults.signature(CHANNEL)
        if fault is SignatureFault.CORRUPT:
            signature = corrupt_signature(signature)
        elif fault is SignatureFault.TAMPER:
            raw = json.dumps({**node, "msg": node.get("msg", "") + " "}, ensure_ascii=False, separators=(",", ":"))
        body = '{"' + node_name + '":' + raw
        if cert_mode:
            body += ',"alipay_cert_sn":"' + self.alipay_cert_sn + '"'
        body += "}" if fault is SignatureFault.MISSING else ',"sign":"' + signature + '"}'
        return Reply(200, _JSON, body.encode("utf-8"), delay_s=delay)

    # -- methods -----------------------------------------------------------------------------

    def _pay(self, biz: dict[str, object], merchant: str) -> tuple[dict[str, object], float] | Reply:
        out_trade_no = _text(biz, "out_trade_no", _NO)
        if biz.get("scene") != "bar_code":
            raise _Answer("40004", "ACQ.INVALID_PARAMETER", "参数无效: scene 须为 bar_code")
        code = _text(biz, "auth_code")
        subject = _text(biz, "subject")
        total_fen = _yuan(biz, "total_amount")
        if channel_of_code(code) != CHANNEL:
            kind = foreign_code(code)
            raise _Answer("40004", "ACQ.PAYMENT_AUTH_CODE_INVALID", FOREIGN[kind][1] if kind else "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款")
        account = self.store.account(code)
        behaviour = account.behaviour if account is not None and account.channel == CHANNEL else None
        log.info("alipay pay %s code %s %d fen (%s)", out_trade_no, mask(code), total_fen, behaviour.text if behaviour else "unknown code")
        if behaviour is not None and behaviour.kind is Kind.NOREPLY:
            return Reply(200, _JSON, b"", swallow=True)
        delay = behaviour.seconds if behaviour is not None and behaviour.kind is Kind.SLOW else 0.0
        store_id = biz.get("store_id") or biz.get("terminal_id")
        result, order = self.store.pay(CHANNEL, out_trade_no, code, total_fen, subject[:256], str(store_id) if store_id else None,
                                       merchant=merchant)
        buyer = account.buyer_id if account is not None else ""
        if result is PayResult.PAID:
            assert order is not None
            amount = format_yuan(order.total_fen)
            return {**self._trade(order, buyer), "total_amount": amount, "receipt_amount": amount, "buyer_pay_amount": amount,
                    "invoice_amount": amount, "gmt_payment": _time(order.paid_at or order.created_at),
                    "fund_bill_list": [{"fund_channel": "ALIPAYACCOUNT", "amount": amount}]}, delay
        if result is PayResult.USERPAYING:
            assert order is not None
            raise _Answer("10003", **self._trade(order, buyer), total_amount=format_yuan(order.total_fen))
        sub = {
            PayResult.INSUFFICIENT: ("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足"),
            PayResult.CODE_INVALID: ("ACQ.PAYMENT_AUTH_CODE_INVALID", "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款"),
            PayResult.CODE_EXPIRED: ("ACQ.PAYMENT_AUTH_CODE_INVALID", "付款码已过期，请顾客刷新付款码后重新收款"),
            PayResult.SYSTEM_ERROR: ("ACQ.SYSTEM_ERROR", "系统错误"),
            PayResult.ALREADY_PAID: ("ACQ.TRADE_HAS_SUCCESS", "交易已被支付"),
            PayResult.ALREADY_CLOSED: ("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"),
            PayResult.ALREADY_REVOKED: ("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"),
            PayResult.CONFLICT: ("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改"),
        }[result]
        raise _Answer("40004", *sub, out_trade_no=out_trade_no)

    def _trade(self, order: Order, buyer_id: str) -> dict[str, object]:
        node: dict[str, object] = {"trade_no": order.txn_id, "out_trade_no": order.out_trade_no}
        if buyer_id:
            node.update(buyer_logon_id=bills.buyer_logon_id(buyer_id), buyer_user_id=buyer_id)
        return node

    def _buyer(self, order: Order) -> str:
        account = self.store.account(order.code) if order.code else None
        return account.buyer_id if account is not None else ""

    def _query(self, biz: dict[str, object], merchant: str) -> tuple[dict[str, object], float]:
        order = self.store.order(CHANNEL, _text(biz, "out_trade_no", _NO), merchant=merchant)
        if order is None or order.state is OrderState.PAYERROR:
            raise _Answer("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在")
        node = self._trade(order, self._buyer(order))
        if order.state is OrderState.USERPAYING:
            status = "WAIT_BUYER_PAY"
        elif order.state is OrderState.SUCCESS and order.refunded_fen < order.total_fen:
            status = "TRADE_SUCCESS"
        else:
            status = "TRADE_CLOSED"  # closed unpaid, reversed, or refunded in full
        node.update(trade_status=status, total_amount=format_yuan(order.total_fen))
        if order.paid_at is not None:
            amount = format_yuan(order.total_fen)
            node.update(buyer_pay_amount=amount, receipt_amount=amount, send_pay_date=_time(order.paid_at))
        return node, 0.0

    def _cancel(self, biz: dict[str, object], merchant: str) -> tuple[dict[str, object], float]:
        out_trade_no = _text(biz, "out_trade_no", _NO)
        existing = self.store.order(CHANNEL, out_trade_no, merchant=merchant)
        if self.scripts.take("alipay_cancel_retry", code=existing.code if existing else None, channel=CHANNEL, out_trade_no=out_trade_no):
            raise _Answer("40004", "ACQ.SYSTEM_ERROR", "系统错误，请重试", retry_flag="Y", out_trade_no=out_trade_no)
        result, order = self.store.reverse(CHANNEL, out_trade_no, merchant=merchant)
        if result is ReverseResult.EXPIRED:
            raise _Answer("40004", "ACQ.TRADE_CANCEL_TIME_OUT", "不在撤销时间范围内", retry_flag="N", out_trade_no=out_trade_no)
        node: dict[str, object] = {"trade_no": order.txn_id, "out_trade_no": out_trade_no, "retry_flag": "N"}
        if result is ReverseResult.REFUNDED:
            node.update(action="refund", gmt_refund_pay=_time(order.closed_at or self.store.now()))
        else:
            node.update(action="close")
        return node, 0.0

    def _refund(self, biz: dict[str, object], merchant: str) -> tuple[dict[str, object], float]:
        out_trade_no = _text(biz, "out_trade_no", _NO)
        refund_fen = _yuan(biz, "refund_amount")
        given = biz.get("out_request_no")
        out_request_no = _text(biz, "out_request_no", _NO) if given not in (None, "") else out_trade_no
        reason = str(biz.get("refund_reason") or "")
        failed = {"out_trade_no": out_trade_no, "refund_fee": "0.00", "send_back_fee": "0.00"}
        if given in (None, ""):
            order = self.store.order(CHANNEL, out_trade_no, merchant=merchant)
            if order is not None and order.total_fen != refund_fen:
                raise _Answer("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "撤销或退款金额与订单金额不一致", **failed)
        result, refund, order = self.store.refund(CHANNEL, out_trade_no, out_request_no, refund_fen, total_fen=None, reason=reason,
                                                  merchant=merchant)
        if result in (RefundResult.DONE, RefundResult.DUPLICATE):
            assert refund is not None and order is not None
            moved = result is RefundResult.DONE and not self.scripts.take("alipay_fund_change_n", code=order.code, channel=CHANNEL,
                                                                            out_trade_no=out_trade_no)
            return {**self._trade(order, self._buyer(order)), "fund_change": "Y" if moved else "N",
                    "refund_fee": format_yuan(order.refunded_fen), "send_back_fee": format_yuan(refund.amount_fen) if result is RefundResult.DONE else "0.00",
                    "gmt_refund_pay": _time(refund.created_at)}, 0.0
        sub = {
            RefundResult.MISMATCH: ("ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求"),
            RefundResult.NOT_EXIST: ("ACQ.TRADE_NOT_EXIST", "交易不存在"),
            RefundResult.NOT_PAID: ("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
            RefundResult.TOTAL_MISMATCH: ("ACQ.INVALID_PARAMETER", "参数无效"),
            RefundResult.FULLY_REFUNDED: ("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额无效"),
            RefundResult.EXCEEDS: ("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额无效"),
        }[result]
        raise _Answer("40004", *sub, **failed)

    def _refund_query(self, biz: dict[str, object], merchant: str) -> tuple[dict[str, object], float]:
        out_trade_no = _text(biz, "out_trade_no", _NO)
        given = biz.get("out_request_no")
        out_request_no = _text(biz, "out_request_no", _NO) if given not in (None, "") else out_trade_no
        order = self.store.order(CHANNEL, out_trade_no, merchant=merchant)
        if order is None or order.code is None:
            raise _Answer("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在")
        refund = self.store.find_refund(CHANNEL, out_request_no, out_trade_no, merchant=merchant)
        if refund is None:
            return {}, 0.0  # Alipay answers "nothing found" with a bare success
        node: dict[str, object] = {"trade_no": order.txn_id, "out_trade_no": out_trade_no, "out_request_no": out_request_no,
                                   "total_amount": format_yuan(order.total_fen), "refund_amount": format_yuan(refund.amount_fen)}
        if self.scripts.take("alipay_refund_status_missing", code=order.code, channel=CHANNEL, out_trade_no=out_trade_no):
            return node, 0.0  # Alipay: no refund_status means not received (yet): query again
        return {**node, "refund_status": "REFUND_SUCCESS", "gmt_refund_pay": _time(refund.created_at)}, 0.0

    def _mine(self, seller_id: str, paid: list[Order], refunds: list[tuple[Refund, Order]]) -> tuple[list[Order], list[tuple[Refund, Order]]]:
        """The part of a day that is `seller_id`'s (the store's merchant "" is our own merchant)."""
        owns = lambda o: (o.merchant or self.merchant.pid) == seller_id  # noqa: E731
        return [o for o in paid if owns(o)], [(r, o) for r, o in refunds if owns(o)]

    def _bill_url(self, biz: dict[str, object], seller_id: str = "") -> tuple[dict[str, object], float]:
        if biz.get("bill_type") != "trade":
            raise _Answer("40004", "ACQ.INVALID_PARAMETER", "参数无效: bill_type (the sandbox serves trade bills)")
        try:
            day = datetime.date.fromisoformat(str(biz.get("bill_date")))
        except ValueError:
            raise _Answer("40004", "ACQ.INVALID_PARAMETER", "参数无效: bill_date 须为 yyyy-MM-dd") from None
        seller_id = seller_id or self.merchant.pid
        paid, refunds = self._mine(seller_id, *self.store.day_activity(CHANNEL, day)) if day < self.store.today() else ([], [])
        if not paid and not refunds:
            raise _Answer("40004", "isp.bill_not_exist", "账单不存在")
        ymd = day.strftime("%Y%m%d")
        expires = str(int(self.store.real()) + BILL_URL_TTL_S)
        query = {"bizType": "trade", "userId": seller_id, "fileType": "csv.zip", "bizDates": ymd,
                 "downloadFileName": f"{seller_id}_{ymd}.csv.zip", "timestamp": expires}
        query["token"] = self._token(query)
        return {"bill_download_url": f"{self.base_url()}/downloadBillFile.resource?{urllib.parse.urlencode(query)}"}, 0.0

    # -- the bill file -----------------------------------------------------------------------

    def _token(self, query: dict[str, str]) -> str:
        signed = "&".join(f"{k}={query[k]}" for k in sorted(query) if k != "token")
        return hmac.new(self._secret, signed.encode("utf-8"), hashlib.sha256).hexdigest()

    def handle_bill_file(self, query: dict[str, str]) -> Reply:
        token = query.get("token", "")
        if not hmac.compare_digest(self._token(query).encode(), token.encode("utf-8", "replace")):
            return Reply(403, "text/plain; charset=utf-8", "invalid token".encode())
        if not query.get("timestamp", "").isdigit() or int(query["timestamp"]) < self.store.real():
            return Reply(403, "text/plain; charset=utf-8", "download URL expired".encode())
        day = datetime.datetime.strptime(query["bizDates"], "%Y%m%d").date()
        seller_id = query.get("userId") or self.merchant.pid
        paid, refunds = self._mine(seller_id, *self.store.day_activity(CHANNEL, day))
        buyers = {o.code: self._buyer(o) for o in paid + [r[1] for r in refunds]}
        data = bills.alipay_bill_zip(
            day, seller_id,
            [bills.payment_line(o, buyers[o.code]) for o in paid],
            [bills.refund_line(r, o, buyers[o.code]) for r, o in refunds],
            datetime.datetime.fromtimestamp(self.store.now(), SHANGHAI).replace(tzinfo=None, microsecond=0),
        )
        return Reply(200, "application/oct-stream", data)


def _text(biz: dict[str, object], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = biz.get(name)
    if not isinstance(value, str) or value == "":
        raise _Answer("40004", "ACQ.INVALID_PARAMETER", f"参数无效: 缺少 {name}")
    if pattern is not None and pattern.fullmatch(value) is None:
        raise _Answer("40004", "ACQ.INVALID_PARAMETER", f"参数无效: {name}")
    return value


def _yuan(biz: dict[str, object], name: str) -> int:
    """An amount as Alipay takes it: yuan with up to two decimals, as a string ("12.50", "12.5",
    "12") or a JSON number (12, 12.5); more decimals, signs and anything else are refused."""
    value = biz.get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Answer("40004", "ACQ.INVALID_PARAMETER", f"参数无效: {name} 须为元金额（最多两位小数）")
    text = repr(value) if isinstance(value, float) else str(value)
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise _Answer("40004", "ACQ.INVALID_PARAMETER", f"参数无效: {name} 须为元金额（最多两位小数）")
    fen = int(match.group(1)) * 100 + int((match.group(2) or "").ljust(2, "0"))
    if fen == 0:
        raise _Answer("40004", "ACQ.INVALID_PARAMETER", f"参数无效: {name} 须大于 0")
    if fen > 100_000_000_00:
        raise _Answer("40004", "ACQ.TOTAL_FEE_EXCEED", "订单金额超过限额")
    return fen
