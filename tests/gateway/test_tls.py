"""TLS with certificate pinning: the POS trusts only the CA (or certificate) set at provisioning.

The test makes its own CA and a server certificate for 127.0.0.1 with `cryptography`; the gateway
serves real TLS on loopback."""

from __future__ import annotations

import os

import pytest

from gateway.api import GatewayHttpServer
from gateway.channel_clients import ChannelFactory
from gateway.service import GatewayService
from terminal.gateway_client import GatewayConfigError, GatewayConnection
from tests.gateway.fleet import make_fleet
from tests.tlscerts import key_pem, make_ca, make_leaf, pem


@pytest.fixture
def tls_gateway(tmp_path):
    from gateway.db import SqliteDatabase

    db = SqliteDatabase(tmp_path / "gw.db")
    db.migrate()
    fleet = make_fleet(db, devices=1)
    ca_key, ca = make_ca("provider private CA")
    key, leaf = make_leaf(ca_key, ca, "127.0.0.1")
    (tmp_path / "ca.pem").write_bytes(pem(ca))
    (tmp_path / "server.pem").write_bytes(pem(leaf))
    (tmp_path / "server.key").write_bytes(key_pem(key))
    _, rogue_ca = make_ca("provider private CA")  # same name, different key: what an attacker would make
    (tmp_path / "rogue.pem").write_bytes(pem(rogue_ca))
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
        status, reply = pinned.post("/v1/query", {"out_trade_no": "NONE"}, timeout=(5.0, 5.0))  # shorter than the POS's 20 s
        assert (status, reply["error"]["code"]) == (422, "unknown_payment")
    finally:
        for s in silent:
            s.close()


def _pos_connection(tmp, name: str, url: str, pem_files: list, seed: bytes):
    """The POS's gateway connection as a field engineer's configuration makes it: the pinned PEM
    read by `pos-flash provision config --gateway-cert ...` (posflash.provision.read_gateway),
    checked as the POS checks its configuration, written beside the journal by terminal.factory."""
    import dataclasses

    from posflash.provision import read_gateway
    from protocol.messages import PayChannel
    from terminal.config import parse_gateway
    from terminal.factory import gateway_clients
    from tests.terminal.helpers import make_config

    section = read_gateway(url, pem_files)
    config = make_config()
    config = dataclasses.replace(config, device=dataclasses.replace(config.device, device_id="H001-POS1"),
                                 gateway=parse_gateway(section["url"], section["pinned_cert"]))
    state = tmp / name
    state.mkdir()
    clients = gateway_clients(config, device_key_seed=seed, firmware="1.0", state_dir=state)
    return clients[PayChannel.WECHAT].connection  # type: ignore[attr-defined]  # ChannelClient is a protocol; this one is a GatewayChannelClient


def test_the_pinned_certificate_rotates_with_an_overlap(tls_gateway) -> None:
    """Rotating the gateway's certificate without a day of failed payments: a configuration image
    pins the old and the new CA side by side; the gateway then serves the new one; a later image
    drops the old one, after which a gateway on the old CA is refused (docs/field-engineer.md)."""
    old_server, fleet, tmp = tls_gateway
    seed = fleet.seeds["H001-POS1"]
    new_key, new_ca = make_ca("provider private CA 2027")
    leaf_key, leaf = make_leaf(new_key, new_ca, "127.0.0.1")
    (tmp / "ca2027.pem").write_bytes(pem(new_ca))
    (tmp / "server2027.pem").write_bytes(pem(leaf))
    (tmp / "server2027.key").write_bytes(key_pem(leaf_key))
    service = GatewayService(fleet.directory, fleet.ledger, ChannelFactory(fleet.directory))
    new_server = GatewayHttpServer(service, "127.0.0.1", 0, tls_cert=str(tmp / "server2027.pem"),
                                   tls_key=str(tmp / "server2027.key")).start()
    try:
        def answer(url: str, name: str, pins: list) -> str:
            status, reply = _pos_connection(tmp, name, url, pins, seed).post("/v1/query", {"out_trade_no": "NONE"})
            return reply["error"]["code"]

        # Before: only the old CA is pinned; the new gateway certificate is refused.
        assert answer(old_server.url, "before-old", [tmp / "ca.pem"]) == "unknown_payment"
        assert answer(new_server.url, "before-new", [tmp / "ca.pem"]) == "tls"
        # The overlap image: both gateways are trusted.
        both = [tmp / "ca.pem", tmp / "ca2027.pem"]
        assert answer(old_server.url, "overlap-old", both) == "unknown_payment"
        assert answer(new_server.url, "overlap-new", both) == "unknown_payment"
        # After: only the new CA; a gateway still on the old one is refused.
        assert answer(new_server.url, "after-new", [tmp / "ca2027.pem"]) == "unknown_payment"
        assert answer(old_server.url, "after-old", [tmp / "ca2027.pem"]) == "tls"
    finally:
        new_server.stop()


@pytest.mark.parametrize("content, fragment", [
    ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "not a well-formed X.509 certificate"),
    ("no PEM at all", "must be the PEM text"),
])
def test_a_pin_that_is_not_a_certificate_is_refused_when_the_image_is_built(tmp_path, content, fragment) -> None:
    from posflash.provision import read_gateway
    from protocol.flash import FlashError

    (tmp_path / "gw.pem").write_text(content)
    with pytest.raises(FlashError) as refused:
        read_gateway("https://gw.example.cn", [tmp_path / "gw.pem"])
    assert "--gateway-cert" in str(refused.value) and fragment in str(refused.value)


def test_a_key_in_the_pin_file_is_refused_and_so_are_too_many_certificates(tmp_path) -> None:
    from terminal.config import MAX_PINNED_CERTS, check_pinned_certificates

    key, ca = make_ca("provider private CA")
    with pytest.raises(ValueError, match="certificates only"):
        check_pinned_certificates(pem(ca).decode() + key_pem(key).decode())
    assert check_pinned_certificates(pem(ca).decode() * MAX_PINNED_CERTS) == MAX_PINNED_CERTS
    with pytest.raises(ValueError, match=f"at most {MAX_PINNED_CERTS}"):
        check_pinned_certificates(pem(ca).decode() * (MAX_PINNED_CERTS + 1))
