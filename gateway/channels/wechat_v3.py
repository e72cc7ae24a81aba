"""WeChat Pay APIv3 client for code payments (付款码支付 v3), over requests.

Direct merchant (`mchid`, `appid`):                Service provider (`mchid` = sp_mchid, `sub_mchid`):
    POST /v3/pay/transactions/codepay                  POST /v3/pay/partner/transactions/codepay
    GET  /v3/pay/transactions/out-trade-no/{no}        GET  /v3/pay/partner/transactions/out-trade-no/{no}
    POST .../out-trade-no/{no}/reverse                 POST /v3/pay/partner/.../out-trade-no/{no}/reverse
    POST /v3/refund/domestic/refunds, GET /v3/refund/domestic/refunds/{out_refund_no} (sub_mchid in SP mode)

Every request carries an Authorization header signed with the merchant's API certificate key
(`wechat_v3_codec`); every reply must carry the platform's signature, made with the key named by its
Wechatpay-Serial: the platform public key (`platform_public_key_pem` + `platform_public_key_id`)
or the platform certificate (`platform_certificate_pem`, its serial read from it), or the platform
certificates downloaded from GET /v3/certificates (`download_certificates`, kept by a
`CertificateStore` the gateway gives: sealed in its database). A reply naming a serial the client
does not hold makes it look again, once: the store first (another gateway process may have
downloaded it), then WeChat Pay's list (at most every CERT_REFRESH_MIN_INTERVAL_S); this is how a
rotated certificate is picked up. A reply signed with another key, unsigned, or whose signature
does not verify is not believed: the request may have been processed, so it is UNVERIFIED (needs a
person, `failures`), except an unsigned 401 SIGN_ERROR, which only ever says nothing was processed
(rejected: the merchant settings are wrong).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence

import requests

from protocol.messages import PayChannel
from gateway.channels import failures
from gateway.channels import wechat_v3_certs as certs
from gateway.channels import wechat_v3_codec as v3
from gateway.channels import wechat_v3_outcomes as outcomes
from gateway.channels.errors import BillDownloadError, ChannelConfigError
from gateway.channels.failures import NoAnswer
from gateway.channels.http import MAX_BILL_BYTES, HttpFailure, HttpReply, SessionPool, Timeouts, exchange, mask_code
from gateway.channels.wechat import PAY_DEADLINE_S, PRODUCTION_BASE_URL, QUERY_INTERVAL_S, REVERSE_NOT_BEFORE_S, REVERSE_RETRY_INTERVAL_S
from terminal.channels.base import PayOutcome, RefundOutcome, ReverseOutcome

log = logging.getLogger(__name__)
_OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_\-|*]{6,32}", re.ASCII)
_OUT_REFUND_NO = re.compile(r"[A-Za-z0-9_\-|*@]{1,64}", re.ASCII)
_ID = re.compile(r"[A-Za-z0-9_]{1,64}", re.ASCII)
# A signed reply more than this far from our clock is not believed (an old signed reply replayed; WeChat
# Pay's SDKs use the same 5 minutes). Overridable, like the other timers, in the merchant settings.
REPLY_MAX_SKEW_S = 300.0
# A reply naming an unknown platform serial downloads the certificate list at most this often, so
# that replies naming made-up serials cannot make the gateway hammer WeChat Pay.
CERT_REFRESH_MIN_INTERVAL_S = 60.0


class CertificateStore(Protocol):
    """Where downloaded platform certificates are kept (gateway.wechat_certificates: the database)."""

    def load(self) -> Sequence[certs.PlatformCertificate]: ...

    def save(self, certificates: Sequence[certs.PlatformCertificate], *, signed_by: str) -> None: ...


def _read_pem(value: str, what: str) -> str:
    """PEM text as stored by the gateway, or a path to it (tests, `reconcile` settings files)."""
    if value.lstrip().startswith("-----BEGIN"):
        return value
    try:
        with open(value, encoding="ascii") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ChannelConfigError(f"cannot read the {what} {value}: {exc}") from None


@dataclass(frozen=True, slots=True)
class WeChatPayV3Config:
    appid: str  # direct: the merchant's appid; service-provider mode: sp_appid
    mchid: str  # direct: the merchant; service-provider mode: sp_mchid (whose keys sign)
    merchant_serial_no: str  # serial of the API certificate whose key signs (apiclient_cert.pem)
    private_key_pem: str = field(repr=False)  # that key (apiclient_key.pem): PEM text or a path
    apiv3_key: str = field(repr=False)  # opens notifications (AEAD_AES_256_GCM)
    platform_public_key_pem: str | None = None  # 微信支付公钥 (pub_key.pem): PEM text or a path
    platform_public_key_id: str | None = None  # its id, PUB_KEY_ID_...
    platform_certificate_pem: str | None = None  # or a platform certificate (PEM text or a path)
    base_url: str = PRODUCTION_BASE_URL
    sub_mchid: str | None = None  # service-provider mode: the sub-merchant paid
    sub_appid: str | None = None
    notify_url: str | None = None  # where WeChat Pay sends refund notifications (the gateway's endpoint)
    api_version: str = "v3"
    store_id: str = "HIS-POS"  # scene_info.store_info.out_id: the hospital's own store number
    device_ip: str = "127.0.0.1"
    verify_tls: bool | str = True
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    query_interval_s: float = QUERY_INTERVAL_S
    pay_deadline_s: float = PAY_DEADLINE_S
    reverse_not_before_s: float = REVERSE_NOT_BEFORE_S
    reply_max_skew_s: float = REPLY_MAX_SKEW_S

    def __post_init__(self) -> None:
        if self.api_version != "v3":
            raise ChannelConfigError("wechat.api_version must be v3 for this client")
        for name in ("appid", "mchid", "merchant_serial_no", "private_key_pem", "apiv3_key", "base_url"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ChannelConfigError(f"wechat.{name} is required (APIv3)")
        if len(self.apiv3_key.encode("utf-8")) != v3.APIV3_KEY_LENGTH:
            raise ChannelConfigError(f"wechat.apiv3_key must be {v3.APIV3_KEY_LENGTH} characters")
        if (self.platform_public_key_pem is None) != (self.platform_public_key_id is None):
            raise ChannelConfigError("wechat.platform_public_key_pem and wechat.platform_public_key_id go together")
        for name in ("sub_mchid", "sub_appid"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or _ID.fullmatch(value) is None):
                raise ChannelConfigError(f"wechat.{name} must be letters and digits")
        if self.sub_appid is not None and self.sub_mchid is None:
            raise ChannelConfigError("wechat.sub_appid needs wechat.sub_mchid (service-provider mode)")
        if not self.base_url.startswith(("https://", "http://")):
            raise ChannelConfigError(f"wechat.base_url {self.base_url!r} must be an http(s) URL")
        for name in ("connect_timeout_s", "read_timeout_s", "query_interval_s", "pay_deadline_s", "reply_max_skew_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ChannelConfigError(f"wechat.{name} must be a positive number of seconds")


class WeChatPayV3Client:
    channel = PayChannel.WECHAT
    query_interval_s: float = QUERY_INTERVAL_S
    pay_deadline_s: float = PAY_DEADLINE_S
    reverse_retry_interval_s: float = REVERSE_RETRY_INTERVAL_S
    reverse_not_before_s: float = REVERSE_NOT_BEFORE_S

    def __init__(self, config: WeChatPayV3Config, *, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time, certificates: CertificateStore | None = None) -> None:
        self.config = config
        self.query_interval_s = config.query_interval_s
        self.pay_deadline_s = config.pay_deadline_s
        self.reverse_not_before_s = config.reverse_not_before_s
        self._sessions = SessionPool(session)
        self._base = config.base_url.rstrip("/")
        self._timeouts = Timeouts(config.connect_timeout_s, config.read_timeout_s)
        self._clock = clock
        self._partner = config.sub_mchid is not None
        try:
            self._private_key = v3.load_private_key(_read_pem(config.private_key_pem, "merchant API key"))
            # The platform keys we believe, by the serial a reply names.
            self._platform: dict[str, v3.PublicKey] = {}
            if config.platform_public_key_pem is not None and config.platform_public_key_id is not None:
                self._platform[config.platform_public_key_id] = v3.load_public_key(_read_pem(config.platform_public_key_pem, "platform public key"))
            self._cert_serial: str | None = None
            if config.platform_certificate_pem is not None:
                pem = _read_pem(config.platform_certificate_pem, "platform certificate")
                self._cert_serial = v3.certificate_serial(pem)
                self._platform[self._cert_serial] = v3.load_public_key(pem)
        except v3.WeChatV3Error as exc:
            raise ChannelConfigError(f"wechat (APIv3): {exc}") from None
        self._configured = dict(self._platform)  # the keys the settings hold (never dropped)
        self._store = certificates
        self._downloaded: dict[str, certs.PlatformCertificate] = {}
        self._refreshed_at = float("-inf")
        self._refresh_lock = threading.Lock()
        if certificates is None and not self._platform:
            raise ChannelConfigError("APIv3 replies are verified with the platform public key (platform_public_key_pem + "
                                     "platform_public_key_id), a platform certificate (platform_certificate_pem), or the "
                                     "certificates the gateway downloads (gateway-admin wechat certificates refresh): give one")
        if certificates is not None:
            self._take(certificates.load())

    # -- the ChannelClient interface ---------------------------------------------------------

    def _ids(self) -> dict[str, str]:
        c = self.config
        if not self._partner:
            return {"appid": c.appid, "mchid": c.mchid}
        ids = {"sp_appid": c.appid, "sp_mchid": c.mchid}
        if c.sub_appid:
            ids["sub_appid"] = c.sub_appid
        ids["sub_mchid"] = c.sub_mchid or ""
        return ids

    def _transactions(self) -> str:
        return "/v3/pay/partner/transactions" if self._partner else "/v3/pay/transactions"

    def pay(self, *, out_trade_no: str, auth_code: str, total_fen: int, subject: str, order_no: str | None = None,
            terminal_id: str | None = None) -> PayOutcome:
        _check(out_trade_no, _OUT_TRADE_NO, "out_trade_no", "6-32 of [A-Za-z0-9_-|*]")
        if type(total_fen) is not int or total_fen <= 0:
            raise ValueError(f"total_fen must be a positive int, got {total_fen!r}")
        if not auth_code.isascii() or not auth_code.isdigit():
            raise ValueError("auth_code must be the scanned digits")
        scene: dict[str, object] = {"store_info": {"out_id": self.config.store_id}, "device_ip": self.config.device_ip}
        if terminal_id:
            scene["device_id"] = terminal_id
        body = {**self._ids(), "description": subject[:127] or "-", "out_trade_no": out_trade_no,
                "amount": {"total": total_fen, "currency": "CNY"}, "payer": {"auth_code": auth_code}, "scene_info": scene}
        log.info("wechat v3 codepay %s code %s %d fen", out_trade_no, mask_code(auth_code), total_fen)
        reply = self._call("POST", self._transactions() + "/codepay", body)
        outcome = failures.as_pay(reply) if isinstance(reply, NoAnswer) else outcomes.pay_outcome(reply[0], reply[1], out_trade_no)
        log.info("wechat v3 codepay %s -> %s %s", out_trade_no, outcome.state.value, outcome.channel_code or "")
        return outcome

    def query(self, out_trade_no: str) -> PayOutcome:
        _check(out_trade_no, _OUT_TRADE_NO, "out_trade_no", "6-32 of [A-Za-z0-9_-|*]")
        ids = {"sp_mchid": self.config.mchid, "sub_mchid": self.config.sub_mchid or ""} if self._partner else {"mchid": self.config.mchid}
        path = f"{self._transactions()}/out-trade-no/{urllib.parse.quote(out_trade_no, safe='')}?{urllib.parse.urlencode(ids)}"
        reply = self._call("GET", path, None)
        outcome = failures.as_query(reply) if isinstance(reply, NoAnswer) else outcomes.query_outcome(reply[0], reply[1], out_trade_no)
        log.info("wechat v3 query %s -> %s %s", out_trade_no, outcome.state.value, outcome.channel_code or "")
        return outcome

    def reverse(self, out_trade_no: str) -> ReverseOutcome:
        _check(out_trade_no, _OUT_TRADE_NO, "out_trade_no", "6-32 of [A-Za-z0-9_-|*]")
        path = f"{self._transactions()}/out-trade-no/{urllib.parse.quote(out_trade_no, safe='')}/reverse"
        reply = self._call("POST", path, self._ids())
        outcome = failures.as_reverse(reply) if isinstance(reply, NoAnswer) else outcomes.reverse_outcome(reply[0], reply[1], out_trade_no)
        log.info("wechat v3 reverse %s -> %s %s", out_trade_no, outcome.state.value, outcome.channel_code or "")
        return outcome

    def refund(self, *, out_trade_no: str, out_refund_no: str, total_fen: int, refund_fen: int, reason: str,
               order_no: str | None = None, instruction: bytes | None = None) -> RefundOutcome:
        _check(out_trade_no, _OUT_TRADE_NO, "out_trade_no", "6-32 of [A-Za-z0-9_-|*]")
        _check(out_refund_no, _OUT_REFUND_NO, "out_refund_no", "1-64 of [A-Za-z0-9_-|*@]")
        if type(total_fen) is not int or type(refund_fen) is not int or not 0 < refund_fen <= total_fen:
            raise ValueError(f"refund_fen must be an int in 1..total_fen, got {refund_fen!r} of {total_fen!r}")
        body: dict[str, object] = {"out_trade_no": out_trade_no, "out_refund_no": out_refund_no, "reason": reason[:80] or "refund",
                                   "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"}}
        if self._partner:
            body = {"sub_mchid": self.config.sub_mchid, **body}
        if self.config.notify_url:
            body["notify_url"] = self.config.notify_url
        reply = self._call("POST", "/v3/refund/domestic/refunds", body)
        if isinstance(reply, NoAnswer):
            outcome = failures.as_refund(reply)
        else:
            outcome = outcomes.refund_outcome(reply[0], reply[1], out_trade_no, out_refund_no)
        log.info("wechat v3 refund %s/%s %d fen -> %s %s", out_trade_no, out_refund_no, refund_fen, outcome.state.value, outcome.channel_code or "")
        return outcome

    def refund_query(self, *, out_trade_no: str, out_refund_no: str) -> RefundOutcome:
        _check(out_trade_no, _OUT_TRADE_NO, "out_trade_no", "6-32 of [A-Za-z0-9_-|*]")
        _check(out_refund_no, _OUT_REFUND_NO, "out_refund_no", "1-64 of [A-Za-z0-9_-|*@]")
        path = f"/v3/refund/domestic/refunds/{urllib.parse.quote(out_refund_no, safe='')}"
        if self._partner:
            path += "?" + urllib.parse.urlencode({"sub_mchid": self.config.sub_mchid or ""})
        reply = self._call("GET", path, None)
        if isinstance(reply, NoAnswer):
            outcome = failures.as_refund_query(reply)
        else:
            outcome = outcomes.refund_query_outcome(reply[0], reply[1], out_trade_no, out_refund_no)
        log.info("wechat v3 refund query %s/%s -> %s %s", out_trade_no, out_refund_no, outcome.state.value, outcome.channel_code or "")
        return outcome

    # -- plumbing ----------------------------------------------------------------------------

    def download_bill(self, bill_date: datetime.date, bill_type: str = "ALL") -> bytes:
        """The day's trade bill (交易账单, GET /v3/bill/tradebill, then its download_url), checked
        against the SHA1 the signed reply gives. The same CSV as API v2's downloadbill."""
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            raise ValueError(f"bill_type must be ALL, SUCCESS or REFUND, not {bill_type!r}")
        query = {"bill_date": bill_date.isoformat(), "bill_type": bill_type}
        if self._partner:
            query["sub_mchid"] = self.config.sub_mchid or ""
        reply = self._call("GET", "/v3/bill/tradebill?" + urllib.parse.urlencode(query), None)
        if isinstance(reply, NoAnswer):
            raise BillDownloadError(f"WeChat Pay bill {bill_date}: {reply.message}", channel_code=reply.code)
        status, answer = reply
        if status != 200:
            code = str(answer.get("code", ""))[:64]
            raise BillDownloadError(f"WeChat Pay bill {bill_date}: {code} {str(answer.get('message', ''))[:128]}",
                                    no_bill=code == "NO_STATEMENT_EXIST", channel_code=code or None)
        download_url, hash_value = answer.get("download_url"), answer.get("hash_value")
        if not isinstance(download_url, str) or not isinstance(hash_value, str) or answer.get("hash_type") != "SHA1":
            raise BillDownloadError(f"WeChat Pay bill {bill_date}: the reply has no download_url with a SHA1 hash")
        parts = urllib.parse.urlsplit(download_url)
        if f"{parts.scheme}://{parts.netloc}" != self._base:
            raise BillDownloadError(f"WeChat Pay bill {bill_date}: download_url points at another host ({parts.netloc})")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        auth = v3.authorization(method="GET", url=path, body="", mchid=self.config.mchid, serial_no=self.config.merchant_serial_no,
                                private_key=self._private_key, timestamp=str(int(self._clock())), nonce=secrets.token_hex(16).upper())
        data = exchange(self._sessions.get(), "GET", download_url, timeouts=self._timeouts, headers={"Authorization": auth.header()},
                        max_bytes=MAX_BILL_BYTES, verify=self.config.verify_tls)
        if isinstance(data, HttpFailure):
            raise BillDownloadError(f"WeChat Pay bill {bill_date}: download {data.value}")
        if not hmac.compare_digest(hashlib.sha1(data.body).hexdigest(), hash_value.lower()):
            raise BillDownloadError(f"WeChat Pay bill {bill_date}: the file's SHA1 differs from the signed reply's (altered or truncated)")
        return data.body

    def _call(self, method: str, url: str, body: Mapping[str, object] | None) -> tuple[int, dict[str, object]] | NoAnswer:
        """(status, verified JSON reply), or why there is no answer to act on (`failures`)."""
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":")) if body is not None else ""
        auth = v3.authorization(method=method, url=url, body=text, mchid=self.config.mchid, serial_no=self.config.merchant_serial_no,
                                private_key=self._private_key, timestamp=str(int(self._clock())), nonce=secrets.token_hex(16).upper())
        headers = {"Authorization": auth.header(), "Accept": "application/json", "Content-Type": "application/json"}
        serial = self._request_serial()
        if serial:
            headers[v3.H_SERIAL] = serial
        reply = exchange(self._sessions.get(), method, self._base + url, timeouts=self._timeouts,
                         body=text.encode("utf-8") if body is not None else None, headers=headers, verify=self.config.verify_tls,
                         any_status=True)
        if isinstance(reply, HttpFailure):
            return failures.unknown(f"http_{reply.value}", "no reply from WeChat Pay")
        path = url.split("?", 1)[0]
        if reply.status == 401 and v3.H_SIGNATURE not in reply.headers:
            message = _error_message(reply)
            log.error("wechat v3 %s: the request was rejected (401 %s): check the merchant settings", path, message)
            return failures.rejected(f"WeChat Pay rejected the request (401): {message}")
        if reply.status >= 500 and v3.H_SIGNATURE not in reply.headers:
            return failures.unknown(f"http_{reply.status}", "WeChat Pay answered with a server error")
        verdict = self._verify(reply)
        if verdict is not None:
            log.error("wechat v3 %s: %s; not believed (the channel may have acted)", path, verdict)
            return failures.unverified(f"reply from WeChat Pay cannot be verified: {verdict}")
        try:
            parsed = json.loads(reply.body.decode("utf-8")) if reply.body else {}
        except (UnicodeDecodeError, ValueError):
            return failures.unknown("malformed_reply", "unreadable reply from WeChat Pay")
        if not isinstance(parsed, dict):
            return failures.unknown("malformed_reply", "reply from WeChat Pay is not a JSON object")
        if reply.status < 300 and not self._about_us(parsed):
            log.warning("wechat v3 %s: reply is for another merchant; not believed", path)
            return failures.unknown("wrong_merchant", "reply from WeChat Pay is for another merchant")
        code = parsed.get("code")
        if reply.status >= 400 and code in outcomes.MERCHANT_CODES:
            message = _error_message(reply)
            log.error("wechat v3 %s: the request was refused (%s %s): check the merchant settings", path, code, message)
            return failures.rejected(f"WeChat Pay refused the request ({code}): {message}")
        return reply.status, parsed

    def _verify(self, reply: HttpReply) -> str | None:
        """None when the reply carries a valid platform signature; otherwise why not."""
        headers = reply.headers
        serial = headers.get(v3.H_SERIAL, "")
        signature, timestamp, nonce = headers.get(v3.H_SIGNATURE), headers.get(v3.H_TIMESTAMP), headers.get(v3.H_NONCE)
        if not signature or not timestamp or not nonce:
            return "the reply is not signed"
        key = self._platform.get(serial)
        if key is None and serial:
            key = self._look_again(serial)
        if key is None:
            return (f"signed with platform key {serial[:64]!r}, which this gateway does not hold for this merchant "
                    "(gateway-admin wechat certificates show / refresh)")
        downloaded = self._downloaded.get(serial)
        if downloaded is not None and serial not in self._configured and not downloaded.valid_at(self._clock()):
            return f"signed with platform certificate {serial[:64]}, which is valid only from {downloaded.effective_at} to {downloaded.expire_at}"
        try:
            text = reply.body.decode("utf-8")
        except UnicodeDecodeError:
            return "the reply is not UTF-8"
        if not v3.rsa_verify(v3.response_message(timestamp, nonce, text), signature, key):
            return "the reply's signature does not verify with the platform key"
        if not timestamp.isdigit() or abs(self._clock() - int(timestamp)) > self.config.reply_max_skew_s:
            return f"the reply was signed at {timestamp[:16]!r}, too far from this gateway's clock (check NTP)"
        return None

    # -- platform certificates -----------------------------------------------------------------

    def _take(self, found: Sequence[certs.PlatformCertificate]) -> None:
        """Believe these certificates from now on (besides the configured keys)."""
        for cert in found:
            if cert.serial_no not in self._downloaded:
                self._downloaded[cert.serial_no] = cert
                self._platform[cert.serial_no] = cert.public_key()

    def platform_serials(self) -> list[str]:
        """The serials (and public-key ids) whose signatures this client believes."""
        return sorted(self._platform)

    def _request_serial(self) -> str | None:
        """What the request's Wechatpay-Serial names: the platform key id, else the newest valid certificate."""
        if self.config.platform_public_key_id:
            return self.config.platform_public_key_id
        now = self._clock()
        valid = sorted((c for c in self._downloaded.values() if c.valid_at(now)), key=lambda c: c.effective_at)
        if valid:
            return valid[-1].serial_no
        return self._cert_serial

    def _look_again(self, serial: str) -> v3.PublicKey | None:
        """A reply names a serial we do not hold: the store (another process may have it), then one download."""
        if self._store is None:
            return None
        with self._refresh_lock:
            try:
                self._take(self._store.load())
            except Exception as exc:  # noqa: BLE001 - the store is the gateway's database: away, or a row that does not open
                log.error("wechat v3: the stored platform certificates cannot be read (%s); the reply is not believed", exc)
                return None
            if serial in self._platform:
                return self._platform[serial]
            if self._clock() - self._refreshed_at < CERT_REFRESH_MIN_INTERVAL_S:
                return None
            self._refreshed_at = self._clock()
        try:
            self.refresh_certificates()
        except Exception as exc:  # noqa: BLE001 - the list's errors (WeChatV3Error), or the store's: either way not believed
            log.error("wechat v3: platform certificate %s is unknown and the list could not be refreshed: %s", serial[:64], exc)
            return None
        return self._platform.get(serial)

    def download_certificates(self, *, expect_serial: str | None = None) -> tuple[list[certs.PlatformCertificate], str]:
        """GET /v3/certificates: the platform certificates, opened with the APIv3 key, and the serial
        that signed the list, verified by the rules of `wechat_v3_certs.signer_for`. Raises
        CertificateListError (no answer, not a list, an entry that does not open: code
        `wechat_v3_certificates` or `wechat_v3_resource`) or CertificateTrustError (the signature:
        `wechat_v3_certificates_unverified`)."""
        path = certs.PATH
        auth = v3.authorization(method="GET", url=path, body="", mchid=self.config.mchid, serial_no=self.config.merchant_serial_no,
                                private_key=self._private_key, timestamp=str(int(self._clock())), nonce=secrets.token_hex(16).upper())
        headers = {"Authorization": auth.header(), "Accept": "application/json"}
        reply = exchange(self._sessions.get(), "GET", self._base + path, timeouts=self._timeouts, headers=headers,
                         verify=self.config.verify_tls, any_status=True)
        if isinstance(reply, HttpFailure):
            raise certs.CertificateListError(f"no reply from WeChat Pay ({reply.value})")
        if reply.status != 200:
            raise certs.CertificateListError(f"WeChat Pay answered {reply.status}: {_error_message(reply)}")
        listed = certs.parse_certificate_list(reply.body, self.config.apiv3_key)
        serial = reply.headers.get(v3.H_SERIAL, "")
        signature, timestamp, nonce = reply.headers.get(v3.H_SIGNATURE), reply.headers.get(v3.H_TIMESTAMP), reply.headers.get(v3.H_NONCE)
        if not signature or not timestamp or not nonce:
            raise certs.CertificateTrustError("the certificate list is not signed")
        key = certs.signer_for(serial, listed, self._platform, expect_serial=expect_serial)
        try:
            text = reply.body.decode("utf-8")
        except UnicodeDecodeError:
            raise certs.CertificateListError("the certificate list is not UTF-8") from None
        if not v3.rsa_verify(v3.response_message(timestamp, nonce, text), signature, key):
            raise certs.CertificateTrustError(f"the certificate list's signature does not verify with certificate {serial[:64]}")
        if not timestamp.isdigit() or abs(self._clock() - int(timestamp)) > self.config.reply_max_skew_s:
            raise certs.CertificateTrustError(f"the certificate list was signed at {timestamp[:16]!r}, too far from this gateway's clock")
        return listed, serial

    def refresh_certificates(self, *, expect_serial: str | None = None) -> list[certs.PlatformCertificate]:
        """Download the list, keep it in the store (when there is one) and believe it; the certificates."""
        held_before = bool(self._platform)
        listed, signed_by = self.download_certificates(expect_serial=expect_serial)
        if self._store is not None:
            self._store.save(listed, signed_by=signed_by)
        with self._refresh_lock:
            self._take(listed)
            self._refreshed_at = self._clock()
        log.info("wechat v3: platform certificates of %s: %s (list signed by %s%s)", self.config.mchid,
                 ", ".join(c.serial_no for c in listed), signed_by, "" if held_before else ", first use")
        return listed

    def _about_us(self, reply: Mapping[str, object]) -> bool:
        """A reply naming merchants must name ours (a signed reply for another merchant is not replayed here)."""
        if self._partner:
            if "mchid" in reply:  # a direct merchant's reply is not about our sub-merchant
                return False
            wanted = {"sp_mchid": self.config.mchid, "sub_mchid": self.config.sub_mchid}
        else:
            wanted = {"mchid": self.config.mchid}
        return all(reply.get(k) in (None, v) for k, v in wanted.items())


def _error_message(reply: HttpReply) -> str:
    try:
        parsed = json.loads(reply.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return f"HTTP {reply.status}"
    if isinstance(parsed, dict):
        return f"{str(parsed.get('code', ''))[:64]} {str(parsed.get('message', ''))[:128]}".strip()
    return f"HTTP {reply.status}"


def _check(value: str, pattern: re.Pattern[str], name: str, rule: str) -> None:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ValueError(f"{name} {value!r} must be {rule} (WeChat Pay's rule)")
