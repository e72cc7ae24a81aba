"""The sandbox's Alipay apps and merchants: which app may call, in which mode, for whom.

- Apps: the merchant's own app (public-key mode), a third-party app of a service provider (第三方应用,
  public-key mode), and an app in certificate mode (公钥证书模式) with certificates the sandbox issues
  from its own "Alipay root" (keys/alipay_root_cert.crt: an RSA root and an EC root, as Alipay's chain
  holds an SM2 one, blank lines between them as in Alipay's file; keys/alipay_cert_public_key_rsa2.crt: the Alipay public certificate that signs replies;
  keys/app_cert_public_key.crt: the app's certificate).
- Authorisations: a merchant authorises a third-party app and gets an `app_auth_token`; a call that
  carries it acts for that merchant (the money lands on its account). The control API creates them
  (`POST /sandbox/v1/alipay/app-auth`).
- Trade owners: which merchant (seller_id), app and authorising app each trade belongs to, and where its
  async notifications go. Another merchant's trade does not exist for a caller (ACQ.TRADE_NOT_EXIST).

Kept in its own SQLite file beside the ledger (alipay.sqlite3), so orders keep their owners across restarts.
"""

from __future__ import annotations

import datetime
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from Crypto.PublicKey import RSA

from gateway.channels.alipay_cert import app_cert_sn, cert_sn, load_certificates, root_cert_sn

_SCHEMA = """
CREATE TABLE IF NOT EXISTS app_auth(token TEXT PRIMARY KEY, app_id TEXT NOT NULL, seller_id TEXT NOT NULL,
    auth_app_id TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS trades(out_trade_no TEXT PRIMARY KEY, seller_id TEXT NOT NULL, app_id TEXT NOT NULL,
    auth_app_id TEXT NOT NULL, notify_url TEXT, notified TEXT NOT NULL DEFAULT '');
"""


@dataclass(frozen=True, slots=True)
class AlipayApp:
    app_id: str
    seller_id: str  # the app owner's own 2088... merchant id: where money lands when no token is given
    public_key: RSA.RsaKey  # verifies the app's requests
    cert_sn: str | None = None  # certificate mode: the app certificate's SN, which requests must carry


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a verified request acts for."""

    app: AlipayApp
    seller_id: str
    auth_app_id: str  # the merchant's own app (its app_id when acting for itself)


@dataclass(frozen=True, slots=True)
class TradeOwner:
    seller_id: str
    app_id: str
    auth_app_id: str
    notify_url: str | None
    notified: str  # the last trade state announced, e.g. "TRADE_SUCCESS", "TRADE_SUCCESS|R1"


class Tenants:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def authorise(self, app_id: str, now: float) -> dict[str, str]:
        """A new merchant authorises `app_id`: its seller id, its own app id and the token."""
        token = "202412BB" + secrets.token_hex(16)
        seller = "2088" + "".join(secrets.choice("0123456789") for _ in range(12))
        auth_app = "2021" + "".join(secrets.choice("0123456789") for _ in range(12))
        with self._lock:
            self._db.execute("INSERT INTO app_auth VALUES (?, ?, ?, ?, ?)", (token, app_id, seller, auth_app, now))
        return {"app_auth_token": token, "user_id": seller, "auth_app_id": auth_app, "app_id": app_id}

    def token(self, token: str) -> tuple[str, str, str] | None:
        """(authorised app_id, seller_id, auth_app_id) of a token, or None."""
        with self._lock:
            row = self._db.execute("SELECT app_id, seller_id, auth_app_id FROM app_auth WHERE token = ?", (token,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def claim(self, out_trade_no: str, caller: Caller, notify_url: str | None) -> bool:
        """Record the trade as the caller's; False if it belongs to another merchant."""
        with self._lock:
            row = self._db.execute("SELECT seller_id FROM trades WHERE out_trade_no = ?", (out_trade_no,)).fetchone()
            if row is not None:
                if row[0] != caller.seller_id:
                    return False
                if notify_url:
                    self._db.execute("UPDATE trades SET notify_url = ? WHERE out_trade_no = ?", (notify_url, out_trade_no))
                return True
            self._db.execute("INSERT INTO trades (out_trade_no, seller_id, app_id, auth_app_id, notify_url) VALUES (?, ?, ?, ?, ?)",
                             (out_trade_no, caller.seller_id, caller.app.app_id, caller.auth_app_id, notify_url))
            return True

    def owner(self, out_trade_no: str) -> TradeOwner | None:
        with self._lock:
            row = self._db.execute("SELECT seller_id, app_id, auth_app_id, notify_url, notified FROM trades WHERE out_trade_no = ?",
                                   (out_trade_no,)).fetchone()
        return None if row is None else TradeOwner(*row)

    def sellers(self, out_trade_nos: list[str]) -> dict[str, str]:
        """{out_trade_no: seller_id} of those trades that have an owner recorded."""
        found: dict[str, str] = {}
        with self._lock:
            for i in range(0, len(out_trade_nos), 500):
                chunk = out_trade_nos[i:i + 500]
                rows = self._db.execute(f"SELECT out_trade_no, seller_id FROM trades WHERE out_trade_no IN ({','.join('?' * len(chunk))})", chunk)
                found.update(dict(rows.fetchall()))
        return found

    def mark_notified(self, out_trade_no: str, state: str) -> bool:
        """True the first time `state` is announced for the trade (so each change is sent once)."""
        with self._lock:
            cur = self._db.execute("UPDATE trades SET notified = ? WHERE out_trade_no = ? AND notified != ?", (state, out_trade_no, state))
            return cur.rowcount == 1


# -- certificates ------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ant Financial (sandbox)"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Certification Authority"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: x509.Name, public_key, issuer: x509.Name, issuer_key, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _public(key: RSA.RsaKey):
    return serialization.load_der_public_key(key.public_key().export_key("DER"))


def _private(key: RSA.RsaKey):
    return serialization.load_der_private_key(key.export_key("DER"), password=None)


@dataclass(frozen=True, slots=True)
class CertPaths:
    root: str
    alipay_cert: str
    app_cert: str
    app_cert_sn: str
    root_sn: str
    alipay_cert_sn: str


def ensure_certificates(keys_dir: str, alipay_private: RSA.RsaKey, app_public: RSA.RsaKey) -> CertPaths:
    """The sandbox's Alipay root chain, Alipay public certificate and the cert-mode app's certificate,
    made once and kept in keys_dir. The Alipay public certificate holds the sandbox's "Alipay" key."""
    root_path = os.path.join(keys_dir, "alipay_root_cert.crt")
    alipay_path = os.path.join(keys_dir, "alipay_cert_public_key_rsa2.crt")
    app_path = os.path.join(keys_dir, "app_cert_public_key.crt")
    if not all(os.path.exists(p) for p in (root_path, alipay_path, app_path)):
        root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        root_name = _name("Ant Financial Certification Authority R1 (sandbox)")
        root = _cert(root_name, root_key.public_key(), root_name, root_key, ca=True)
        ec_key = ec.generate_private_key(ec.SECP256R1())
        ec_name = _name("Ant Financial Certification Authority E1 (sandbox)")
        ec_root = _cert(ec_name, ec_key.public_key(), ec_name, ec_key, ca=True)
        alipay = _cert(_name("Alipay public key (sandbox)"), _public(alipay_private), root_name, root_key, ca=False)
        app = _cert(_name("app certificate (sandbox)"), _public(app_public), root_name, root_key, ca=False)
        for path, data in ((root_path, _pem(root) + b"\n" + _pem(ec_root)), (alipay_path, _pem(alipay)), (app_path, _pem(app))):
            with open(path, "wb") as handle:
                handle.write(data)
    with open(root_path, "rb") as r, open(alipay_path, "rb") as a, open(app_path, "rb") as p:
        root_pem, alipay_pem, app_pem = r.read(), a.read(), p.read()
    return CertPaths(os.path.abspath(root_path), os.path.abspath(alipay_path), os.path.abspath(app_path), app_cert_sn(app_pem),
                     root_cert_sn(root_pem), cert_sn(load_certificates(alipay_pem)[0]))
