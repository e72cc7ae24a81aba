"""TLS with certificate pinning: the POS trusts only the CA (or certificate) set at provisioning.

The test makes its own CA and a server certificate for 127.0.0.1 with `cryptography`; the gateway
serves real TLS on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.api import GatewayHttpServer
from gateway.channel_clients import ChannelFactory
from gateway.service import GatewayService
from terminal.gateway_client import GatewayConfigError, GatewayConnection
from tests.gateway.fleet import make_fleet


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca_key, ca_cert, host: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("gateway")).issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def tls_gateway(tmp_path):
    from gateway.db import SqliteDatabase

    db = SqliteDatabase(tmp_path / "gw.db")
    db.migrate()
    fleet = make_fleet(db, devices=1)
    ca_key, ca = make_ca("provider private CA")
    key, leaf = make_leaf(ca_key, ca, "127.0.0.1")
    (tmp_path / "ca.pem").write_bytes(_pem(ca))
    (tmp_path / "server.pem").write_bytes(_pem(leaf))
    (tmp_path / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    _, rogue_ca = make_ca("provider private CA")  # same name, different key: what an attacker would make
    (tmp_path / "rogue.pem").write_bytes(_pem(rogue_ca))
    service = GatewayService(fleet.directory, fleet.ledger, ChannelFactory(fleet.directory))
    server = GatewayHttpServer(service, "127.0.0.1", 0, tls_cert=str(tmp_path / "server.pem"), tls_key=str(tmp_path / "server.key")).start()
    yield server, fleet, tmp_path
    server.stop()
    db.close()


def test_the_pos_talks_to_the_pinned_gateway_only(tls_gateway) -> None:
    server, fleet, tmp = tls_gateway
    assert server.url.startswith("https://")
    pinned = GatewayConnection(server.url, device_id="H001-POS1", seed=fleet.seeds["H001-POS1"], pinned_cert=str(tmp / "ca.pem"))
    status, reply = pinned.post("/v1/query", {"out_trade_no": "NONE"})
    assert (status, reply["error"]["code"]) == (422, "unknown_payment")  # authenticated over TLS, then refused
    rogue = GatewayConnection(server.url, device_id="H001-POS1", seed=fleet.seeds["H001-POS1"], pinned_cert=str(tmp / "rogue.pem"))
    status, reply = rogue.post("/v1/query", {"out_trade_no": "NONE"})
    assert (status, reply["error"]["code"]) == (0, "tls")


def test_https_needs_a_pin_and_plain_http_needs_loopback() -> None:
    with pytest.raises(GatewayConfigError):
        GatewayConnection("https://gw.example.cn", device_id="D", seed=os.urandom(32))
    with pytest.raises(GatewayConfigError):
        GatewayConnection("http://gw.example.cn", device_id="D", seed=os.urandom(32))
    GatewayConnection("http://127.0.0.1:9", device_id="D", seed=os.urandom(32))


def test_a_client_that_never_finishes_its_handshake_does_not_stall_the_others(tls_gateway) -> None:
    """The TLS handshake runs in the connection's own thread, not in the accept loop: sockets that
    connect and then say nothing (a scanner, a POS on a dead mobile link) never hold up a device."""
    import socket

    server, fleet, tmp = tls_gateway
    host, port = server.server_address[:2]
    silent = [socket.create_connection((host, port), timeout=10) for _ in range(3)]
    try:
        pinned = GatewayConnection(server.url, device_id="H001-POS1", seed=fleet.seeds["H001-POS1"], pinned_cert=str(tmp / "ca.pem"))
        # The POS's read timeout is 20 s; with the handshake in the accept thread this would wait
        # for the silent sockets' handshake timeouts and fail with a network error.
        pinned._session.request = _with_timeout(pinned._session.request, 5.0)  # type: ignore[method-assign]
        status, reply = pinned.post("/v1/query", {"out_trade_no": "NONE"})
        assert (status, reply["error"]["code"]) == (422, "unknown_payment")
    finally:
        for s in silent:
            s.close()


def _with_timeout(request, seconds: float):
    def call(*args, **kwargs):
        kwargs["timeout"] = (seconds, seconds)
        return request(*args, **kwargs)
    return call
