"""WeChat Pay API v2 client for barcode payments ("付款码支付" / micropay), over requests.

Endpoints (relative to `base_url`, production https://api.mch.weixin.qq.com):
    /pay/micropay  /pay/orderquery  /secapi/pay/reverse  /secapi/pay/refund  /pay/refundquery
    /pay/downloadbill
Production needs the merchant's API client certificate for the /secapi calls (`cert_path`,
`key_path`); the sandbox ignores it. Every request is signed with HMAC-SHA256; every reply must be
signed with the same key or it is not believed (UNKNOWN). Replies are checked to be about the
merchant and the order asked for, so a signed reply for another order cannot be replayed here.

Service-provider mode (服务商模式): `mch_id` / `appid` / `api_key` are the provider's, and
`sub_mch_id` (with an optional `sub_appid`) names the hospital's sub-merchant the money goes to;
every request carries it and every reply must be about it.

The mapping from WeChat's codes to outcomes lives in `wechat_outcomes` (pure functions).
"""

from __future__ import annotations

import datetime
import logging
import re
import secrets
from dataclasses import dataclass, field

import requests

from protocol.messages import PayChannel
from gateway.channels import failures
from gateway.channels import wechat_outcomes as outcomes
from gateway.channels.failures import NoAnswer
from terminal.channels.base import PayOutcome, RefundOutcome, ReverseOutcome
from gateway.channels.errors import BillDownloadError, ChannelConfigError
from gateway.channels.http import MAX_BILL_BYTES, HttpFailure, SessionPool, Timeouts, exchange, mask_code
from gateway.channels.wechat_codec import HMAC_SHA256, WeChatXmlError, parse_xml, sign, to_xml, verify

log = logging.getLogger(__name__)

PRODUCTION_BASE_URL = "https://api.mch.weixin.qq.com"
# WeChat Pay's POS guide: query every 3-5 s; unpaid barcode orders are revoked by WeChat after 45 s,
# and merchants are told to stop after about 30 s and reverse (see docs/simulator.md, sources).
QUERY_INTERVAL_S = 5.0
PAY_DEADLINE_S = 30.0
# A reverse answered with recall=Y is to be called again; a short pause avoids hammering.
REVERSE_RETRY_INTERVAL_S = 2.0
# WeChat Pay's POS guide: "支付交易返回失败或支付系统超时，调用撤销订单接口... 请勿在调用支付接口后立即调用撤销，
# 建议支付后至少15s后再调用撤销订单接口". The POS waits this long after micropay before any reverse.
REVERSE_NOT_BEFORE_S = 15.0
_OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_\-|*]{6,32}", re.ASCII)
_OUT_REFUND_NO = re.compile(r"[A-Za-z0-9_\-|*@]{1,64}", re.ASCII)


@dataclass(frozen=True, slots=True)
class WeChatPayConfig:
    appid: str
    mch_id: str
    api_key: str = field(repr=False)
    base_url: str = PRODUCTION_BASE_URL
    spbill_create_ip: str = "127.0.0.1"  # the terminal's IP, as WeChat asks for micropay
    device_info: str | None = None  # terminal number shown in the bill's 设备号 column
    cert_path: str | None = None  # merchant API certificate (apiclient_cert.pem), for /secapi
    key_path: str | None = None  # its private key (apiclient_key.pem)
    verify_tls: bool | str = True  # or a CA bundle path
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    query_interval_s: float = QUERY_INTERVAL_S
    pay_deadline_s: float = PAY_DEADLINE_S
    reverse_not_before_s: float = REVERSE_NOT_BEFORE_S
    sub_mch_id: str | None = None  # service-provider mode: the sub-merchant (特约商户) paid
    sub_appid: str | None = None  # its own appid, when it has one
    notify_url: str | None = None  # where WeChat Pay sends refund notifications (the gateway's endpoint)

    def __post_init__(self) -> None:
        for name in ("sub_mch_id", "sub_appid"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.isascii() or not value.isalnum()):
                raise ChannelConfigError(f"wechat.{name} must be letters and digits")
        if self.sub_appid is not None and self.sub_mch_id is None:
            raise ChannelConfigError("wechat.sub_appid needs wechat.sub_mch_id (service-provider mode)")
        if not isinstance(self.reverse_not_before_s, (int, float)) or isinstance(self.reverse_not_before_s, bool) or self.reverse_not_before_s < 0:
            raise ChannelConfigError("wechat.reverse_not_before_s must be a number of seconds, 0 or more")
        for name in ("appid", "mch_id", "api_key", "base_url"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ChannelConfigError(f"wechat.{name} is required")
        if not self.base_url.startswith(("https://", "http://")):
            raise ChannelConfigError(f"wechat.base_url {self.base_url!r} must be an http(s) URL")
        if (self.cert_path is None) != (self.key_path is None):
            raise ChannelConfigError("wechat.cert_path and wechat.key_path go together")
        for name in ("connect_timeout_s", "read_timeout_s", "query_interval_s", "pay_deadline_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ChannelConfigError(f"wechat.{name} must be a positive number of seconds")


class WeChatPayClient:
    channel = PayChannel.WECHAT
    query_interval_s: float = QUERY_INTERVAL_S
    pay_deadline_s: float = PAY_DEADLINE_S
    reverse_retry_interval_s: float = REVERSE_RETRY_INTERVAL_S
    reverse_not_before_s: float = REVERSE_NOT_BEFORE_S

    def __init__(self, config: WeChatPayConfig, *, session: requests.Session | None = None) -> None:
        self.config = config
        self.query_interval_s = config.query_interval_s
        self.pay_deadline_s = config.pay_deadline_s
        self.reverse_not_before_s = config.reverse_not_before_s
        self._sessions = SessionPool(session)
        self._base = config.base_url.rstrip("/")
        self._timeouts = Timeouts(config.connect_timeout_s, config.read_timeout_s)
        self._cert = (config.cert_path, config.key_path) if config.cert_path and config.key_path else None

    # -- the ChannelClient interface ---------------------------------------------------------

    def pay(self, *, out_trade_no: str, auth_code: str, total_fen: int, subject: str, order_no: str | None = None,
            terminal_id: str | None = None) -> PayOutcome:
        _check_out_trade_no(out_trade_no)
        if type(total_fen) is not int or total_fen <= 0:
            raise ValueError(f"total_fen must be a positive int, got {total_fen!r}")
        if not auth_code.isascii() or not auth_code.isdigit():
            raise ValueError("auth_code must be the scanned digits")
        fields = {
            "body": subject[:128] or "-",
            "out_trade_no": out_trade_no,
            "total_fee": str(total_fen),
            "spbill_create_ip": self.config.spbill_create_ip,
            "auth_code": auth_code,
        }
        if self.config.device_info:
            fields["device_info"] = self.config.device_info
        log.info("wechat micropay %s code %s %d fen", out_trade_no, mask_code(auth_code), total_fen)
        reply = self._call("/pay/micropay", fields)
        outcome = failures.as_pay(reply) if isinstance(reply, NoAnswer) else outcomes.pay_outcome(reply, out_trade_no)
        log.info("wechat micropay %s -> %s %s", out_trade_no, outcome.state.value, outcome.channel_code or "")
        return outcome

    def query(self, out_trade_no: str) -> PayOutcome:
        _check_out_trade_no(out_trade_no)
        reply = self._call("/pay/orderquery", {"out_trade_no": out_trade_no})
        outcome = failures.as_query(reply) if isinstance(reply, NoAnswer) else outcomes.query_outcome(reply, out_trade_no)
        log.info("wechat orderquery %s -> %s %s", out_trade_no, outcome.state.value, outcome.channel_code or "")
        return outcome

    def reverse(self, out_trade_no: str) -> ReverseOutcome:
        _check_out_trade_no(out_trade_no)
        reply = self._call("/secapi/pay/reverse", {"out_trade_no": out_trade_no}, cert=True)
        outcome = failures.as_reverse(reply) if isinstance(reply, NoAnswer) else outcomes.reverse_outcome(reply)
        log.info("wechat reverse %s -> %s %s", out_trade_no, outcome.state.value, outcome.channel_code or "")
        return outcome

    def refund(self, *, out_trade_no: str, out_refund_no: str, total_fen: int, refund_fen: int, reason: str,
               order_no: str | None = None, instruction: bytes | None = None) -> RefundOutcome:
        # order_no and instruction are the POS-side interface's (the gateway checks them); the channel never sees them.
        _check_out_trade_no(out_trade_no)
        _check_out_refund_no(out_refund_no)
        if type(total_fen) is not int or type(refund_fen) is not int or not 0 < refund_fen <= total_fen:
            raise ValueError(f"refund_fen must be an int in 1..total_fen, got {refund_fen!r} of {total_fen!r}")
        fields = {
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            "total_fee": str(total_fen),
            "refund_fee": str(refund_fen),
            "refund_desc": reason[:80],
        }
        if self.config.notify_url:
            fields["notify_url"] = self.config.notify_url
        reply = self._call("/secapi/pay/refund", fields, cert=True)
        if isinstance(reply, NoAnswer):
            outcome = failures.as_refund(reply)
        else:
            outcome = outcomes.refund_outcome(reply, out_trade_no, out_refund_no)
        log.info("wechat refund %s/%s %d fen -> %s %s", out_trade_no, out_refund_no, refund_fen, outcome.state.value, outcome.channel_code or "")
        return outcome

    def refund_query(self, *, out_trade_no: str, out_refund_no: str) -> RefundOutcome:
        _check_out_trade_no(out_trade_no)
        _check_out_refund_no(out_refund_no)
        # WeChat takes one of refund_id / out_refund_no / transaction_id / out_trade_no; the refund
        # number alone selects exactly this refund.
        reply = self._call("/pay/refundquery", {"out_refund_no": out_refund_no})
        if isinstance(reply, NoAnswer):
            outcome = failures.as_refund_query(reply)
        else:
            outcome = outcomes.refund_query_outcome(reply, out_trade_no, out_refund_no)
        log.info("wechat refundquery %s/%s -> %s %s", out_trade_no, out_refund_no, outcome.state.value, outcome.channel_code or "")
        return outcome

    def download_bill(self, bill_date: datetime.date, bill_type: str = "ALL") -> bytes:
        """The day's bill CSV as WeChat serves it (UTF-8, backtick-prefixed values)."""
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            raise ValueError(f"bill_type must be ALL, SUCCESS or REFUND, not {bill_type!r}")
        fields = self._signed({"bill_date": bill_date.strftime("%Y%m%d"), "bill_type": bill_type})
        reply = exchange(
            self._sessions.get(), "POST", self._base + "/pay/downloadbill", timeouts=self._timeouts, body=to_xml(fields),
            headers={"Content-Type": "text/xml; charset=utf-8"}, max_bytes=MAX_BILL_BYTES, verify=self.config.verify_tls,
        )
        if isinstance(reply, HttpFailure):
            raise BillDownloadError(f"WeChat Pay bill {bill_date}: {reply.value}")
        if reply.body.lstrip().startswith(b"<xml"):
            # Errors come back as an (unsigned) XML document instead of the CSV.
            try:
                error = parse_xml(reply.body)
            except WeChatXmlError as exc:
                raise BillDownloadError(f"WeChat Pay bill {bill_date}: unreadable reply ({exc})") from None
            message = error.get("return_msg", "")
            no_bill = message in ("No Bill Exist", "invalid bill_date") or error.get("error_code") == "20002"
            raise BillDownloadError(f"WeChat Pay bill {bill_date}: {message}", no_bill=no_bill, channel_code=error.get("error_code") or message)
        return reply.body

    # -- plumbing ----------------------------------------------------------------------------

    def _ids(self) -> dict[str, str]:
        ids = {"appid": self.config.appid, "mch_id": self.config.mch_id}
        if self.config.sub_mch_id:
            ids["sub_mch_id"] = self.config.sub_mch_id
        if self.config.sub_appid:
            ids["sub_appid"] = self.config.sub_appid
        return ids

    def _signed(self, fields: dict[str, str]) -> dict[str, str]:
        signed = {
            **self._ids(),
            "nonce_str": secrets.token_hex(16),
            "sign_type": HMAC_SHA256,
            **fields,
        }
        signed["sign"] = sign(signed, self.config.api_key, HMAC_SHA256)
        return signed

    def _call(self, path: str, fields: dict[str, str], *, cert: bool = False) -> dict[str, str] | NoAnswer:
        """The verified reply fields, or why there is no answer to act on (`failures`)."""
        reply = exchange(
            self._sessions.get(), "POST", self._base + path, timeouts=self._timeouts, body=to_xml(self._signed(fields)),
            headers={"Content-Type": "text/xml; charset=utf-8"}, cert=self._cert if cert else None,
            verify=self.config.verify_tls,
        )
        if isinstance(reply, HttpFailure):
            return failures.unknown(f"http_{reply.value}", "no reply from WeChat Pay")
        try:
            parsed = parse_xml(reply.body)
        except WeChatXmlError as exc:
            log.warning("wechat %s: unreadable reply: %s", path, exc)
            return failures.unknown("malformed_reply", "unreadable reply from WeChat Pay")
        if parsed.get("return_code") == "FAIL":
            # WeChat: return_code is the communication flag; FAIL means the request was not
            # processed (签名错误: the API key differs; 商户号mch_id与appid不匹配 ...). Unsigned by design.
            message = parsed.get("return_msg", "")[:128]
            log.error("wechat %s: the request was rejected (return_code FAIL %s): check the merchant settings", path, message)
            return failures.rejected(f"WeChat Pay rejected the request (return_code FAIL): {message}")
        if parsed.get("return_code") != "SUCCESS":
            return failures.unknown("malformed_reply", "reply from WeChat Pay without a return_code")
        if not verify(parsed, self.config.api_key, HMAC_SHA256):
            log.error("wechat %s: reply signature missing or wrong; not believed (the channel may have acted)", path)
            return failures.unverified("reply from WeChat Pay failed its signature check: check the API key")
        if (parsed.get("appid") != self.config.appid or parsed.get("mch_id") != self.config.mch_id
                or (parsed.get("sub_mch_id") or None) != self.config.sub_mch_id):
            log.warning("wechat %s: reply is for another merchant; not believed", path)
            return failures.unknown("wrong_merchant", "reply from WeChat Pay is for another merchant")
        return parsed


def _check_out_trade_no(value: str) -> None:
    if not isinstance(value, str) or _OUT_TRADE_NO.fullmatch(value) is None:
        raise ValueError(f"out_trade_no {value!r} must be 6-32 of [A-Za-z0-9_-|*] (WeChat Pay's rule)")


def _check_out_refund_no(value: str) -> None:
    if not isinstance(value, str) or _OUT_REFUND_NO.fullmatch(value) is None:
        raise ValueError(f"out_refund_no {value!r} must be 1-64 of [A-Za-z0-9_-|*@] (WeChat Pay's rule)")
