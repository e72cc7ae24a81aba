"""Alipay OpenAPI client for face-to-face barcode payments ("当面付 条码支付"), over requests.

One gateway (production https://openapi.alipay.com/gateway.do), one POSTed form per call with the
common parameters (app_id, method, format=JSON, charset=utf-8, sign_type=RSA2, timestamp in
Asia/Shanghai, version=1.0) and the call's own fields as the `biz_content` JSON. Requests are
signed with the app's RSA private key; replies must verify with the Alipay public key or they are
not believed (UNKNOWN). Amounts travel as yuan strings ("12.50") and go through protocol.amount.

Modes: the app's own or, in third-party application mode (第三方应用), the provider's app with the
hospital's `app_auth_token` on every request; the Alipay public key, or certificate mode (公钥证书模式:
`app_cert_sn` and `alipay_root_cert_sn` on every request, each reply verified with the Alipay
certificate its `alipay_cert_sn` names; alipay_cert.py). `alipay.trade.pay` names `notify_url` when
configured; `verify_notification` checks Alipay's async notifications (gateway/notifications.py).

Methods: alipay.trade.pay (scene=bar_code), alipay.trade.query, alipay.trade.cancel,
alipay.trade.refund, alipay.trade.fastpay.refund.query, alipay.data.dataservice.bill.downloadurl.query.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass

import requests
from Crypto.PublicKey import RSA

from protocol.amount import format_yuan
from protocol.messages import PayChannel
from gateway.channels import alipay_outcomes as outcomes
from gateway.channels import failures
from gateway.channels.failures import NoAnswer
from gateway.channels.alipay_cert import AlipayCertificates
from gateway.channels.alipay_codec import (AlipayReplyError, SignedReply, load_private_key, load_public_key, notify_sign_content, parse_reply,
                                          rsa2_sign, rsa2_verify, sign_content)
from terminal.channels.base import PayOutcome, RefundOutcome, ReverseOutcome
from gateway.channels.errors import BillDownloadError, ChannelConfigError
from gateway.channels.http import MAX_BILL_BYTES, HttpFailure, SessionPool, Timeouts, exchange, mask_code

log = logging.getLogger(__name__)

PRODUCTION_GATEWAY = "https://openapi.alipay.com/gateway.do"
# Alipay's face-to-face demo polls every 5 s and cancels after about 30 s (see docs/simulator.md).
QUERY_INTERVAL_S = 5.0
PAY_DEADLINE_S = 30.0
REVERSE_RETRY_INTERVAL_S = 2.0
# China has kept UTC+8 without daylight saving since 1991; a fixed offset needs no tz database.
SHANGHAI = datetime.timezone(datetime.timedelta(hours=8), "Asia/Shanghai")
_OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_\-]{1,64}", re.ASCII)
_TOKEN = re.compile(r"[A-Za-z0-9._\-]{1,128}", re.ASCII)
_CERT_FIELDS = ("app_cert_pem", "alipay_cert_pem", "alipay_root_cert_pem")


@dataclass(frozen=True, slots=True)
class AlipayConfig:
    app_id: str
    private_key_pem: str  # path to the app's RSA private key (PEM, or the bare base64 Alipay's tool prints), or the PEM text itself
    alipay_public_key_pem: str = ""  # path to the Alipay public key of this app, or the PEM text itself (public-key mode)
    gateway: str = PRODUCTION_GATEWAY
    # Third-party application mode (第三方应用): the provider's app calls for a hospital that authorised
    # it; the token says which merchant, and the money lands on that merchant's account.
    app_auth_token: str | None = None
    # Certificate mode (公钥证书模式), instead of alipay_public_key_pem: the app's certificate, the Alipay
    # public certificate(s) and the Alipay root chain (paths or PEM text).
    app_cert_pem: str | None = None
    alipay_cert_pem: str | None = None
    alipay_root_cert_pem: str | None = None
    notify_url: str | None = None  # where Alipay sends its async notifications (the gateway's endpoint)
    store_id: str | None = None  # optional 门店编号 / terminal number, shown in the bill
    terminal_id: str | None = None
    verify_tls: bool | str = True
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    query_interval_s: float = QUERY_INTERVAL_S
    pay_deadline_s: float = PAY_DEADLINE_S
    reverse_not_before_s: float = 0.0  # Alipay documents no wait before alipay.trade.cancel

    def __post_init__(self) -> None:
        if not isinstance(self.reverse_not_before_s, (int, float)) or isinstance(self.reverse_not_before_s, bool) or self.reverse_not_before_s < 0:
            raise ChannelConfigError("alipay.reverse_not_before_s must be a number of seconds, 0 or more")
        for name in ("app_id", "private_key_pem", "gateway"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ChannelConfigError(f"alipay.{name} is required")
        certs = [getattr(self, n) for n in _CERT_FIELDS]
        if any(c is not None for c in certs):
            if not all(isinstance(c, str) and c for c in certs):
                raise ChannelConfigError("alipay certificate mode needs all of " + ", ".join(_CERT_FIELDS))
            if self.alipay_public_key_pem:
                raise ChannelConfigError("alipay: give alipay_public_key_pem (public-key mode) or the certificates (certificate mode), not both")
        elif not isinstance(self.alipay_public_key_pem, str) or not self.alipay_public_key_pem:
            raise ChannelConfigError("alipay.alipay_public_key_pem is required (or, in certificate mode, " + ", ".join(_CERT_FIELDS) + ")")
        if self.app_auth_token is not None and (not isinstance(self.app_auth_token, str) or _TOKEN.fullmatch(self.app_auth_token) is None):
            raise ChannelConfigError("alipay.app_auth_token must be the token Alipay issued (1-128 letters, digits, '.', '_' or '-')")
        if self.notify_url is not None and (not isinstance(self.notify_url, str) or not self.notify_url.startswith(("https://", "http://"))):
            raise ChannelConfigError(f"alipay.notify_url {self.notify_url!r} must be an http(s) URL")
        if not self.gateway.startswith(("https://", "http://")):
            raise ChannelConfigError(f"alipay.gateway {self.gateway!r} must be an http(s) URL")
        for name in ("connect_timeout_s", "read_timeout_s", "query_interval_s", "pay_deadline_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ChannelConfigError(f"alipay.{name} must be a positive number of seconds")


def _read_key(path: str, what: str) -> str:
    # The gateway holds keys sealed in its database, never in files: it passes the PEM text itself.
    if path.lstrip().startswith("-----BEGIN"):
        return path
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ChannelConfigError(f"cannot read the {what} at {path}: {exc}") from None


class AlipayClient:
    channel = PayChannel.ALIPAY
    query_interval_s: float = QUERY_INTERVAL_S
    pay_deadline_s: float = PAY_DEADLINE_S
    reverse_retry_interval_s: float = REVERSE_RETRY_INTERVAL_S
    reverse_not_before_s: float = 0.0

    def __init__(self, config: AlipayConfig, *, session: requests.Session | None = None) -> None:
        self.config = config
        self.query_interval_s = config.query_interval_s
        self.pay_deadline_s = config.pay_deadline_s
        self.reverse_not_before_s = config.reverse_not_before_s
        try:
            self._private_key: RSA.RsaKey = load_private_key(_read_key(config.private_key_pem, "app private key"))
            self._certs: AlipayCertificates | None = None
            self._alipay_key: RSA.RsaKey | None = None
            if config.app_cert_pem is not None:
                self._certs = AlipayCertificates.from_pem(
                    _read_key(config.app_cert_pem, "app certificate"), _read_key(config.alipay_cert_pem or "", "Alipay public certificate"),
                    _read_key(config.alipay_root_cert_pem or "", "Alipay root certificate"))
            else:
                self._alipay_key = load_public_key(_read_key(config.alipay_public_key_pem, "Alipay public key"))
        except ValueError as exc:
            raise ChannelConfigError(str(exc)) from None
        self._sessions = SessionPool(session)
        self._timeouts = Timeouts(config.connect_timeout_s, config.read_timeout_s)

    # -- the ChannelClient interface ---------------------------------------------------------

    def pay(self, *, out_trade_no: str, auth_code: str, total_fen: int, subject: str, order_no: str | None = None,
            terminal_id: str | None = None) -> PayOutcome:
        _check_no("out_trade_no", out_trade_no)
        if type(total_fen) is not int or total_fen <= 0:
            raise ValueError(f"total_fen must be a positive int, got {total_fen!r}")
        if not auth_code.isascii() or not auth_code.isdigit():
            raise ValueError("auth_code must be the scanned digits")
        biz: dict[str, str] = {
            "out_trade_no": out_trade_no,
            "scene": "bar_code",
            "auth_code": auth_code,
            "product_code": "FACE_TO_FACE_PAYMENT",
            "subject": subject[:256] or "-",
            "total_amount": format_yuan(total_fen),
        }
        if self.config.store_id:
            biz["store_id"] = self.config.store_id
        if self.config.terminal_id:
            biz["terminal_id"] = self.config.terminal_id
        log.info("alipay pay %s code %s %d fen", out_trade_no, mask_code(auth_code), total_fen)
        reply = self._call("alipay.trade.pay", biz)
        outcome = failures.as_pay(reply) if isinstance(reply, NoAnswer) else outcomes.pay_outcome(reply.node, out_trade_no)
        log.info("alipay pay %s -> %s %s", out_trade_no, outcome.state.value, outcome.channel_code or "")
        return outcome

    def query(self, out_trade_no: str) -> PayOutcome:
        _check_no("out_trade_no", out_trade_no)
        reply = self._call("alipay.trade.query", {"out_trade_no": out_trade_no})
        outcome = failures.as_query(reply) if isinstance(reply, NoAnswer) else outcomes.query_outcome(reply.node, out_trade_no)
        log.info("alipay query %s -> %s %s", out_trade_no, outcome.state.value, outcome.channel_code or "")
        return outcome

    def reverse(self, out_trade_no: str) -> ReverseOutcome:
        _check_no("out_trade_no", out_trade_no)
        reply = self._call("alipay.trade.cancel", {"out_trade_no": out_trade_no})
        outcome = failures.as_reverse(reply) if isinstance(reply, NoAnswer) else outcomes.cancel_outcome(reply.node)
        log.info("alipay cancel %s -> %s %s", out_trade_no, outcome.state.value, outcome.channel_code or "")
        return outcome

    def refund(self, *, out_trade_no: str, out_refund_no: str, total_fen: int, refund_fen: int, reason: str,
               order_no: str | None = None, instruction: bytes | None = None) -> RefundOutcome:
        # order_no and instruction are the POS-side interface's (the gateway checks them); the channel never sees them.
        _check_no("out_trade_no", out_trade_no)
        _check_no("out_refund_no", out_refund_no)
        if type(total_fen) is not int or type(refund_fen) is not int or not 0 < refund_fen <= total_fen:
            raise ValueError(f"refund_fen must be an int in 1..total_fen, got {refund_fen!r} of {total_fen!r}")
        biz = {
            "out_trade_no": out_trade_no,
            "refund_amount": format_yuan(refund_fen),
            "out_request_no": out_refund_no,  # required for partial refunds; makes every refund idempotent
            "refund_reason": reason[:256],
        }
        reply = self._call("alipay.trade.refund", biz)
        if isinstance(reply, NoAnswer):
            outcome = failures.as_refund(reply)
        else:
            outcome = outcomes.refund_outcome(reply.node, out_trade_no, refund_fen, out_refund_no)
        log.info("alipay refund %s/%s %d fen -> %s %s", out_trade_no, out_refund_no, refund_fen, outcome.state.value, outcome.channel_code or "")
        return outcome

    def refund_query(self, *, out_trade_no: str, out_refund_no: str) -> RefundOutcome:
        _check_no("out_trade_no", out_trade_no)
        _check_no("out_refund_no", out_refund_no)
        reply = self._call("alipay.trade.fastpay.refund.query", {"out_trade_no": out_trade_no, "out_request_no": out_refund_no})
        if isinstance(reply, NoAnswer):
            outcome = failures.as_refund_query(reply)
        else:
            outcome = outcomes.refund_query_outcome(reply.node, out_trade_no, out_refund_no)
        log.info("alipay refund query %s/%s -> %s %s", out_trade_no, out_refund_no, outcome.state.value, outcome.channel_code or "")
        return outcome

    def download_bill(self, bill_date: datetime.date) -> bytes:
        """The zip Alipay serves for the day's trade bill (GBK CSVs: 业务明细 and 业务明细(汇总))."""
        reply = self._call("alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": bill_date.isoformat()})
        if isinstance(reply, NoAnswer):
            raise BillDownloadError(f"Alipay bill {bill_date}: {reply.message} ({reply.code})", channel_code=reply.code)
        code, sub = reply.node.get("code"), reply.node.get("sub_code")
        url = reply.node.get("bill_download_url")
        if code != "10000" or not isinstance(url, str):
            no_bill = isinstance(sub, str) and "BILL_NOT_EXIST" in sub.upper()
            message = reply.node.get("sub_msg") or reply.node.get("msg")
            raise BillDownloadError(f"Alipay bill {bill_date}: {message}", no_bill=no_bill, channel_code=str(sub or code))
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise BillDownloadError(f"Alipay bill {bill_date}: download URL is not http(s)")
        data = exchange(self._sessions.get(), "GET", url, timeouts=self._timeouts, max_bytes=MAX_BILL_BYTES, verify=self.config.verify_tls)
        if isinstance(data, HttpFailure):
            raise BillDownloadError(f"Alipay bill {bill_date}: download {data.value}")
        if not data.body.startswith(b"PK\x03\x04"):
            raise BillDownloadError(f"Alipay bill {bill_date}: the download is not a zip file")
        return data.body

    # -- plumbing ----------------------------------------------------------------------------

    def signed_params(self, method: str, biz: dict[str, str], *, now: datetime.datetime | None = None) -> dict[str, str]:
        """The form a call posts, signed (public so tests can check the exact signing input)."""
        moment = (now or datetime.datetime.now(SHANGHAI)).astimezone(SHANGHAI)
        params = {
            "app_id": self.config.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": moment.strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        if self.config.app_auth_token:
            params["app_auth_token"] = self.config.app_auth_token
        if self._certs is not None:
            params["app_cert_sn"] = self._certs.app_cert_sn
            params["alipay_root_cert_sn"] = self._certs.alipay_root_cert_sn
        if self.config.notify_url and method == "alipay.trade.pay":
            params["notify_url"] = self.config.notify_url
        params["sign"] = rsa2_sign(sign_content(params), self._private_key)
        return params

    def reply_key(self, cert_sn: str | None) -> RSA.RsaKey | None:
        """The Alipay key a reply or notification is verified with: in certificate mode the certificate
        whose SN the reply names (None: one we do not hold), else the configured public key."""
        if self._certs is not None:
            return self._certs.key_for(cert_sn)
        return self._alipay_key

    def verify_notification(self, params: dict[str, str]) -> bool:
        """An async notification's RSA2 signature (sign_type and sign left out of the signed text)."""
        if params.get("sign_type", "RSA2") != "RSA2" or not params.get("sign"):
            return False
        # Notifications name no certificate: any Alipay public certificate we hold may have signed one.
        keys = list(self._certs.alipay_keys.values()) if self._certs is not None else [self._alipay_key] if self._alipay_key else []
        content = notify_sign_content(params).encode("utf-8")
        return any(rsa2_verify(content, params["sign"], key) for key in keys)

    def call_for_refusals(self, method: str, biz: dict[str, str]) -> SignedReply | NoAnswer:
        """A call whose refusals the caller reads itself (alipay.open.auth.token.app: `isv.code-invalid`...):
        a request-level refusal (20001/40001/40002/40006) comes back as its reply, believed without a
        signature as `_call` believes it (it only ever says "not done"); anything else as `_call` gives it,
        a success only when its signature verifies."""
        return self._call(method, biz, refusals=True)

    def _call(self, method: str, biz: dict[str, str], *, refusals: bool = False) -> SignedReply | NoAnswer:
        body = urllib.parse.urlencode(self.signed_params(method, biz)).encode("ascii")
        reply = exchange(
            self._sessions.get(), "POST", self.config.gateway, timeouts=self._timeouts, body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}, verify=self.config.verify_tls,
        )
        if isinstance(reply, HttpFailure):
            return failures.unknown(f"http_{reply.value}", "no reply from Alipay")
        try:
            parsed = parse_reply(reply.body, method)
        except AlipayReplyError as exc:
            log.warning("alipay %s: unreadable reply: %s", method, exc)
            return failures.unknown("malformed_reply", "unreadable reply from Alipay")
        code, sub = parsed.node.get("code"), parsed.node.get("sub_code")
        if code in outcomes.REQUEST_REFUSED and refusals:
            return parsed
        if code in outcomes.REQUEST_REFUSED:
            # The open platform refused the request before the method ran (isv.invalid-signature:
            # our app key is not the one registered; isv.invalid-app-id ...): nothing was processed.
            words = parsed.node.get("sub_msg") or parsed.node.get("msg") or ""
            log.error("alipay %s: the request was rejected (%s %s): check the merchant settings", method, code, sub)
            return failures.rejected(f"Alipay rejected the request ({code} {sub}): {words}")
        key = self.reply_key(parsed.cert_sn)
        if key is None:
            log.error("alipay %s: reply signed by Alipay certificate %r, which we do not hold; not believed (the channel may have acted)",
                      method, parsed.cert_sn)
            return failures.unverified(f"reply from Alipay signed with certificate SN {parsed.cert_sn!r}, which these settings do not hold: "
                                       "add the new Alipay public certificate")
        if parsed.sign is None or not rsa2_verify(parsed.raw_node.encode("utf-8"), parsed.sign, key):
            log.error("alipay %s: reply signature missing or wrong; not believed (the channel may have acted)", method)
            return failures.unverified("reply from Alipay failed its signature check: check the Alipay public key")
        if parsed.node_name != _node_name(method) and not refusals:
            return failures.unknown(str(sub or code)[:64], "Alipay answered with an error_response")
        return parsed


def _node_name(method: str) -> str:
    return method.replace(".", "_") + "_response"


def _check_no(name: str, value: str) -> None:
    if not isinstance(value, str) or _OUT_TRADE_NO.fullmatch(value) is None:
        raise ValueError(f"{name} {value!r} must be 1-64 of [A-Za-z0-9_-]")
