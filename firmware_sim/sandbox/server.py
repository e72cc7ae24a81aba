"""`channel-sandbox`: WeChat Pay and Alipay on 127.0.0.1, for the terminal, the simulator and tests.

One thread per connection (ThreadingHTTPServer), so a slow or silent payment code holds only its own
connection; HTTP/1.1, connections kept alive between requests as the channels' servers do. Routes:
    POST /pay/micropay /pay/orderquery /secapi/pay/reverse /secapi/pay/refund /pay/refundquery
         /pay/downloadbill                       WeChat Pay API v2 (base_url = the sandbox URL), direct merchant and
                                                 service provider (sub_mch_id)
    GET|POST /v3/pay/... /v3/refund/...          WeChat Pay APIv3 code payment (wechat_v3_api.py); GET /v3/certificates
    GET|POST /sandbox/v1/wechat/platform-certificates[/rotate|/switch]   the platform certificates' rotation (wechat_platform.py)
    GET|POST /gateway.do                         Alipay OpenAPI gateway (query string and/or form body)
    GET  /downloadBillFile.resource              Alipay bill zips (URLs come from the gateway)
    *    /sandbox/v1/...                         the tester's control API (see control.py)
When ready it prints one JSON line on stdout, {"event": "ready", "url": ..., "credentials": ...},
and writes the credentials file (see docs/simulator.md). SIGINT/SIGTERM stop it cleanly, even
while noreply codes hold connections open.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import re
import secrets
import select
import socket
import sys
import threading
import time
import urllib.parse
from typing import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


from firmware_sim.sandbox.alipay_api import AlipayApi, AlipayMerchant
from firmware_sim.sandbox.alipay_notify import Notifier
from firmware_sim.sandbox.alipay_tenants import AlipayApp, Tenants, ensure_certificates
from firmware_sim.sandbox.control import PREFIX, ControlApi
from firmware_sim.sandbox.identity import Identity, IdentityError, load_identity
from firmware_sim.sandbox.reply import Faults, Reply
from firmware_sim.sandbox.scripts import Scripts
from firmware_sim.sandbox.store import CODE_TTL_S, UNPAID_REVOKE_S, Store, StoreError
from firmware_sim.sandbox.wechat_api import PATHS as WECHAT_PATHS
from firmware_sim.sandbox.wechat_api import WeChatApi, WeChatMerchant, WeChatProvider
from local_storage.stop_signals import StopSignals
from firmware_sim.sandbox.wechat_identity import V3Party, load_wechat_world
from firmware_sim.sandbox.wechat_notify import RefundNotifier
from firmware_sim.sandbox.wechat_v3_api import PREFIX as WECHAT_V3_PREFIX
from firmware_sim.sandbox.wechat_v3_api import V3Merchant, WeChatV3Api
from firmware_sim.sandbox.wechat_platform import PlatformCertificates

log = logging.getLogger("channel-sandbox")
MAX_BODY = 64 * 1024
# A swallowed (noreply) request is held at most this long, then the connection is dropped.
HOLD_LIMIT_S = 600.0
DEFAULT_DATA_DIR = os.path.join(".run", "channel-sandbox")
_LONG_DIGITS = re.compile(r"[0-9]{12,}")


class Sandbox:
    """The whole sandbox in one object: start() serves in a thread, stop() ends it."""

    def __init__(self, data_dir: str, identity: Identity, *, host: str = "127.0.0.1", port: int = 0, clock=time.time,
                 code_ttl_s: float = CODE_TTL_S, unpaid_revoke_s: float = UNPAID_REVOKE_S) -> None:
        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = os.path.abspath(data_dir)
        self.identity = identity
        self.store = Store(os.path.join(self.data_dir, "sandbox.sqlite3"), clock=clock, code_ttl_s=code_ttl_s, unpaid_revoke_s=unpaid_revoke_s)
        self.faults = Faults()
        self.scripts = Scripts()
        self.stopping = threading.Event()
        self.wechat_world = world = load_wechat_world(self.data_dir, identity.wechat_mch_id)
        assert world.platform_private_key is not None
        platform_key = world.platform_private_key
        self.wechat_notifier = RefundNotifier(platform_key=platform_key, platform_serial=world.platform_public_key_id, stopping=self.stopping)
        provider = WeChatProvider(world.provider_appid, world.provider_mch_id, world.provider_api_key, frozenset(world.sub_mch_ids))
        self.wechat = WeChatApi(self.store, WeChatMerchant(identity.wechat_appid, identity.wechat_mch_id, identity.wechat_api_key), self.faults,
                                self.scripts, provider=provider, notifier=self.wechat_notifier)
        assert world.direct_v3 is not None and world.provider_v3 is not None
        self.platform_certs = PlatformCertificates(os.path.join(self.data_dir, "keys"), world.platform_cert_path,
                                                   os.path.join(self.data_dir, "keys", "wechat_platform_private_key.pem"))

        def v3_merchant(appid: str, party: V3Party, subs: frozenset[str] = frozenset()) -> V3Merchant:
            return V3Merchant(appid, party.mch_id, party.serial_no, party.public_key, party.apiv3_key, subs)

        self.wechat_v3 = WeChatV3Api(self.store, v3_merchant(identity.wechat_appid, world.direct_v3),
                                     v3_merchant(world.provider_appid, world.provider_v3, frozenset(world.sub_mch_ids)), self.faults,
                                     platform_key=platform_key, platform_public_key_id=world.platform_public_key_id,
                                     platform_certs=self.platform_certs, notifier=self.wechat_notifier,
                                     base_url=lambda: self.url)
        assert identity.alipay_private_key is not None and identity.app_public_key is not None
        secret = self.store.get_or_create_setting("bill_url_secret", secrets.token_hex(32)).encode("ascii")
        assert identity.isv_public_key is not None and identity.cert_app_public_key is not None
        self.certs = ensure_certificates(os.path.join(self.data_dir, "keys"), identity.alipay_private_key, identity.cert_app_public_key)
        self.tenants = Tenants(os.path.join(self.data_dir, "alipay.sqlite3"))
        if self.store.migrated_from is not None:  # a ledger from before per-merchant numbers: its third-party Alipay
            for seller_id, out_trade_no in self.tenants.trades_of_others(identity.alipay_pid):  # trades move to their merchant
                self.store.assign_merchant("ALIPAY", out_trade_no, seller_id)
        self.notifier = Notifier(identity.alipay_private_key, self.stopping)
        apps = [AlipayApp(identity.alipay_isv_app_id, identity.alipay_isv_pid, identity.isv_public_key),
                AlipayApp(identity.alipay_cert_app_id, identity.alipay_pid, identity.cert_app_public_key, cert_sn=self.certs.app_cert_sn)]
        self.alipay = AlipayApi(self.store, AlipayMerchant(identity.alipay_app_id, identity.alipay_pid, identity.app_public_key,
                                                           identity.alipay_private_key), self.faults, lambda: self.url, secret, self.scripts,
                                tenants=self.tenants, apps=apps, root_cert_sn=self.certs.root_sn, alipay_cert_sn=self.certs.alipay_cert_sn,
                                notifier=self.notifier)
        self.control = ControlApi(self.store, self.faults, os.path.join(self.data_dir, "qr"), self._describe, self.scripts)
        self.httpd = _Server((host, port), _Handler)
        self.httpd.sandbox = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}"

    def credentials(self) -> dict[str, object]:
        world = self.wechat_world
        alipay: dict[str, object] = {"gateway": self.url + "/gateway.do", "app_id": self.identity.alipay_app_id,
                                     "alipay_public_key_pem": self.identity.alipay_public_key_path}
        if self.identity.app_private_key_path:
            alipay["private_key_pem"] = self.identity.app_private_key_path
        return {
            "url": self.url,
            "control_url": self.url + PREFIX,
            "pid": os.getpid(),
            "data_dir": self.data_dir,
            "channels": {
                "wechat": {"base_url": self.url, "appid": self.identity.wechat_appid, "mch_id": self.identity.wechat_mch_id,
                           "api_key": self.identity.wechat_api_key},
                "alipay": alipay,
            },
            "alipay_pid": self.identity.alipay_pid,
            # The other Alipay apps, as channel settings sections: a service provider's third-party app
            # (add a merchant's app_auth_token from POST /sandbox/v1/alipay/app-auth) and one in certificate mode.
            "alipay_modes": {
                "third_party": {"gateway": self.url + "/gateway.do", "app_id": self.identity.alipay_isv_app_id,
                                "private_key_pem": self.identity.isv_private_key_path,
                                "alipay_public_key_pem": self.identity.alipay_public_key_path},
                "cert": {"gateway": self.url + "/gateway.do", "app_id": self.identity.alipay_cert_app_id,
                         "private_key_pem": self.identity.cert_app_private_key_path, "app_cert_pem": self.certs.app_cert,
                         "alipay_cert_pem": self.certs.alipay_cert, "alipay_root_cert_pem": self.certs.root},
            },
            # WeChat Pay's other ways in (not under "channels": a client is built from one of them at a time).
            "wechat_service_provider": {"base_url": self.url, "appid": world.provider_appid, "mch_id": world.provider_mch_id,
                                        "api_key": world.provider_api_key, "sub_mch_ids": list(world.sub_mch_ids),
                                        "sub_appid": world.sub_appid},
            "wechat_v3": {
                "direct": self._v3_credentials(self.identity.wechat_appid, world.direct_v3),
                "service_provider": self._v3_credentials(world.provider_appid, world.provider_v3)
                | {"sub_mchids": list(world.sub_mch_ids), "sub_appid": world.sub_appid},
            },
        }

    def _v3_credentials(self, appid: str, party: V3Party | None) -> dict[str, object]:
        world = self.wechat_world
        assert party is not None
        return {"api_version": "v3", "base_url": self.url, "appid": appid, "mchid": party.mch_id, "merchant_serial_no": party.serial_no,
                "private_key_pem": party.private_key_path, "apiv3_key": party.apiv3_key,
                "platform_public_key_pem": world.platform_public_key_path, "platform_public_key_id": world.platform_public_key_id,
                "platform_certificate_pem": world.platform_cert_path}

    def write_credentials(self, path: str) -> None:
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.credentials(), handle, indent=2)
        os.replace(tmp, path)

    def _describe(self) -> dict[str, object]:
        return {"url": self.url, "wechat": {"appid": self.identity.wechat_appid, "mch_id": self.identity.wechat_mch_id},
                "alipay": {"app_id": self.identity.alipay_app_id, "pid": self.identity.alipay_pid}}

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="sandbox-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()  # held (noreply) and delayed (slow) requests let go now
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.end_connections()  # idle kept-alive connections too
        deadline = time.monotonic() + 2.0
        while self.httpd.active and time.monotonic() < deadline:
            time.sleep(0.02)
        self.store.close()
        self.tenants.close()

    # -- routing -----------------------------------------------------------------------------

    def route(self, method: str, target: str, body: bytes, headers: Mapping[str, str] | None = None) -> Reply:
        parts = urllib.parse.urlsplit(target)
        path = parts.path
        if path.startswith(PREFIX + "/alipay/"):
            return self._alipay_control(method, path[len(PREFIX + "/alipay/"):], parts.query, body)
        if path.startswith(WECHAT_V3_PREFIX) and method in ("GET", "POST"):
            return self.wechat_v3.handle(method, target, headers or {}, body)
        if path.startswith(PREFIX + "/wechat/notifications"):
            return self._notifications(method, path)
        if path.startswith(PREFIX + "/wechat/platform-certificates"):
            return self._platform_certificates(method, path[len(PREFIX + "/wechat/platform-certificates"):].strip("/"), body)
        if path.startswith(PREFIX + "/") or path == PREFIX:
            return self.control.handle(method, path, body)
        if method == "POST" and path in WECHAT_PATHS:
            return self.wechat.handle(path, body)
        if method in ("GET", "POST") and path == "/gateway.do":  # SDKs send GET with the query (python-alipay-sdk) or POST forms
            try:
                pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True, errors="strict")
                pairs += urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
            except (UnicodeDecodeError, ValueError):
                pairs = [("charset", "invalid")]
            return self.alipay.handle_gateway(pairs)
        if method == "GET" and path == "/downloadBillFile.resource":
            return self.alipay.handle_bill_file(dict(urllib.parse.parse_qsl(parts.query)))
        return Reply(404, "application/json", b'{"error": {"code": "not_found", "message": "no such endpoint"}}')

    def _alipay_control(self, method: str, rest: str, query: str, body: bytes) -> Reply:
        """POST app-auth {"app_id"?}: a new merchant authorises a third-party app (its app_auth_token);
        POST app-auth-code {"app_id"?, "user_id"?, "expires_in"?, "re_expires_in"?}: the app_auth_code a merchant's
        authorisation hands the app (exchanged with alipay.open.auth.token.app);
        GET trades/{out_trade_no}: which merchant and app a trade belongs to;
        GET notifications[?out_trade_no=]: the async notifications sent, with their signed forms."""
        if method == "POST" and rest == "app-auth":
            try:
                wanted = json.loads(body or b"{}").get("app_id")
            except (ValueError, AttributeError):
                wanted = None
            return self.alipay.authorise(str(wanted) if wanted else None)
        if method == "POST" and rest == "app-auth-code":
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                request = None
            if not isinstance(request, dict):
                return Reply(400, "application/json", b'{"error": {"code": "bad_request", "message": "a JSON object"}}')
            return self.alipay.issue_auth_code(request)
        if method == "GET" and rest.startswith("trades/"):
            return self.alipay.trade_owner(rest[len("trades/"):])
        if method == "GET" and rest == "notifications":
            no = dict(urllib.parse.parse_qsl(query)).get("out_trade_no")
            return Reply(200, "application/json", json.dumps(self.notifier.listing(no), ensure_ascii=False).encode("utf-8"))
        return Reply(404, "application/json", b'{"error": {"code": "not_found", "message": "no such endpoint"}}')


    def _platform_certificates(self, method: str, rest: str, body: bytes) -> Reply:
        """GET: the platform certificates (serial, validity, which signs); POST rotate {"switch": false}: a new one
        is listed beside the old, which keeps signing (true: the new one signs at once); POST switch: the newest signs."""
        if method == "POST" and rest == "rotate":
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                request = None
            if not isinstance(request, dict) or set(request) - {"switch"} or not isinstance(request.get("switch", False), bool):
                return Reply(400, "application/json", b'{"error": {"code": "bad_request", "message": "the body is {\"switch\": true|false}"}}')
            self.platform_certs.rotate(switch=bool(request.get("switch", False)))
        elif method == "POST" and rest == "switch":
            self.platform_certs.switch()
        elif method != "GET" or rest:
            return Reply(404, "application/json", b'{"error": {"code": "not_found", "message": "no such endpoint"}}')
        return Reply(200, "application/json", json.dumps({"certificates": self.platform_certs.describe()}).encode("utf-8"))

    def _notifications(self, method: str, path: str) -> Reply:
        """GET .../wechat/notifications: what was sent; POST .../wechat/notifications/{id}/resend: send one again."""
        rest = path[len(PREFIX + "/wechat/notifications"):].strip("/")
        if method == "GET" and not rest:
            body = json.dumps({"notifications": [d.describe() for d in self.wechat_notifier.deliveries()]})
            return Reply(200, "application/json", body.encode("utf-8"))
        parts = rest.split("/")
        if method == "POST" and len(parts) == 2 and parts[0].isdigit() and parts[1] == "resend":
            delivery = self.wechat_notifier.resend(int(parts[0]))
            if delivery is not None:
                return Reply(200, "application/json", json.dumps(delivery.describe()).encode("utf-8"))
        return Reply(404, "application/json", b'{"error": {"code": "not_found", "message": "no such notification"}}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a held connection must never keep the process alive
    sandbox: Sandbox
    active = 0
    _count_lock = threading.Lock()

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]  # socketserver's own signature
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()

    def process_request_thread(self, request, client_address):
        with self._count_lock:
            self.active += 1
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count_lock:
                self.active -= 1
                self._open.discard(request)

    def end_connections(self) -> None:
        """Let every kept-alive connection go: a handler waiting for the next request on one reads
        end-of-file and returns (a reply being written is still sent)."""
        with self._count_lock:
            connections = list(self._open)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass  # already closed by the client


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "channel-sandbox"
    sys_version = ""
    # Connections are kept alive, as WeChat Pay's and Alipay's servers do: a client's pool reuses
    # them (no TCP handshake per call). Every reply carries its Content-Length; a request whose body
    # was not read (411, 413) and a swallowed one close their connection.
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, and a reply written in one piece (`_send`): on a kept-alive connection a body
    # written after its headers would wait for the client's delayed ACK (Nagle): ~40 ms a call.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        body = b""
        if method == "POST":
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True  # the body's end is unknown: the connection cannot carry another request
                return self._send(Reply(411, "text/plain", b"Content-Length required"))
            if int(length) > MAX_BODY:
                self.close_connection = True  # its body is not read
                return self._send(Reply(413, "text/plain", b"request too large"))
            body = self.rfile.read(int(length))
        elif self.headers.get("Content-Length", "0") != "0":
            self.close_connection = True  # a body nobody reads: the connection cannot carry another request
        sandbox = self.server.sandbox
        try:
            reply = sandbox.route(method, self.path, body, self.headers)
        except Exception:  # one bad request must not take the sandbox down; the trace says why
            log.exception("internal error on %s %s", method, _LONG_DIGITS.sub("<digits>", self.path))
            reply = Reply(500, "application/json", b'{"error": {"code": "internal_error", "message": "sandbox error"}}')
        if reply.swallow:
            return self._hold()
        if reply.delay_s:
            sandbox.stopping.wait(reply.delay_s)
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in dict(reply.headers).items():
                self.send_header(name, value)
            if self.close_connection:  # a body not read, or the client asked: say so, the client must not reuse it
                self.send_header("Connection", "close")
            buffered = getattr(self, "_headers_buffer", None)  # http.server's (absent for an HTTP/0.9 request)
            if buffered is None:
                self.end_headers()
                self.wfile.write(reply.body)
                return
            buffered.append(b"\r\n" + reply.body)  # end_headers' blank line and the body, flushed together
            self.flush_headers()
        except OSError:
            pass  # the client gave up (a timeout on its side): nothing to tell it

    def _hold(self) -> None:
        """Keep the connection open without answering until the client leaves or we stop."""
        self.close_connection = True
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not self.server.sandbox.stopping.is_set() and time.monotonic() < deadline:
            try:
                readable, _, _ = select.select([self.connection], [], [], 0.2)
                if readable and not self.connection.recv(4096, socket.MSG_PEEK):
                    return  # the client closed the connection
                if readable:
                    self.connection.recv(4096)
            except OSError:
                return

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        # Paths can hold payment codes (/sandbox/v1/accounts/<code>): mask long digit runs.
        log.debug("%s %s", self.address_string(), _LONG_DIGITS.sub("<digits>", format % args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="channel-sandbox",
        description="WeChat Pay (API v2) and Alipay (OpenAPI) sandbox on loopback: real request formats and signatures, "
                    "payment codes with chosen behaviours, SQLite ledger, daily bills. See docs/simulator.md.",
    )
    parser.add_argument("--config", metavar="FILE", help="JSON file with any of: host, port, data_dir, wechat_key, alipay_key, "
                        "alipay_app_public_key, credentials (command-line options win)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; non-loopback needs --allow-remote)")
    parser.add_argument("--port", type=int, help="TCP port (default 0: an ephemeral port, printed when ready)")
    parser.add_argument("--data-dir", help=f"ledger, keys, QR images and credentials (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--credentials", metavar="FILE", help="where to write the credentials JSON (default <data-dir>/sandbox.json)")
    parser.add_argument("--wechat-key", help="the WeChat Pay API key to accept (32 characters; default: generated once, kept in the data dir)")
    parser.add_argument("--alipay-key", metavar="PEM", help="the sandbox's own 'Alipay' RSA private key (default: generated once)")
    parser.add_argument("--alipay-app-public-key", metavar="PEM", help="the app public key to verify requests with (default: a generated "
                        "app key pair whose private half is in the credentials file)")
    parser.add_argument("--code-ttl-s", type=float, help=f"seconds a payment code stays valid after it is issued (default {CODE_TTL_S:g}; "
                        "real codes refresh every 60)")
    parser.add_argument("--unpaid-revoke-s", type=float, help=f"seconds after which a WeChat order the patient never confirmed is revoked "
                        f"(default {UNPAID_REVOKE_S:g})")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (the control API has no authentication)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config: dict[str, object] = {}
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError) as exc:
            print(f"channel-sandbox: cannot read --config {args.config}: {exc}", file=sys.stderr)
            return 2

    def option(name: str, default: object) -> object:
        value = getattr(args, name)
        return value if value is not None else config.get(name, default)

    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host = str(option("host", "127.0.0.1"))
    port = option("port", 0)
    data_dir = str(option("data_dir", DEFAULT_DATA_DIR))
    if not _is_loopback(host) and not args.allow_remote:
        print(f"channel-sandbox: refusing to listen on {host}: the sandbox is for loopback (127.0.0.1); "
              "add --allow-remote if you really mean to expose it", file=sys.stderr)
        return 2
    try:
        identity = load_identity(data_dir, wechat_key=_opt_str(option("wechat_key", None)), alipay_key_path=_opt_str(option("alipay_key", None)),
                                 app_public_key_path=_opt_str(option("alipay_app_public_key", None)))
        sandbox = Sandbox(data_dir, identity, host=host, port=int(port), code_ttl_s=float(option("code_ttl_s", CODE_TTL_S)),  # type: ignore[arg-type]  # option() reads a JSON config value; float() refuses a bad one at start
                          unpaid_revoke_s=float(option("unpaid_revoke_s", UNPAID_REVOKE_S)))  # type: ignore[arg-type]  # option() reads a JSON config value; float() refuses a bad one at start
    except (IdentityError, StoreError) as exc:
        print(f"channel-sandbox: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"channel-sandbox: cannot listen on {host}:{port}: {exc.strerror or exc}; is another sandbox running there?", file=sys.stderr)
        return 2
    credentials = str(option("credentials", os.path.join(sandbox.data_dir, "sandbox.json")))
    sandbox.write_credentials(credentials)
    stop = StopSignals(signals=("SIGINT", "SIGTERM")).install()
    sandbox.start()
    print(json.dumps({"event": "ready", "url": sandbox.url, "credentials": os.path.abspath(credentials), "pid": os.getpid()}), flush=True)
    log.info("channel sandbox ready at %s (credentials in %s)", sandbox.url, credentials)
    stop.wait()
    log.info("stopping")
    sandbox.stop()
    stop.close()
    return 0


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
