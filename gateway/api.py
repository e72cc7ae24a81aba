"""The POS -> gateway API over HTTP(S): JSON bodies, device-signed requests (`protocol.device_request`).

    POST /v1/pay           {idempotency_key, terminal_id, order_no, out_trade_no, channel, amount_fen, auth_code, subject?}
    POST /v1/query         {out_trade_no}
    POST /v1/reverse       {idempotency_key, out_trade_no}
    POST /v1/refund        {idempotency_key, order_no, out_refund_no, amount_fen, reason?, instruction: <sealed HIS envelope>}
    POST /v1/refund-query  {out_refund_no}
    POST /v1/journal-mark  {mine}                 the POS's journal mark: the highest is kept (gateway.device_sync)
    POST /v1/orders        {after?, limit?}       this device's payments and refunds, for the POS's re-sync
    GET  /v1/health        (unauthenticated) {"ok": true}
    POST /v1/notify/alipay (from Alipay, not a device) its async notifications, form-encoded and RSA2-signed;
                           answered `success` once applied (gateway/notifications.py)
    POST /v1/notify/wechat/{hospital_id}  (from WeChat Pay) its refund notifications, v2 XML or APIv3 JSON;
                           verified with the hospital's WeChat Pay keys (gateway/wechat_notifications.py)

A refusal is {"error": {"code", "message"}} with the status of `gateway.errors.HTTP_STATUS`. TLS is
required except on a loopback address (`make run`, tests), where plain HTTP is allowed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gateway.errors import GatewayCode, GatewayError
from gateway.channel_clients import WECHAT_NOTIFY_PREFIX
from gateway.notifications import ACK, MAX_FORM_BYTES, PATH_ALIPAY, AlipayNotifications
from gateway.wechat_notifications import WeChatNotifications
from gateway.service import MAX_BODY_BYTES, GatewayService

log = logging.getLogger(__name__)
# A device's request is small and sent at once: a client that trickles it is dropped.
REQUEST_TIMEOUT_S = 15.0
# A TLS handshake not finished in this long is dropped (it runs in the connection's own thread).
TLS_HANDSHAKE_TIMEOUT_S = 10.0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _Handler(BaseHTTPRequestHandler):
    server: "GatewayHttpServer"
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_S
    # TCP_NODELAY, and every reply written in one piece (`_send`): on a kept-alive connection, a
    # body written after its headers waited for the client's delayed ACK (Nagle): ~40 ms a request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        if log.isEnabledFor(logging.DEBUG):  # every request passes here: no formatting unless it is kept
            log.debug("%s %s", self.address_string(), format % args)

    def _reply(self, status: int, obj: dict) -> None:
        self._send(status, "application/json; charset=utf-8", json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        """Status line, headers and body in one write (see disable_nagle_algorithm)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:  # a body not read (too large), or the client asked: say so, the client must not reuse it
            self.send_header("Connection", "close")
        buffered = getattr(self, "_headers_buffer", None)  # http.server's (absent for an HTTP/0.9 request)
        if buffered is None:
            self.end_headers()
            self.wfile.write(body)
            return
        buffered.append(b"\r\n" + body)  # end_headers' blank line, then the body: flushed together
        self.flush_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/v1/health":
            self._reply(200, {"ok": True})
        else:
            self._reply(404 if self.path.startswith("/v1/") else 404, GatewayError(GatewayCode.NOT_FOUND, f"no endpoint GET {self.path}").to_json_obj())

    def do_POST(self) -> None:  # noqa: N802
        if self.path == PATH_ALIPAY:
            return self._notification()
        if self.path.startswith(WECHAT_NOTIFY_PREFIX):
            return self._wechat_notification()
        try:
            length_text = self.headers.get("Content-Length", "")
            if not length_text.isdigit():
                raise GatewayError(GatewayCode.BAD_REQUEST, "Content-Length is required")
            length = int(length_text)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                raise GatewayError(GatewayCode.TOO_LARGE, f"the body is larger than {MAX_BODY_BYTES} bytes")
            body = self.rfile.read(length)
            service = self.server.service
            auth = service.authenticate(self.headers, "POST", self.path, body)
            status, reply = service.handle(auth, self.path, body)
        except GatewayError as exc:
            status, reply = exc.http_status, exc.to_json_obj()
        except Exception:  # noqa: BLE001 - the device gets a stable code; the trace goes to the log
            log.exception("internal error on %s", self.path)
            status, reply = 500, GatewayError(GatewayCode.INTERNAL_ERROR, "internal error; retry with the same idempotency_key").to_json_obj()
        self._reply(status, reply)


    def _notification(self) -> None:
        """Alipay's async notification: `success` (text) only once the ledger has committed it."""
        try:
            length_text = self.headers.get("Content-Length", "")
            if not length_text.isdigit():
                raise GatewayError(GatewayCode.BAD_REQUEST, "Content-Length is required")
            if int(length_text) > MAX_FORM_BYTES:
                self.close_connection = True
                raise GatewayError(GatewayCode.TOO_LARGE, f"the body is larger than {MAX_FORM_BYTES} bytes")
            self.server.notifications.handle(self.rfile.read(int(length_text)))
        except GatewayError as exc:
            return self._reply(exc.http_status, exc.to_json_obj())
        except Exception:  # noqa: BLE001 - Alipay sends it again; the trace goes to the log
            log.exception("internal error on an Alipay notification")
            return self._reply(500, GatewayError(GatewayCode.INTERNAL_ERROR, "internal error").to_json_obj())
        self._send(200, "text/plain; charset=utf-8", ACK)


    def _wechat_notification(self) -> None:
        """WeChat Pay's refund notification: its own answer format (v2 XML, v3 status), from the receiver."""
        try:
            length_text = self.headers.get("Content-Length", "")
            if not length_text.isdigit():
                raise GatewayError(GatewayCode.BAD_REQUEST, "Content-Length is required")
            if int(length_text) > MAX_BODY_BYTES:
                self.close_connection = True
                raise GatewayError(GatewayCode.TOO_LARGE, f"the body is larger than {MAX_BODY_BYTES} bytes")
            status, body, content_type = self.server.wechat_notifications.handle(self.path, self.headers, self.rfile.read(int(length_text)))
        except GatewayError as exc:
            return self._reply(exc.http_status, exc.to_json_obj())
        except Exception:  # noqa: BLE001 - WeChat Pay sends it again; the trace goes to the log
            log.exception("internal error on a WeChat Pay notification")
            return self._reply(500, GatewayError(GatewayCode.INTERNAL_ERROR, "internal error").to_json_obj())
        self._send(status, content_type, body)


class GatewayHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, service: GatewayService, host: str = "127.0.0.1", port: int = 0, *,
                 tls_cert: str | None = None, tls_key: str | None = None) -> None:
        if tls_cert is None and not _is_loopback(host):
            raise GatewayError(GatewayCode.BAD_CONFIG, f"plain HTTP is only allowed on a loopback address, not {host}; give --tls-cert and --tls-key")
        self.service = service
        self.notifications = AlipayNotifications(service.ledger, service.channels, service.alarms)
        self.wechat_notifications = WeChatNotifications(service.directory, service.ledger, service.alarms)
        super().__init__((host, port), _Handler)
        self.tls = tls_cert is not None
        if tls_cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(tls_cert, tls_key)
            # The handshake runs in each connection's own thread (finish_request), not in accept():
            # one client that connects and says nothing must not hold up every other device.
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self._thread: threading.Thread | None = None

    def finish_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]  # socketserver's own parameter names, untyped there
        if self.tls:
            request.settimeout(TLS_HANDSHAKE_TIMEOUT_S)
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError) as exc:  # a scanner, a client that does not trust us, a dead link
                log.debug("TLS handshake with %s failed: %s", client_address[0], exc.__class__.__name__)
                return  # socketserver closes the socket
        super().finish_request(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def start(self) -> "GatewayHttpServer":
        if self.service.channels.alipay_notify_url is None:
            # Alipay reaches this process at its own address unless told otherwise (payment-gateway --public-url).
            self.service.channels.set_alipay_notify_url(self.url + PATH_ALIPAY)
            if not _is_loopback(str(self.server_address[0])):
                log.warning("Alipay notifications will be sent to %s; give --public-url with the address Alipay can reach",
                            self.url + PATH_ALIPAY)
        if self.service.channels.wechat_notify_base is None:
            self.service.channels.set_wechat_notify_base(self.url)  # payment-gateway --public-url sets it beforehand
        self._thread = threading.Thread(target=self.serve_forever, name="gateway-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
