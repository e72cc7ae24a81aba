"""gateway.channels.http.ConnectionPool: the channels' transport at the gateway (http.client, kept
alive), against real local HTTP(S) servers: connections are reused, one the server closed is never
used for a request, TLS is verified against the CA given (a CA made by the test), a reply that
trickles is cut at the total bound, and with a proxy configured the requests path is kept."""

from __future__ import annotations

import datetime
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.channels.http import ConnectionPool, HttpFailure, HttpReply, SessionPool, Timeouts, exchange
from tests.sockets import CountedWrites

T = Timeouts(2.0, 2.0)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append((self.client_address[1], self.path, body))
        if self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
            return
        reply = b"<xml>" + body + b"</xml>"
        self.send_response(200 if self.path != "/500" else 500)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(reply)))
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[int, str, bytes]] = []
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.stop()


def test_a_kept_alive_connection_carries_the_next_calls(server) -> None:
    pool = ConnectionPool()
    for n in range(3):
        reply = pool.exchange("POST", server.url() + "/pay", timeouts=T, body=f"n{n}".encode(), headers={"Content-Type": "text/xml"},
                              max_bytes=1024, cert=None, verify=True)
        assert isinstance(reply, HttpReply) and (reply.status, reply.body, reply.content_type) == (200, f"<xml>n{n}</xml>".encode(), "text/xml")
        assert reply.headers["content-type"] == "text/xml"  # case-insensitive, as WeChat Pay APIv3's signature headers are read
    assert len({port for port, _, _ in server.seen}) == 1  # one TCP connection for three calls
    pool.close()


def test_a_connection_the_server_closed_is_never_used(server) -> None:
    pool = ConnectionPool()
    assert isinstance(pool.exchange("POST", server.url() + "/close", timeouts=T, body=b"a", headers=None, max_bytes=1024,
                                    cert=None, verify=True), HttpReply)
    assert isinstance(pool.exchange("POST", server.url() + "/pay", timeouts=T, body=b"b", headers=None, max_bytes=1024,
                                    cert=None, verify=True), HttpReply)
    # The server drops the idle kept-alive connection (as servers do after a while): the next call
    # sees that before sending, and opens a new one rather than failing a payment.
    for _, conn in pool._idle[next(iter(pool._idle))]:  # noqa: SLF001
        conn.sock.shutdown(2)  # as if the peer had closed it: EOF is pending on the socket
    reply = pool.exchange("POST", server.url() + "/pay", timeouts=T, body=b"c", headers=None, max_bytes=1024, cert=None, verify=True)
    assert isinstance(reply, HttpReply) and reply.body == b"<xml>c</xml>"
    assert [body for _, _, body in server.seen] == [b"a", b"b", b"c"]


def test_a_channel_request_goes_out_in_one_write_head_and_body_together(server) -> None:
    """Two writes are two TCP segments (TCP_NODELAY) and the channel's server woken twice a call."""
    from gateway.channels.http import _LeanHTTPConnection

    conn = _LeanHTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.connect()
    conn.sock = CountedWrites(conn.sock)
    conn.request("POST", "/pay", body=b"<xml>1250</xml>", headers={"Content-Length": "15"})
    assert conn.getresponse().read() == b"<xml><xml>1250</xml></xml>"
    (write,) = conn.sock.writes
    assert write.startswith(b"POST /pay HTTP/1.1\r\n") and write.endswith(b"\r\n\r\n<xml>1250</xml>")
    conn.close()


def test_failures_are_values_not_exceptions(server) -> None:
    pool = ConnectionPool()
    call = lambda path, **kw: pool.exchange("POST", server.url() + path, timeouts=kw.pop("t", T), body=b"x" * kw.pop("n", 1),  # noqa: E731
                                           headers=None, max_bytes=kw.pop("max_bytes", 1024), cert=None, verify=True)
    assert call("/500") is HttpFailure.STATUS
    assert call("/pay", n=2000, max_bytes=1000) is HttpFailure.TOO_LARGE
    assert call("/trickle", t=Timeouts(1.0, 1.0)) is HttpFailure.TIMEOUT  # 10 s of trickle, bound at 1 + 3 x 1 s
    nobody = _Server()
    url = nobody.url()
    nobody.stop()
    assert pool.exchange("POST", url + "/pay", timeouts=T, body=b"x", headers=None, max_bytes=10, cert=None, verify=True) is HttpFailure.CONNECTION


def _ca_and_server_cert(tmp: Path) -> tuple[Path, ssl.SSLContext]:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test channel CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "server.pem", tmp / "server.key")
    return tmp / "ca.pem", context


def test_tls_is_verified_against_the_ca_given_and_refused_otherwise(tmp_path) -> None:
    ca, context = _ca_and_server_cert(tmp_path)
    server = _Server(context)
    try:
        pool = ConnectionPool()
        ok = pool.exchange("POST", server.url("https") + "/pay", timeouts=T, body=b"t", headers=None, max_bytes=1024, cert=None, verify=str(ca))
        assert isinstance(ok, HttpReply) and ok.body == b"<xml>t</xml>"
        # Against the default bundle (certifi, as requests): the test CA is not trusted.
        assert pool.exchange("POST", server.url("https") + "/pay", timeouts=T, body=b"t", headers=None, max_bytes=1024,
                             cert=None, verify=True) is HttpFailure.CONNECTION
    finally:
        server.stop()


def test_with_a_proxy_configured_the_requests_path_is_kept(monkeypatch, server) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    pooled = SessionPool()
    assert isinstance(pooled.get(), requests.Session)
    monkeypatch.delenv("HTTPS_PROXY")
    direct = SessionPool().get()
    assert isinstance(direct, ConnectionPool)
    reply = exchange(direct, "POST", server.url() + "/pay", timeouts=T, body=b"p")
    assert isinstance(reply, HttpReply) and reply.body == b"<xml>p</xml>"
