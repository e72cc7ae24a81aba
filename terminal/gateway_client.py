"""The POS's connection to the payment gateway: every request signed by the device key, the
gateway's certificate pinned.

    gw = GatewayConnection("https://gw.example.cn", device_id="POS-0001", seed=device_seed,
                           firmware="1.4.2", pinned_cert="/data/config/gateway.pem")
    status, reply = gw.post("/v1/pay", {...})

`pinned_cert` is the certificate (or the private CA) set at provisioning: TLS is verified against it
alone, never against the system's CA list, so a certificate from any public CA is refused. Plain
http:// is accepted only for a loopback gateway (`make run`). Requests travel on kept-alive
connections (terminal.gateway_transport). Network failures are returned as a
status of 0 with {"error": {"code": "network", ...}}, never raised: the caller decides (query,
then reverse), exactly as with a channel.
"""

from __future__ import annotations

import datetime
import json
import os
import time
import uuid
from email.utils import parsedate_to_datetime
from typing import Callable
from urllib.parse import urlsplit

import requests

from protocol.device_request import NONCE_SIZE, sign_request
from protocol.amount import parse_fen
from protocol.errors import CodedError, ProtocolError
from protocol.messages import PayChannel, ResultCode
from terminal.alarms import Alarm
from terminal.channels.base import PayOutcome, PayState, RefundOutcome, RefundState, ReverseOutcome, ReverseState
from terminal.gateway_transport import GatewayTransport, TransportError, proxied

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 20.0  # above the gateway's own channel timeouts, so its answer arrives
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
# Requests after which the POS's journal has moved money rows: its mark is reported to the gateway.
MONEY_PATHS = ("/v1/pay", "/v1/refund", "/v1/reverse")


class GatewayConfigError(CodedError, ValueError):
    code = "gateway_config"


class GatewayConnection:
    def __init__(self, url: str, *, device_id: str, seed: bytes, firmware: str = "", pinned_cert: str | None = None,
                 clock: Callable[[], float] = time.time, session: requests.Session | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme == "https":
            if not pinned_cert:
                raise GatewayConfigError("an https gateway needs its pinned certificate (gateway.pinned_cert)")
        elif parts.scheme == "http":
            if parts.hostname not in LOOPBACK_HOSTS:
                raise GatewayConfigError(f"plain http is only allowed for a gateway on this machine, not {parts.hostname}")
        else:
            raise GatewayConfigError(f"gateway URL {url!r} must be https:// (or http:// on loopback)")
        self.url = url.rstrip("/")
        self._device_id = device_id
        self._seed = seed
        self._firmware = firmware
        self._verify: str | bool = pinned_cert if pinned_cert else False
        self._clock = clock
        self._offset = 0.0  # gateway clock minus device clock, learnt from a clock_skew refusal
        # Kept-alive http.client connections (terminal.gateway_transport); requests with a proxy or a given session.
        self._session = session if session is not None else (requests.Session() if proxied() else None)
        self._transport = GatewayTransport(self.url, pinned_cert=pinned_cert) if self._session is None else None
        # Called after every answered money request (terminal.gateway_marks reports the journal's mark).
        self.after_money_request: Callable[[], None] | None = None
        self._reply_observers: list[Callable[[int, str | None], None]] = []

    def add_reply_observer(self, observer: Callable[[int, str | None], None]) -> Callable[[], None]:
        """observer(status, error_code) after every request (status 0: no answer); for the screens'
        gateway state (terminal.gateway_watch). Called on the requesting thread; must not block."""
        self._reply_observers.append(observer)
        return lambda: self._reply_observers.remove(observer) if observer in self._reply_observers else None

    def post(self, path: str, obj: dict, *, timeout: tuple[float, float] | None = None) -> tuple[int, dict]:
        """`timeout`: (connect, read) seconds, for a call that must not hold its caller up (the
        journal-mark check at start-up); the default waits for the gateway's own channel timeouts."""
        body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        status, reply, server_time = self._send(path, body, timeout)
        if status == 401 and reply.get("error", {}).get("code") == "clock_skew" and server_time is not None:
            # The device's clock is off (a POS without network time): sign with the gateway's time,
            # as the link does with the bridge's. Nothing was acted on, so sending again is safe.
            self._offset = server_time - self._clock()
            status, reply, _ = self._send(path, body, timeout)
        error = reply.get("error")
        code = str(error.get("code")) if isinstance(error, dict) and error.get("code") is not None else None
        for observer in list(self._reply_observers):
            observer(status, code)
        if status == 200 and path in MONEY_PATHS and self.after_money_request is not None:
            self.after_money_request()
        return status, reply

    def _send(self, path: str, body: bytes, timeout: tuple[float, float] | None = None) -> tuple[int, dict, float | None]:
        headers = sign_request(self._seed, method="POST", path=path, device_id=self._device_id,
                               ts=int(self._clock() + self._offset), nonce=os.urandom(NONCE_SIZE), firmware=self._firmware, body=body)
        headers["Content-Type"] = "application/json"
        if self._transport is not None:
            try:
                status, data, date = self._transport.post(path, body, headers, timeout=timeout or (CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
                reply = json.loads(data)
            except TransportError as exc:
                if exc.tls:
                    return 0, {"error": {"code": "tls", "message": f"the gateway's certificate is not the pinned one: {exc.reason}"}}, None
                return 0, {"error": {"code": "network", "message": f"no answer from the gateway: {exc.reason}"}}, None
            except ValueError as exc:
                return 0, {"error": {"code": "network", "message": f"no answer from the gateway: {exc.__class__.__name__}"}}, None
            return status, reply if isinstance(reply, dict) else {}, _date(date)
        assert self._session is not None
        try:
            response = self._session.post(self.url + path, data=body, headers=headers, verify=self._verify,
                                          timeout=timeout or (CONNECT_TIMEOUT_S, READ_TIMEOUT_S), allow_redirects=False)
            reply = response.json()
        except requests.exceptions.SSLError as exc:
            return 0, {"error": {"code": "tls", "message": f"the gateway's certificate is not the pinned one: {exc.__class__.__name__}"}}, None
        except (requests.exceptions.RequestException, ValueError) as exc:
            return 0, {"error": {"code": "network", "message": f"no answer from the gateway: {exc.__class__.__name__}"}}, None
        return response.status_code, reply if isinstance(reply, dict) else {}, _date(response.headers.get("Date"))


def _date(header: str | None) -> float | None:
    """The gateway's clock from its Date header (a clock_skew refusal carries it)."""
    try:
        return parsedate_to_datetime(header).timestamp() if header else None
    except (TypeError, ValueError):
        return None


# --- the POS's ChannelClient over the gateway ---------------------------------------------------

# The channels' documented cadence for a payment the patient is still confirming (WeChat Pay's POS
# guide and Alipay's face-to-face demo both: query every 5 s, reverse after about 30 s). The device
# configuration's "polling" section overrides them.
CADENCE = {PayChannel.WECHAT: (5.0, 30.0), PayChannel.ALIPAY: (5.0, 30.0)}  # the channels the gateway serves
# WeChat Pay's POS guide: never reverse sooner than 15 s after micropay; Alipay documents no wait.
REVERSE_NOT_BEFORE_S = {PayChannel.WECHAT: 15.0, PayChannel.ALIPAY: 0.0}
# A lost mobile-network reply is retried at once with the same idempotency key: the gateway answers
# the retry with the first outcome, so a retry can never charge twice.
NETWORK_RETRIES = 2
# Refusals after which the gateway has certainly not called the channel: nothing was taken.
_NOTHING_TAKEN_STATUSES = (401, 403, 404, 413, 422)
_RESULT_CODES = {c.value: c for c in ResultCode}
# The gateway's refusals of a payment that HIS gets as their own error_code (the rest: declined).
# Above the per-transaction limit is bad_amount, as when the bridge or the POS refuse it first.
_PAY_REFUSALS = {"duplicate_order": ResultCode.DUPLICATE_ORDER, "over_transaction_limit": ResultCode.BAD_AMOUNT}
# The gateway's refusals of a refund that HIS gets as their own error_code (the rest: refund_rejected).
_REFUND_REFUSALS = {"refund_exceeds_collected": ResultCode.REFUND_EXCEEDS_REMAINING,
                    "refund_window_closed": ResultCode.REFUND_WINDOW_CLOSED, "too_many_refunds": ResultCode.TOO_MANY_REFUNDS}


def _result_code(text: object) -> ResultCode | None:
    return _RESULT_CODES.get(text) if isinstance(text, str) else None


def _fen(reply: dict, name: str) -> int | None:
    """An amount of the gateway's reply (absent or null: none), checked once where it enters the POS;
    anything but an integer of fen makes the whole reply not understood (UNKNOWN: query again)."""
    value = reply.get(name)
    return None if value is None else parse_fen(value, what=name)


class GatewayChannelClient:
    """`terminal.channels.base.ChannelClient` for one channel, through the provider's gateway.

    The POS keeps its routing, state machine and journal; this client only turns each call into a
    signed gateway request and the reply back into the same outcomes a channel client gives. When
    the reply cannot be trusted to be final (no answer, 5xx, in progress) the outcome is UNKNOWN, so
    the service queries before deciding, exactly as with a channel.
    """

    def __init__(self, connection: GatewayConnection, channel: PayChannel, *, terminal_id: str | None = None) -> None:
        self.connection = connection
        self.channel = channel
        # Used only when a payment names no terminal: a POS serving one terminal. A POS serving
        # several pays for the terminal each instruction names (`pay(terminal_id=...)`).
        self.terminal_id = terminal_id
        self.query_interval_s, self.pay_deadline_s = CADENCE[channel]
        self.reverse_not_before_s = REVERSE_NOT_BEFORE_S[channel]

    def _post(self, path: str, body: dict) -> tuple[int, dict]:
        status, reply = self.connection.post(path, body)
        for _ in range(NETWORK_RETRIES):
            if status != 0 or reply.get("error", {}).get("code") != "network":
                break
            status, reply = self.connection.post(path, body)
        return status, reply

    @staticmethod
    def _refusal(status: int, reply: dict) -> tuple[bool, str, str]:
        """(nothing was taken, code, message) of a non-200 reply."""
        error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
        code, message = str(error.get("code", "unknown")), str(error.get("message", ""))
        return status in _NOTHING_TAKEN_STATUSES or code == "duplicate_order", code, message

    def _pay_outcome(self, status: int, reply: dict) -> PayOutcome:
        if status == 200:
            try:
                return PayOutcome(PayState(reply["state"]), reply.get("channel_txn_id"), _fen(reply, "paid_fen"),
                                  _result_code(reply.get("result_code")), reply.get("channel_code"), reply.get("message"))
            except (KeyError, ValueError, ProtocolError):
                return PayOutcome(PayState.UNKNOWN, message="the gateway's reply was not understood")
        final, code, message = self._refusal(status, reply)
        if not final:
            return PayOutcome(PayState.UNKNOWN, channel_code=code, message=message)
        result = _PAY_REFUSALS.get(code, ResultCode.DECLINED)
        return PayOutcome(PayState.FAILED, result_code=result, channel_code=code, message=message)

    def pay(self, *, out_trade_no: str, auth_code: str, total_fen: int, subject: str, order_no: str | None = None,
            terminal_id: str | None = None) -> PayOutcome:
        terminal_id = terminal_id or self.terminal_id
        if order_no is None or terminal_id is None:
            return PayOutcome(PayState.FAILED, result_code=ResultCode.DECLINED, channel_code="bad_request",
                              message="the gateway needs the HIS order number and terminal of a payment")
        body = {"idempotency_key": f"pay-{out_trade_no}", "terminal_id": terminal_id, "order_no": order_no,
                "out_trade_no": out_trade_no, "channel": self.channel.value, "amount_fen": total_fen, "auth_code": auth_code,
                "subject": subject}
        return self._pay_outcome(*self._post("/v1/pay", body))

    def query(self, out_trade_no: str) -> PayOutcome:
        status, reply = self._post("/v1/query", {"out_trade_no": out_trade_no})
        if status != 200 and reply.get("error", {}).get("code") == "unknown_payment":
            return PayOutcome(PayState.NOT_FOUND, message="the gateway has no such payment")
        return self._pay_outcome(status, reply) if status == 200 else PayOutcome(PayState.UNKNOWN, message=str(reply.get("error")))

    def reverse(self, out_trade_no: str) -> ReverseOutcome:
        status, reply = self._post("/v1/reverse", {"idempotency_key": f"reverse-{uuid.uuid4().hex}", "out_trade_no": out_trade_no})
        if status == 200:
            try:
                return ReverseOutcome(ReverseState(reply["state"]), reply.get("channel_code"), reply.get("message"))
            except (KeyError, ValueError):
                return ReverseOutcome(ReverseState.UNKNOWN, message="the gateway's reply was not understood")
        if reply.get("error", {}).get("code") == "unknown_payment":
            return ReverseOutcome(ReverseState.DONE, message="the gateway never recorded this payment: nothing was taken")
        return ReverseOutcome(ReverseState.UNKNOWN, message=str(reply.get("error")))

    def _refund_outcome(self, status: int, reply: dict) -> RefundOutcome:
        if status == 200:
            try:
                return RefundOutcome(RefundState(reply["state"]), reply.get("channel_refund_id"), _fen(reply, "refunded_fen"),
                                     _result_code(reply.get("result_code")), reply.get("channel_code"), reply.get("message"))
            except (KeyError, ValueError, ProtocolError):
                return RefundOutcome(RefundState.UNKNOWN, message="the gateway's reply was not understood")
        final, code, message = self._refusal(status, reply)
        if not final:
            return RefundOutcome(RefundState.UNKNOWN, channel_code=code, message=message)
        return RefundOutcome(RefundState.FAILED, result_code=_REFUND_REFUSALS.get(code, ResultCode.REFUND_REJECTED), channel_code=code,
                             message=message)

    def refund(self, *, out_trade_no: str, out_refund_no: str, total_fen: int, refund_fen: int, reason: str,
               order_no: str | None = None, instruction: bytes | None = None) -> RefundOutcome:
        if instruction is None or order_no is None:
            return RefundOutcome(RefundState.FAILED, result_code=ResultCode.REFUND_REJECTED, channel_code="bad_instruction",
                                 message="the HIS instruction of this refund is not in the journal")
        body = {"idempotency_key": f"refund-{uuid.uuid4().hex}", "order_no": order_no,
                "out_refund_no": out_refund_no, "amount_fen": refund_fen, "reason": reason, "instruction": json.loads(instruction)}
        return self._refund_outcome(*self._post("/v1/refund", body))

    def refund_query(self, *, out_trade_no: str, out_refund_no: str) -> RefundOutcome:
        status, reply = self._post("/v1/refund-query", {"out_refund_no": out_refund_no})
        if status != 200 and reply.get("error", {}).get("code") == "unknown_refund":
            return RefundOutcome(RefundState.NOT_FOUND, message="the gateway has no such refund")
        return self._refund_outcome(status, reply) if status == 200 else RefundOutcome(RefundState.UNKNOWN, message=str(reply.get("error")))

    def download_bill(self, bill_date: datetime.date) -> bytes:
        raise NotImplementedError("bills are downloaded by the gateway, which holds the merchant keys; the POS never does")


class GatewayAlarms:
    """`terminal.alarms.AlarmSink` through the gateway: `POST /v1/alarm`, signed like every request.
    Idempotent by (reference, reason): a report sent again is the same alarm."""

    def __init__(self, connection: GatewayConnection) -> None:
        self.connection = connection

    def report(self, alarm: Alarm) -> bool:
        body: dict[str, object] = {"idempotency_key": f"alarm-{alarm.reference}-{alarm.reason}"[:64], "reason": alarm.reason,
                                   "kind": alarm.kind, "order_no": alarm.order_no, "amount_fen": alarm.amount_fen,
                                   "reference": alarm.reference, "channel": alarm.channel.value if alarm.channel else None}
        if alarm.message:
            body["message"] = alarm.message[:512]
        status, _ = self.connection.post("/v1/alarm", body)
        return status == 200
