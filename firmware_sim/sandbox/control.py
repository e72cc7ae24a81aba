"""The tester's side of the sandbox: `/sandbox/v1/...` (JSON, loopback, no authentication).

    POST /sandbox/v1/codes                 issue a payment code: {"channel", "balance", "behaviour"}; channel UNIONPAY
                                           or ECNY: a code of that kind, with no account (both channels refuse it)
    GET  /sandbox/v1/codes/{code}/qr.png   the code as a QR image
    GET  /sandbox/v1/accounts/{code}       balance, orders and refunds of that code's account
    GET  /sandbox/v1/orders/{channel}/{out_trade_no}[/{merchant}]   numbers are per merchant: when several merchants used
                                           it, name one ("-" for the default merchant); the reply says whose it is
    GET  /sandbox/v1/health                {"status": "ok", ...}
    GET|POST /sandbox/v1/clock             business date: {"today": "2024-05-01"} or {"today": null}; and
                                           {"advance_s": 60}: real time moves on (codes expire, patients confirm,
                                           unpaid WeChat orders are revoked) without anyone waiting
    GET|POST|DELETE /sandbox/v1/scripts    scripted answers for a code or an order (scripts.py): {"code" | "channel" +
                                           "out_trade_no", "answer", "value", "times"}
    GET|POST /sandbox/v1/faults            {"channel": "WECHAT"|"ALIPAY"|"ALL", "reply_signature": "ok"|"corrupt"|"missing"|"tamper"}
                                           (Alipay's async notifications carry the same fault: one key signs both)
Errors are {"error": {"code": ..., "message": ...}} with the project's error codes.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import re
from typing import Callable

import qrcode

from firmware_sim.sandbox.behaviour import FOREIGN, Behaviour, new_buyer_id, new_code, new_foreign_code
from firmware_sim.sandbox.reply import Faults, Reply, SignatureFault
from firmware_sim.sandbox.scripts import ScriptError, Scripts
from firmware_sim.sandbox.store import SHANGHAI, CHANNELS, Order, Store
from protocol.amount import format_yuan, parse_yuan
from protocol.errors import ErrorCode, ProtocolError
from protocol.strictjson import loads_object

PREFIX = "/sandbox/v1"
_CODE = re.compile(r"[0-9]{16,24}", re.ASCII)
_NO = re.compile(r"[A-Za-z0-9_\-|*]{1,64}", re.ASCII)
_JSON = "application/json; charset=utf-8"


def _json(obj: object, status: int = 200) -> Reply:
    return Reply(status, _JSON, json.dumps(obj, ensure_ascii=False, indent=1).encode("utf-8"))


def _error(code: ErrorCode, message: str) -> Reply:
    return _json(ProtocolError(code, message).to_json_obj(), ProtocolError(code, message).http_status)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.datetime.fromtimestamp(ts, SHANGHAI).isoformat(timespec="seconds")


def qr_png(code: str) -> bytes:
    image = qrcode.make(code, box_size=8, border=2)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def order_json(order: Order) -> dict[str, object]:
    return {
        "channel": order.channel, "out_trade_no": order.out_trade_no, "channel_txn_id": order.txn_id, "state": order.state.value,
        "total": format_yuan(order.total_fen), "total_fen": order.total_fen, "refunded_fen": order.refunded_fen,
        "created_at": _iso(order.created_at), "paid_at": _iso(order.paid_at), "closed_at": _iso(order.closed_at),
        "merchant": order.merchant,
    }


class ControlApi:
    def __init__(self, store: Store, faults: Faults, qr_dir: str, describe: Callable[[], dict[str, object]], scripts: Scripts | None = None) -> None:
        self.store = store
        self.scripts = scripts or Scripts()
        self.faults = faults
        self.qr_dir = qr_dir
        self.describe = describe

    def handle(self, method: str, path: str, body: bytes) -> Reply:
        parts = path[len(PREFIX):].strip("/").split("/")
        try:
            if parts == ["health"] and method == "GET":
                return _json({"status": "ok", "today": self.store.today().isoformat(), **self.describe()})
            if parts == ["codes"] and method == "POST":
                return self._issue(self._body(body))
            if len(parts) == 3 and parts[0] == "codes" and parts[2] == "qr.png" and method == "GET":
                return self._qr(parts[1])
            if len(parts) == 2 and parts[0] == "accounts" and method == "GET":
                return self._account(parts[1])
            if len(parts) in (3, 4) and parts[0] == "orders" and method == "GET":
                return self._order(parts[1], parts[2], parts[3] if len(parts) == 4 else None)
            if parts == ["clock"]:
                return self._clock(self._body(body) if method == "POST" else None)
            if parts == ["faults"]:
                return self._faults(self._body(body) if method == "POST" else None)
            if parts == ["scripts"]:
                return self._scripts(method, self._body(body) if method == "POST" else None)
        except ProtocolError as exc:
            return _json(exc.to_json_obj(), exc.http_status)
        return _error(ErrorCode.NOT_FOUND, f"no {method} {path}; see docs/simulator.md for the control endpoints")

    def _body(self, body: bytes) -> dict[str, object]:
        return loads_object(body or b"{}", what="request body")

    def _issue(self, request: dict[str, object]) -> Reply:
        unknown = sorted(set(request) - {"channel", "balance", "behaviour"})
        if unknown:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"unknown field(s) {', '.join(unknown)}; known: channel, balance, behaviour")
        channel = request.get("channel")
        if channel in FOREIGN:  # a code neither channel collects, for testing the refusal
            code = new_foreign_code(str(channel))
            return _json({"code": code, "channel": channel, "note": FOREIGN[str(channel)][2], "qr_png": base64.b64encode(qr_png(code)).decode("ascii")}, 201)
        if channel not in CHANNELS:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "channel must be \"WECHAT\" or \"ALIPAY\" (or UNIONPAY / ECNY for a code both refuse)")
        balance_fen = parse_yuan(request.get("balance", "100.00"))
        try:
            behaviour = Behaviour.parse(request.get("behaviour", "success"))
        except ValueError as exc:
            raise ProtocolError(ErrorCode.BAD_REQUEST, str(exc)) from None
        account = None
        while account is None:  # a fresh random code collides with an existing one only by a fluke
            account = self.store.create_account(str(channel), new_code(str(channel)), behaviour, balance_fen, new_buyer_id(str(channel)))
        png = qr_png(account.code)
        os.makedirs(self.qr_dir, exist_ok=True)
        path = os.path.join(self.qr_dir, f"{account.code}.png")
        with open(path, "wb") as handle:
            handle.write(png)
        return _json({
            "code": account.code, "channel": account.channel, "behaviour": account.behaviour.text,
            "balance": format_yuan(account.balance_fen), "balance_fen": account.balance_fen,
            "qr_png": base64.b64encode(png).decode("ascii"), "qr_path": os.path.abspath(path),
        }, 201)

    def _qr(self, code: str) -> Reply:
        if not _CODE.fullmatch(code) or self.store.account(code) is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such payment code")
        return Reply(200, "image/png", qr_png(code))

    def _account(self, code: str) -> Reply:
        account = self.store.account(code) if _CODE.fullmatch(code) else None
        if account is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such payment code; issue one with POST /sandbox/v1/codes")
        return _json({
            "code": account.code, "channel": account.channel, "behaviour": account.behaviour.text,
            "balance": format_yuan(account.balance_fen), "balance_fen": account.balance_fen,
            "initial_balance": format_yuan(account.initial_fen), "initial_balance_fen": account.initial_fen,
            "orders": [order_json(order) for order in self.store.orders_for(code)],
            "refunds": [{"out_trade_no": r.out_trade_no, "out_refund_no": r.out_refund_no, "refund_id": r.refund_id, "kind": r.kind,
                         "amount": format_yuan(r.amount_fen), "amount_fen": r.amount_fen, "created_at": _iso(r.created_at)}
                        for r in self.store.refunds_for(code)],
        })

    def _order(self, channel: str, out_trade_no: str, merchant: str | None) -> Reply:
        found = self.store.orders_numbered(channel.upper(), out_trade_no) if _NO.fullmatch(out_trade_no) else []
        if merchant is not None:
            found = [o for o in found if o.merchant == ("" if merchant == "-" else merchant)]
        if not found:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such order")
        if len(found) > 1:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"{len(found)} merchants have an order {out_trade_no}: ask for one with "
                                f"/orders/{channel}/{out_trade_no}/MERCHANT ({', '.join(o.merchant or '-' for o in found)})")
        return _json(order_json(found[0]))

    def _clock(self, request: dict[str, object] | None) -> Reply:
        if request is not None and "advance_s" in request:
            seconds = request.get("advance_s")
            if set(request) != {"advance_s"} or isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 366 * 86400:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "advance_s must be a number of seconds (0 .. a year), on its own")
            self.store.advance(float(seconds))
        elif request is not None:
            today = request.get("today")
            try:
                day = None if today is None else datetime.date.fromisoformat(str(today))
            except ValueError:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "today must be a date such as \"2024-05-01\", or null for the real date") from None
            self.store.set_today(day)
        return _json({"today": self.store.today().isoformat(), "now": _iso(self.store.now())})

    def _scripts(self, method: str, request: dict[str, object] | None) -> Reply:
        if method == "DELETE":
            self.scripts.clear()
        elif request is not None:
            try:
                self.scripts.add(request)
            except ScriptError as exc:
                raise ProtocolError(ErrorCode.BAD_REQUEST, str(exc)) from None
        return _json({"scripts": self.scripts.snapshot()}, 201 if request is not None else 200)

    def _faults(self, request: dict[str, object] | None) -> Reply:
        if request is not None:
            channel = request.get("channel", "ALL")
            try:
                fault = SignatureFault(request.get("reply_signature"))
            except ValueError:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "reply_signature must be one of ok, corrupt, missing, tamper") from None
            if channel not in (*CHANNELS, "ALL"):
                raise ProtocolError(ErrorCode.BAD_REQUEST, "channel must be WECHAT, ALIPAY or ALL")
            for name in CHANNELS if channel == "ALL" else (str(channel),):
                self.faults.set_signature(name, fault)
        return _json({"reply_signature": self.faults.snapshot()})
