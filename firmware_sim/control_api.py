"""The virtual device's control API: the cashier's hands and the bench technician's, over HTTP.

JSON over HTTP/1.1 on 127.0.0.1 (port 0 = ephemeral; `pos-sim run` prints the URL in its ready line
and writes it to <storage>/sim.json). No authentication, so loopback only unless the caller insists.
docs/simulator.md, "Device control API", has a curl example for each route:

    GET  /v1/status                  identity, power, boot slot, link, clock, faults
    GET  /v1/screen                  what the POS shows now (state, order_no, amount, message zh/en, countdown)
    GET  /v1/history[?order_no=MZ1]  today's finished instructions, newest first
    POST /v1/scan                    {"code": "134567890123456789"} or {"qr_png": "<file path or base64 PNG>"}
    POST /v1/cancel
    POST /v1/refund/confirm          {"pin": "246810"}
    POST /v1/refund/decline
    POST /v1/dismiss                 hide the result screen
    POST /v1/recheck                 a person fixed what a needs-person instruction waits for: ask the channel again
    GET  /v1/faults                  armed and active faults, byte-filter counters
    POST /v1/faults                  one fault object, or {"faults": [...]} applied in order (firmware_sim.faults)

Errors: `{"error": {"code": "<stable code>", "message": "...", ...}}` with firmware_sim.simerrors'
codes and statuses (409 nothing_to_scan, 422 not_a_payment_code with "reason", 403 wrong_pin with
"tries_left", 409 powered_off, 400 bad_request / malformed_json / bad_fault, 404, 405, 413).
Payment codes never reach a log line whole (terminal.routing.mask_code).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from protocol.amount import format_amount, format_yuan
from protocol.errors import ProtocolError
from protocol.strictjson import loads_object
from terminal.history import HistoryEntry
from terminal.routing import mask_code
from terminal.texts import Text
from terminal.view import ResultView, ScreenView

from firmware_sim.device import Power, VirtualDevice
from firmware_sim.faults import describe_fault, parse_fault
from firmware_sim.qr_decode import MAX_IMAGE_BYTES, decode_code
from firmware_sim.simerrors import SimCode, SimError

log = logging.getLogger("firmware_sim.control")

# A base64 PNG of the largest image the camera reads, plus the JSON around it.
MAX_BODY = MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024
# A request (line, headers, body) must arrive within this; a stalled client loses its thread.
REQUEST_TIMEOUT_S = 10.0
MAX_FAULTS_PER_REQUEST = 32
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"BM")

_OFF_TEXT = Text("设备已断电", "The device is off")


# ----------------------------------------------------------------------------- JSON views


def _text(text: Text | None) -> dict[str, str] | None:
    """zh and en, and the catalogue key (terminal.texts) a script can match on, when it has one."""
    if text is None:
        return None
    return {"zh": text.zh, "en": text.en, **({"key": text.key} if text.key else {})}


def result_json(result: ResultView | None) -> dict[str, object] | None:
    if result is None:
        return None
    return {"msg_id": result.msg_id, "order_no": result.order_no, "amount": format_amount(result.amount),
            "amount_fen": result.amount_fen, "pay_status": result.pay_status.value,
            "channel": None if result.channel is None else result.channel.value, "pay_order_no": result.pay_order_no,
            "error_code": result.error_code, "ok": result.ok, "message": _text(result.message), "finished_at": result.finished_at}


def screen_json(view: ScreenView, power: Power) -> dict[str, object]:
    return {
        "power": power.value, "revision": view.revision, "screen": view.screen.value,
        "state": None if view.state is None else view.state.value, "msg_id": view.msg_id, "order_no": view.order_no,
        "terminal_id": view.terminal_id, "direction": None if view.direction is None else view.direction.value,
        "amount": view.amount_text, "amount_fen": view.amount_fen, "patient": view.patient,
        "items": [{"name": i.name, "qty": i.qty, "amount": format_yuan(i.amount_fen)} for i in view.items],
        "channel": None if view.channel is None else view.channel.value, "message": _text(view.message),
        "notice": _text(view.notice), "deadline": view.deadline,
        "countdown_s": None if view.countdown_s is None else round(view.countdown_s, 1),
        "can_scan": view.can_scan, "can_cancel": view.can_cancel, "pin_tries_left": view.pin_tries_left,
        "pin_locked_until": view.pin_locked_until, "queued": view.queued, "link_up": view.link_up,
        "last_result": result_json(view.last_result),
        "needs_person": view.needs_person, "needs_person_elsewhere": view.needs_person_elsewhere, "reverse_at": view.reverse_at,
    }


def dark_screen_json(power: Power, problem: str | None) -> dict[str, object]:
    """What a device that runs no application shows: nothing (off) or the bootloader's recovery note."""
    message = _OFF_TEXT if power is Power.OFF else Text(f"恢复模式：{problem or ''}", f"Recovery: {problem or ''}")
    return {"power": power.value, "screen": "off" if power is Power.OFF else "recovery", "state": None,
            "message": _text(message), "link_up": False}


def history_json(entry: HistoryEntry) -> dict[str, object]:
    return {"msg_id": entry.msg_id, "order_no": entry.order_no, "terminal_id": entry.terminal_id,
            "amount": format_amount(entry.amount), "amount_fen": entry.amount_fen,
            "pay_status": entry.pay_status.value, "channel": None if entry.channel is None else entry.channel.value,
            "pay_order_no": entry.pay_order_no, "error_code": entry.error_code, "message": _text(entry.message),
            "finished_at": entry.finished_at, "delivered": entry.delivered}


# ----------------------------------------------------------------------------- routes


def _field(body: dict[str, object], name: str, *, max_len: int = 256) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise SimError(SimCode.BAD_REQUEST, f"{name} must be a non-empty string of at most {max_len} characters")
    return value


def _image_bytes(value: str) -> bytes:
    """`qr_png` is a file path or base64 (a data: URL prefix is allowed)."""
    text = value.removeprefix("data:image/png;base64,")
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if decoded.startswith(_IMAGE_MAGIC):
        return decoded
    path = Path(value)
    try:
        if path.is_file():
            if path.stat().st_size > MAX_IMAGE_BYTES:
                raise SimError(SimCode.QR_UNREADABLE, f"{path} is larger than {MAX_IMAGE_BYTES} bytes")
            return path.read_bytes()
    except OSError as exc:
        raise SimError(SimCode.BAD_REQUEST, f"qr_png: cannot read {path}: {exc.strerror or exc}") from None
    if decoded:
        return decoded  # base64 of something that is not an image: the decoder says so
    raise SimError(SimCode.BAD_REQUEST, "qr_png must be the path of an image file readable by the simulator, or base64 of a PNG")


class ControlApi:
    """Routes (method, path, body) to the device; returns (status, JSON object). No I/O of its own."""

    def __init__(self, device: VirtualDevice) -> None:
        self.device = device

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, object]]:
        try:
            return self._route(method, target, body)
        except SimError as exc:
            return exc.http_status, exc.to_json_obj()

    def _body(self, body: bytes) -> dict[str, object]:
        if not body.strip():
            return {}
        try:
            return loads_object(body, what="request body")
        except ProtocolError as exc:
            raise SimError(SimCode.MALFORMED_JSON, exc.message) from None

    def _route(self, method: str, target: str, raw: bytes) -> tuple[int, dict[str, object]]:
        parts = urllib.parse.urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = dict(urllib.parse.parse_qsl(parts.query))
        routes = {
            "/v1/status": ("GET",), "/v1/screen": ("GET",), "/v1/history": ("GET",), "/v1/faults": ("GET", "POST"),
            "/v1/scan": ("POST",), "/v1/cancel": ("POST",), "/v1/refund/confirm": ("POST",),
            "/v1/refund/decline": ("POST",), "/v1/dismiss": ("POST",), "/v1/recheck": ("POST",),
        }
        if path not in routes:
            raise SimError(SimCode.NOT_FOUND, f"no endpoint {path}; see docs/simulator.md (Device control API)")
        if method not in routes[path]:
            raise SimError(SimCode.METHOD_NOT_ALLOWED, f"{path} takes {' or '.join(routes[path])}, not {method}")
        body = self._body(raw) if method == "POST" else {}
        device = self.device
        if path == "/v1/status":
            return 200, device.status()
        if path == "/v1/screen":
            return 200, self._screen()
        if path == "/v1/history":
            order_no = query.get("order_no")
            return 200, {"entries": [history_json(e) for e in device.history(order_no=order_no)]}
        if path == "/v1/faults":
            if method == "GET":
                return 200, device.status()["faults"]
            return 200, self._faults(body)
        if path == "/v1/scan":
            return 200, self._scan(body)
        if path == "/v1/cancel":
            reply = device.cancel()
            return 200, {"ok": True, "message": _text(reply.message), "screen": self._screen()}
        if path == "/v1/refund/confirm":
            device.confirm_refund(_field(body, "pin", max_len=32))
            return 200, {"ok": True, "screen": self._screen()}
        if path == "/v1/refund/decline":
            reply = device.decline_refund()
            return 200, {"ok": True, "message": _text(reply.message), "screen": self._screen()}
        if path == "/v1/recheck":
            reply = device.recheck()
            return 200, {"ok": True, "message": _text(reply.message), "screen": self._screen()}
        device.dismiss()
        return 200, {"ok": True, "screen": self._screen()}

    def _screen(self) -> dict[str, object]:
        device = self.device
        try:
            return screen_json(device.screen(), device.power)
        except SimError as exc:
            if exc.code in (SimCode.POWERED_OFF, SimCode.NO_APPLICATION):
                return dark_screen_json(device.power, device.status()["problem"])
            raise

    def _scan(self, body: dict[str, object]) -> dict[str, object]:
        unknown = sorted(set(body) - {"code", "qr_png"})
        if unknown or len(body) != 1:
            raise SimError(SimCode.BAD_REQUEST, "give exactly one of code (the scanner's read) or qr_png (an image for the camera)")
        if "code" in body:
            code, source = _field(body, "code", max_len=512), "scanner"
        else:
            code = decode_code(_image_bytes(_field(body, "qr_png", max_len=MAX_BODY)))
            source = "camera"
        reply = self.device.scan(code)
        log.info("%s read %s: %s", source, mask_code(code), reply.status.value)
        return {"ok": True, "source": source, "channel": None if reply.channel is None else reply.channel.value,
                "code_masked": mask_code(code), "message": _text(reply.message), "screen": self._screen()}

    def _faults(self, body: dict[str, object]) -> dict[str, object]:
        if "faults" in body:
            if len(body) != 1 or not isinstance(body["faults"], list) or not body["faults"]:
                raise SimError(SimCode.BAD_FAULT, "faults must be a non-empty list of fault objects (and nothing beside it)")
            items = body["faults"]
            if len(items) > MAX_FAULTS_PER_REQUEST:
                raise SimError(SimCode.BAD_FAULT, f"at most {MAX_FAULTS_PER_REQUEST} faults per request")
        else:
            items = [body]
        faults = [parse_fault(item) for item in items]  # all checked before any is applied
        status: dict[str, object] = {}
        for fault in faults:
            log.info("fault injected: %s", json.dumps(describe_fault(fault)))
            status = self.device.inject(fault)
        return {"ok": True, "applied": len(faults), "status": status}


# ----------------------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: ControlApi


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "pos-sim"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        body = b""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            return self._send(411, SimError(SimCode.BAD_REQUEST, "send a Content-Length (chunked bodies are not read)").to_json_obj())
        if length is not None:
            if not length.isdigit():
                return self._send(400, SimError(SimCode.BAD_REQUEST, "Content-Length is not a number").to_json_obj())
            if int(length) > MAX_BODY:
                self.close_connection = True
                return self._send(413, SimError(SimCode.TOO_LARGE, f"the body exceeds {MAX_BODY} bytes").to_json_obj())
            try:
                body = self.rfile.read(int(length))
            except OSError:
                self.close_connection = True
                return
        try:
            status, obj = self.server.api.handle(method, self.path, body)
        except Exception:  # one bad request must not take the simulator down; the trace says why
            log.exception("internal error on %s %s", method, urllib.parse.urlsplit(self.path).path)
            status, obj = 500, {"error": {"code": "internal_error", "message": "simulator error; see its log"}}
        self._send(status, obj)

    def _send(self, status: int, obj: dict[str, object]) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        log.debug("%s %s", self.address_string(), format % args)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ControlServer:
    """The control API on (host, port); `start()` serves in a thread, `stop()` ends it."""

    def __init__(self, device: VirtualDevice, *, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False) -> None:
        if not is_loopback(host) and not allow_remote:
            raise SimError(SimCode.BAD_REQUEST, f"refusing to serve the control API on {host}: it has no authentication "
                           "(loopback only; allow_remote to insist)")
        try:
            self.httpd = _Server((host, port), _Handler)
        except OSError as exc:
            raise SimError(SimCode.START_FAILED, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.api = ControlApi(device)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.socket.getsockname()[:2]  # (str, int): it listens on IPv4 loopback
        return f"http://{host}:{port}"

    def start(self) -> "ControlServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="control-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
