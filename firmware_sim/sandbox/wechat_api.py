"""The sandbox's WeChat Pay API v2: micropay, orderquery, reverse, refund, refundquery, downloadbill.

Requests are checked the way WeChat Pay checks them: well-formed XML, the merchant's appid and
mch_id, a valid signature with the merchant API key (else return_code FAIL "签名错误", unsigned).
Two kinds of caller: the direct merchant, and a service provider (服务商) acting for one of its
sub-merchants (`sub_mch_id`, optional `sub_appid`), signing with the provider's own key. A
sub_mch_id not bound to that provider is refused (return_code FAIL); the money of a sub-merchant's
orders is the sub-merchant's: its orders are invisible to every other merchant and its bill
(downloadbill with its sub_mch_id) lists only them. Order and refund numbers are each merchant's
own (the store keys them by merchant): two merchants may both use out_trade_no "MZ0001".
Replies carry WeChat's fields and codes and are signed with the request's sign_type. Only
out_trade_no / out_refund_no are supported as keys (not transaction_id / refund_id).
"""

from __future__ import annotations

import datetime
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from firmware_sim.sandbox import bills
from firmware_sim.sandbox.behaviour import FOREIGN, Kind, channel_of_code, foreign_code, mask
from firmware_sim.sandbox.reply import Faults, Reply, SignatureFault, corrupt_signature
from firmware_sim.sandbox.scripts import Scripts
from firmware_sim.sandbox.store import SHANGHAI, Order, OrderState, PayResult, RefundResult, ReverseResult, Store

if TYPE_CHECKING:
    from firmware_sim.sandbox.wechat_notify import RefundNotifier
from gateway.channels.wechat_codec import MD5, SIGN_TYPES, WeChatXmlError, parse_xml, sign, to_xml, verify

log = logging.getLogger(__name__)
CHANNEL = "WECHAT"
PATHS = ("/pay/micropay", "/pay/orderquery", "/secapi/pay/reverse", "/secapi/pay/refund", "/pay/refundquery", "/pay/downloadbill")
_OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_\-|*]{6,32}", re.ASCII)
_OUT_REFUND_NO = re.compile(r"[A-Za-z0-9_\-|*@]{1,64}", re.ASCII)
_FEN = re.compile(r"[1-9][0-9]{0,10}", re.ASCII)
_XML = "text/xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class WeChatMerchant:
    appid: str
    mch_id: str
    api_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class WeChatProvider:
    """A service provider and the sub-merchants bound to it (特约商户)."""

    appid: str
    mch_id: str
    api_key: str = field(repr=False)
    sub_mch_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Caller:
    """Who is asking: the signing party, and whose orders it may see (`payee`, the store's merchant)."""

    appid: str
    mch_id: str
    api_key: str = field(repr=False)
    sub_mch_id: str | None = None
    sub_appid: str | None = None

    @property
    def payee(self) -> str:
        return self.sub_mch_id or ""  # "": the direct merchant (as before service-provider mode)

    def ids(self) -> dict[str, str]:
        ids = {"appid": self.appid, "mch_id": self.mch_id}
        if self.sub_mch_id:
            ids["sub_mch_id"] = self.sub_mch_id
        if self.sub_appid:
            ids["sub_appid"] = self.sub_appid
        return ids


class _Refuse(Exception):
    """A business refusal: result_code FAIL with this err_code."""

    def __init__(self, err_code: str, description: str) -> None:
        super().__init__(err_code)
        self.err_code = err_code
        self.description = description


def _fail(message: str) -> Reply:
    """return_code FAIL: communication-level refusal, unsigned as WeChat sends it."""
    return Reply(200, _XML, to_xml({"return_code": "FAIL", "return_msg": message}))


def _time(ts: float, fmt: str = "%Y%m%d%H%M%S") -> str:
    return datetime.datetime.fromtimestamp(ts, SHANGHAI).strftime(fmt)


class WeChatApi:
    def __init__(self, store: Store, merchant: WeChatMerchant, faults: Faults, scripts: Scripts | None = None,
                 provider: WeChatProvider | None = None, notifier: "RefundNotifier | None" = None) -> None:
        self.store = store
        self.merchant = merchant
        self.provider = provider
        self.faults = faults
        self.scripts = scripts or Scripts()
        self.notifier = notifier

    def _caller(self, fields: dict[str, str]) -> _Caller | Reply:
        provider = self.provider
        if provider is not None and fields.get("mch_id") == provider.mch_id:
            if fields.get("appid") != provider.appid:
                return _fail("appid不存在")
            sub_mch_id = fields.get("sub_mch_id") or ""
            if not sub_mch_id:
                return _fail("缺少参数sub_mch_id")
            if sub_mch_id not in provider.sub_mch_ids:
                log.info("wechat: sub_mch_id %s is not bound to provider %s", sub_mch_id, provider.mch_id)
                return _fail("特约子商户号sub_mch_id与服务商商户号mch_id不匹配")
            return _Caller(provider.appid, provider.mch_id, provider.api_key, sub_mch_id, fields.get("sub_appid") or None)
        if fields.get("appid") != self.merchant.appid:
            return _fail("appid不存在")
        if fields.get("mch_id") != self.merchant.mch_id:
            return _fail("商户号mch_id与appid不匹配")
        if fields.get("sub_mch_id"):
            return _fail("非服务商商户号不能传sub_mch_id")
        return _Caller(self.merchant.appid, self.merchant.mch_id, self.merchant.api_key)

    def handle(self, path: str, body: bytes) -> Reply:
        try:
            fields = parse_xml(body)
        except WeChatXmlError:
            return _fail("XML格式错误")
        caller = self._caller(fields)
        if isinstance(caller, Reply):
            return caller
        sign_type = fields.get("sign_type") or MD5  # WeChat's default
        if sign_type not in SIGN_TYPES:
            return _fail("签名类型错误")
        if not verify(fields, caller.api_key, sign_type):
            log.info("wechat %s: bad request signature", path)
            return _fail("签名错误")
        if not fields.get("nonce_str"):
            return _fail("缺少参数nonce_str")
        if path == "/pay/downloadbill":
            return self._download_bill(fields, caller)
        handler = {
            "/pay/micropay": self._micropay,
            "/pay/orderquery": self._orderquery,
            "/secapi/pay/reverse": self._reverse,
            "/secapi/pay/refund": self._refund,
            "/pay/refundquery": self._refundquery,
        }[path]
        delay = 0.0
        try:
            result = handler(fields, caller)
            if isinstance(result, Reply):
                return result
            answer, delay = result
            answer = {"result_code": "SUCCESS", **answer}
        except _Refuse as refusal:
            answer = {"result_code": "FAIL", "err_code": refusal.err_code, "err_code_des": refusal.description}
        return self._signed(answer, sign_type, delay, caller)

    def _signed(self, answer: dict[str, str], sign_type: str, delay: float, caller: _Caller) -> Reply:
        fields = {"return_code": "SUCCESS", "return_msg": "OK", **caller.ids(), "nonce_str": secrets.token_hex(16), **answer}
        fields["sign"] = sign(fields, caller.api_key, sign_type)
        fault = self.faults.signature(CHANNEL)
        if fault is SignatureFault.CORRUPT:
            fields["sign"] = corrupt_signature(fields["sign"])
        elif fault is SignatureFault.MISSING:
            del fields["sign"]
        elif fault is SignatureFault.TAMPER:
            key = "total_fee" if "total_fee" in fields else "nonce_str"
            fields[key] = str(int(fields[key]) + 100) if key == "total_fee" else fields[key] + "x"
        return Reply(200, _XML, to_xml(fields), delay_s=delay)

    # -- endpoints ---------------------------------------------------------------------------

    def _order(self, out_trade_no: str, caller: _Caller) -> Order | None:
        """The caller's order by that number: another merchant's order does not exist for it."""
        return self.store.order(CHANNEL, out_trade_no, merchant=caller.payee)

    def _micropay(self, fields: dict[str, str], caller: _Caller) -> tuple[dict[str, str], float] | Reply:
        out_trade_no = _required(fields, "out_trade_no", _OUT_TRADE_NO)
        total_fen = int(_required(fields, "total_fee", _FEN))
        _required(fields, "body")
        _required(fields, "spbill_create_ip")
        code = _required(fields, "auth_code")
        if channel_of_code(code) != CHANNEL:
            kind = foreign_code(code)
            raise _Refuse("AUTH_CODE_INVALID", FOREIGN[kind][1] if kind else "101 付款码无效，请重新扫码")
        account = self.store.account(code)
        behaviour = account.behaviour if account is not None and account.channel == CHANNEL else None
        log.info("wechat micropay %s code %s %d fen (%s)", out_trade_no, mask(code), total_fen, behaviour.text if behaviour else "unknown code")
        if behaviour is not None and behaviour.kind is Kind.NOREPLY:
            return Reply(200, _XML, b"", swallow=True)
        delay = behaviour.seconds if behaviour is not None and behaviour.kind is Kind.SLOW else 0.0
        result, order = self.store.pay(CHANNEL, out_trade_no, code, total_fen, fields["body"][:128], fields.get("device_info"),
                                       merchant=caller.payee)
        if result is PayResult.PAID:
            assert order is not None
            return self._paid_fields(order, account.buyer_id if account else ""), delay
        refusal = {
            PayResult.USERPAYING: ("USERPAYING", "需要用户输入支付密码"),
            PayResult.INSUFFICIENT: ("NOTENOUGH", "余额不足"),
            PayResult.CODE_INVALID: ("AUTH_CODE_INVALID", "每个二维码仅限使用一次，请刷新再试"),
            PayResult.CODE_EXPIRED: ("AUTHCODEEXPIRE", "二维码已过期，请用户在微信上刷新后再试"),
            PayResult.SYSTEM_ERROR: ("SYSTEMERROR", "系统超时"),
            PayResult.ALREADY_PAID: ("ORDERPAID", "订单已支付"),
            PayResult.ALREADY_CLOSED: ("ORDERREVERSED", "订单已撤销"),
            PayResult.ALREADY_REVOKED: ("ORDERREVERSED", "订单已撤销"),
            PayResult.CONFLICT: ("OUT_TRADE_NO_USED", "商户订单号重复"),
        }[result]
        raise _Refuse(*refusal)

    def _paid_fields(self, order: Order, openid: str) -> dict[str, str]:
        answer = {
            "openid": openid, "is_subscribe": "N", "trade_type": "MICROPAY", "bank_type": "OTHERS", "fee_type": "CNY",
            "total_fee": str(order.total_fen), "cash_fee_type": "CNY", "cash_fee": str(order.total_fen),
            "transaction_id": order.txn_id, "out_trade_no": order.out_trade_no, "time_end": _time(order.paid_at or order.created_at),
        }
        if order.device_info:
            answer["device_info"] = order.device_info
        return answer

    def _orderquery(self, fields: dict[str, str], caller: _Caller) -> tuple[dict[str, str], float]:
        out_trade_no = _required(fields, "out_trade_no", _OUT_TRADE_NO)
        order = self._order(out_trade_no, caller)
        if order is None:
            raise _Refuse("ORDERNOTEXIST", "此交易订单号不存在")
        account = self.store.account(order.code) if order.code else None
        if order.state is OrderState.SUCCESS:
            answer = self._paid_fields(order, account.buyer_id if account else "")
            state = "REFUND" if order.refunded_fen else "SUCCESS"
            return {**answer, "trade_state": state, "trade_state_desc": "支付成功" if state == "SUCCESS" else "转入退款"}, 0.0
        state, desc = {
            OrderState.USERPAYING: ("USERPAYING", "需要用户输入支付密码"),
            OrderState.PAYERROR: ("PAYERROR", "支付失败"),
            OrderState.CLOSED: ("REVOKED", "已撤销"),
            OrderState.REVOKED: ("REVOKED", "已撤销"),
        }[order.state]
        answer = {"out_trade_no": order.out_trade_no, "transaction_id": order.txn_id, "trade_state": state, "trade_state_desc": desc}
        if order.total_fen:
            answer["total_fee"] = str(order.total_fen)
        return answer, 0.0

    def _reverse(self, fields: dict[str, str], caller: _Caller) -> tuple[dict[str, str], float]:
        out_trade_no = _required(fields, "out_trade_no", _OUT_TRADE_NO)
        existing = self._order(out_trade_no, caller)
        if self.scripts.take("wechat_reverse_recall", code=existing.code if existing else None, channel=CHANNEL, out_trade_no=out_trade_no):
            return {"recall": "Y"}, 0.0  # "需要继续调用撤销": nothing was reversed yet
        result, _order = self.store.reverse(CHANNEL, out_trade_no, merchant=caller.payee)
        if result is ReverseResult.EXPIRED:
            raise _Refuse("REVERSE_EXPIRE", "订单已超过撤销期限")
        return {"recall": "N"}, 0.0

    def _refund(self, fields: dict[str, str], caller: _Caller) -> tuple[dict[str, str], float] | Reply:
        out_trade_no = _required(fields, "out_trade_no", _OUT_TRADE_NO)
        out_refund_no = _required(fields, "out_refund_no", _OUT_REFUND_NO)
        total_fen = int(_required(fields, "total_fee", _FEN))
        refund_fen = int(_required(fields, "refund_fee", _FEN))
        if refund_fen > total_fen:
            return _fail("invalid refund_fee")  # WeChat refuses this one before looking at the order
        if self._order(out_trade_no, caller) is None:
            raise _Refuse("ORDERNOTEXIST", "订单不存在")
        result, refund, order = self.store.refund(CHANNEL, out_trade_no, out_refund_no, refund_fen, total_fen=total_fen,
                                                  reason=fields.get("refund_desc", ""), merchant=caller.payee)
        if result in (RefundResult.DONE, RefundResult.DUPLICATE):
            assert refund is not None and order is not None
            if result is RefundResult.DONE and self.notifier is not None and fields.get("notify_url"):
                self.notifier.refund_done_v2(fields["notify_url"], caller.ids(), caller.api_key, refund, order)
            return {
                "transaction_id": order.txn_id, "out_trade_no": out_trade_no, "out_refund_no": out_refund_no,
                "refund_id": refund.refund_id, "refund_fee": str(refund.amount_fen), "total_fee": str(order.total_fen),
                "cash_fee": str(order.total_fen), "cash_refund_fee": str(refund.amount_fen), "coupon_refund_fee": "0",
                "refund_channel": "",
            }, 0.0
        raise _Refuse(*{
            RefundResult.MISMATCH: ("REFUND_FEE_MISMATCH", "订单金额或退款金额与之前请求不一致，请核实后再试"),
            RefundResult.NOT_EXIST: ("ORDERNOTEXIST", "订单不存在"),
            RefundResult.NOT_PAID: ("ERROR", "订单状态错误，订单未支付或已撤销"),
            RefundResult.TOTAL_MISMATCH: ("ERROR", "您的请求参数与订单信息不一致"),
            RefundResult.FULLY_REFUNDED: ("ERROR", "订单已全额退款"),
            RefundResult.EXCEEDS: ("INVALID_REQUEST", "refund_fee大于可退金额"),
        }[result])

    def _refundquery(self, fields: dict[str, str], caller: _Caller) -> tuple[dict[str, str], float]:
        out_refund_no = fields.get("out_refund_no")
        if out_refund_no:
            refund = self.store.find_refund(CHANNEL, out_refund_no, merchant=caller.payee)
            refunds = [refund] if refund is not None else []
            order = self._order(refund.out_trade_no, caller) if refund is not None else None
        else:
            out_trade_no = _required(fields, "out_trade_no", _OUT_TRADE_NO)
            order = self._order(out_trade_no, caller)
            refunds = [r for r in self.store.refunds_for(order.code) if r.out_trade_no == out_trade_no and r.merchant == caller.payee
                       and r.kind == "REFUND"] if order and order.code else []
        if not refunds or order is None:
            raise _Refuse("REFUNDNOTEXIST", "退款订单查询失败")
        answer = {"transaction_id": order.txn_id, "out_trade_no": order.out_trade_no, "total_fee": str(order.total_fen),
                  "cash_fee": str(order.total_fen), "refund_count": str(len(refunds)), "total_refund_count": str(len(refunds))}
        scripted = self.scripts.take("wechat_refund_status", code=order.code, channel=CHANNEL, out_trade_no=order.out_trade_no)
        for n, refund in enumerate(refunds):
            status = scripted or "SUCCESS"
            answer.update({
                f"out_refund_no_{n}": refund.out_refund_no, f"refund_id_{n}": refund.refund_id, f"refund_channel_{n}": "ORIGINAL",
                f"refund_fee_{n}": str(refund.amount_fen), f"refund_status_{n}": status,
                f"refund_account_{n}": "REFUND_SOURCE_UNSETTLED_FUNDS", f"refund_recv_accout_{n}": "支付用户零钱",
            })
            if status == "SUCCESS":
                answer[f"refund_success_time_{n}"] = _time(refund.created_at, "%Y-%m-%d %H:%M:%S")
        return answer, 0.0

    def _download_bill(self, fields: dict[str, str], caller: _Caller) -> Reply:
        bill_type = fields.get("bill_type") or "ALL"
        try:
            day = datetime.datetime.strptime(fields.get("bill_date", ""), "%Y%m%d").date()
        except ValueError:
            return _fail("invalid bill_date")
        if bill_type not in bills.WECHAT_BILL_TYPES:
            return _fail("invalid bill_type")
        if day >= self.store.today():
            return _fail("invalid bill_date")  # a day's bill exists from the next morning on
        paid, refunds = self.store.day_activity(CHANNEL, day, merchant=caller.payee)
        if not paid and not refunds:
            return Reply(200, _XML, to_xml({"return_code": "FAIL", "return_msg": "No Bill Exist", "error_code": "20002"}))
        accounts = {o.code: self.store.account(o.code) for o in paid + [r[1] for r in refunds] if o.code}
        buyer = {code: (a.buyer_id if a else "") for code, a in accounts.items()}
        text = bills.wechat_bill(
            bill_type, caller.appid, caller.mch_id,
            [bills.payment_line(o, buyer.get(o.code or "", "")) for o in paid],
            [bills.refund_line(r, o, buyer.get(o.code or "", "")) for r, o in refunds],
            sub_mch_id=caller.sub_mch_id or "0",
        )
        return Reply(200, "text/plain; charset=utf-8", text.encode("utf-8"))


def _required(fields: dict[str, str], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = fields.get(name, "")
    if value == "":
        raise _Refuse("LACK_PARAMS", f"缺少参数{name}")
    if pattern is not None and pattern.fullmatch(value) is None:
        raise _Refuse("PARAM_ERROR", f"参数{name}格式错误")
    return value
