"""The sandbox's Alipay apps and merchants: which app may call, in which mode, for whom.

- Apps: the merchant's own app (public-key mode), a third-party app of a service provider (第三方应用,
  public-key mode), and an app in certificate mode (公钥证书模式) with certificates the sandbox issues
  from its own "Alipay root" (keys/alipay_root_cert.crt: an RSA root and an EC root, as Alipay's chain
  holds an SM2 one, blank lines between them as in Alipay's file; keys/alipay_cert_public_key_rsa2.crt: the Alipay public certificate that signs replies;
  keys/app_cert_public_key.crt: the app's certificate).
- Authorisations: a merchant authorises a third-party app; a call that carries its `app_auth_token`
  acts for that merchant (the money lands on its account). Two ways in through the control API: an
  `app_auth_code` (`POST /sandbox/v1/alipay/app-auth-code`: what the merchant's authorisation page
  hands the provider), which the app exchanges with alipay.open.auth.token.app, or a token at once
  (`POST /sandbox/v1/alipay/app-auth`, for tests that do not care how it came).
- Token lifetimes, as Alipay documents them (alipay_auth_api.py answers the three methods): a code is
  single use and expires CODE_TTL_S after it was issued; a token lives `expires_in` (TOKEN_TTL_S),
  its refresh token `re_expires_in` (REFRESH_TTL_S). A refresh (grant_type=refresh_token) issues a
  new pair; the old refresh token is dead at once, the old token keeps working REFRESH_GRACE_S (so
  requests in flight with it, or a gateway process that has not yet re-read its credentials, are
  not refused) and is then refused like an unknown one. Times are the store's real clock
  (`advance_s` moves it), so tests expire tokens without waiting.
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

_SHANGHAI = datetime.timezone(datetime.timedelta(hours=8), "Asia/Shanghai")

# Alipay: "app_auth_code 只能使用一次，一天（从当前时间算起的24小时）未被使用自动过期".
CODE_TTL_S = 86_400
# The lifetimes Alipay's alipay.open.auth.token.app answers carry (its SDKs' examples: 365 and 372 days).
TOKEN_TTL_S = 31_536_000
REFRESH_TTL_S = 32_140_800
# How long a token replaced by a refresh keeps working (the sandbox's choice: one day).
REFRESH_GRACE_S = 86_400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS app_auth(token TEXT PRIMARY KEY, app_id TEXT NOT NULL, seller_id TEXT NOT NULL,
    auth_app_id TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS auth_codes(code TEXT PRIMARY KEY, app_id TEXT NOT NULL, seller_id TEXT NOT NULL, auth_app_id TEXT NOT NULL,
    issued_at REAL NOT NULL, expires_at REAL NOT NULL, used_at REAL, expires_in INTEGER NOT NULL, re_expires_in INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS app_tokens(token TEXT PRIMARY KEY, refresh_token TEXT NOT NULL UNIQUE, app_id TEXT NOT NULL,
    seller_id TEXT NOT NULL, auth_app_id TEXT NOT NULL, issued_at REAL NOT NULL, expires_at REAL NOT NULL, re_expires_at REAL NOT NULL,
    expires_in INTEGER NOT NULL, re_expires_in INTEGER NOT NULL, refreshed_at REAL, ends_at REAL);
CREATE TABLE IF NOT EXISTS trades(out_trade_no TEXT NOT NULL, seller_id TEXT NOT NULL, app_id TEXT NOT NULL,
    auth_app_id TEXT NOT NULL, notify_url TEXT, notified TEXT NOT NULL DEFAULT '', PRIMARY KEY (seller_id, out_trade_no));
"""
# A data dir from before per-merchant order numbers keyed trades by out_trade_no alone: same rows, new key.
_REKEY_TRADES = """
BEGIN IMMEDIATE;
ALTER TABLE trades RENAME TO trades_v1;
CREATE TABLE trades(out_trade_no TEXT NOT NULL, seller_id TEXT NOT NULL, app_id TEXT NOT NULL,
    auth_app_id TEXT NOT NULL, notify_url TEXT, notified TEXT NOT NULL DEFAULT '', PRIMARY KEY (seller_id, out_trade_no));
INSERT INTO trades SELECT out_trade_no, seller_id, app_id, auth_app_id, notify_url, notified FROM trades_v1;
DROP TABLE trades_v1;
COMMIT;
"""


class AuthRefusal(Exception):
    """alipay.open.auth.token.app refuses: Alipay's sub_code and sub_msg (the reply's code is 40002)."""

    def __init__(self, sub_code: str, sub_msg: str) -> None:
        super().__init__(sub_code)
        self.sub_code = sub_code
        self.sub_msg = sub_msg


def _new_merchant() -> tuple[str, str]:
    """A new merchant's 2088... seller id and its own 2021... app id."""
    return ("2088" + "".join(secrets.choice("0123456789") for _ in range(12)),
            "2021" + "".join(secrets.choice("0123456789") for _ in range(12)))


def _stamp(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, _SHANGHAI).strftime("%Y%m")


def _alipay_time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, _SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


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
        keyed = [row[1] for row in self._db.execute("PRAGMA table_info(trades)") if row[5]]  # the primary key's columns
        if keyed == ["out_trade_no"]:
            self._db.executescript(_REKEY_TRADES)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def authorise(self, app_id: str, now: float) -> dict[str, object]:
        """A new merchant authorises `app_id` and the app holds its token at once: seller id, own app id, tokens."""
        seller, auth_app = _new_merchant()
        return self._issue(app_id, seller, auth_app, now, TOKEN_TTL_S, REFRESH_TTL_S) | {"user_id": seller, "app_id": app_id}

    def issue_code(self, app_id: str, now: float, *, seller_id: str | None = None, expires_in: int = TOKEN_TTL_S,
                   re_expires_in: int = REFRESH_TTL_S) -> dict[str, object]:
        """A merchant (a new one, or `seller_id` authorising again) authorises `app_id`: the app_auth_code
        its authorisation page hands the app. `expires_in`/`re_expires_in`: the lifetimes of the tokens it
        will be exchanged for (tests shorten them)."""
        with self._lock:
            known = self._db.execute("SELECT auth_app_id FROM app_tokens WHERE seller_id = ? UNION ALL "
                                     "SELECT auth_app_id FROM app_auth WHERE seller_id = ? LIMIT 1", (seller_id, seller_id)).fetchone()
        if seller_id is not None and known is None:
            raise KeyError(f"no merchant {seller_id} has authorised an app here")
        seller, auth_app = (seller_id, str(known[0])) if seller_id is not None and known is not None else _new_merchant()
        code = secrets.token_hex(16)
        with self._lock:
            self._db.execute("INSERT INTO auth_codes (code, app_id, seller_id, auth_app_id, issued_at, expires_at, expires_in, re_expires_in) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (code, app_id, seller, auth_app, now, now + CODE_TTL_S, expires_in, re_expires_in))
        return {"app_auth_code": code, "app_id": app_id, "user_id": seller, "auth_app_id": auth_app, "expires_in": CODE_TTL_S}

    def exchange_code(self, app_id: str, code: str, now: float) -> dict[str, object]:
        """grant_type=authorization_code: the token pair for a code, once. Raises AuthRefusal."""
        with self._lock:
            row = self._db.execute("SELECT app_id, seller_id, auth_app_id, expires_at, used_at, expires_in, re_expires_in FROM auth_codes "
                                   "WHERE code = ?", (code,)).fetchone()
            if row is None:
                raise AuthRefusal("isv.code-invalid", "授权码code无效")
            owner, seller, auth_app, expires_at, used_at, expires_in, re_expires_in = row
            if owner != app_id:
                raise AuthRefusal("isv.invalid-app-id", "调用接口的应用标识(app_id)与授权码授权的应用不相符")
            if used_at is not None:
                raise AuthRefusal("isv.code-invalid", "授权码code已使用")
            if now >= expires_at:
                raise AuthRefusal("isv.code-invalid", "授权码code已过期")
            self._db.execute("UPDATE auth_codes SET used_at = ? WHERE code = ?", (now, code))
        return self._issue(app_id, seller, auth_app, now, int(expires_in), int(re_expires_in)) | {"user_id": seller}

    def refresh(self, app_id: str, refresh_token: str, now: float) -> dict[str, object]:
        """grant_type=refresh_token: a new pair; the old refresh token dies, the old token after the grace."""
        with self._lock:
            row = self._db.execute("SELECT token, app_id, seller_id, auth_app_id, re_expires_at, refreshed_at, expires_in, re_expires_in "
                                   "FROM app_tokens WHERE refresh_token = ?", (refresh_token,)).fetchone()
            if row is None or row[5] is not None:
                raise AuthRefusal("isv.refresh-token-invalid", "刷新令牌refresh_token无效")
            token, owner, seller, auth_app, re_expires_at, _, expires_in, re_expires_in = row
            if owner != app_id:
                raise AuthRefusal("isv.invalid-app-id", "调用接口的应用标识(app_id)与令牌授权的应用不相符")
            if now >= re_expires_at:
                raise AuthRefusal("isv.refresh-token-time-out", "刷新令牌refresh_token过期")
            self._db.execute("UPDATE app_tokens SET refreshed_at = ?, ends_at = MIN(expires_at, ?) WHERE token = ?",
                             (now, now + REFRESH_GRACE_S, token))
        return self._issue(app_id, seller, auth_app, now, int(expires_in), int(re_expires_in)) | {"user_id": seller}

    def token_info(self, token: str, now: float) -> dict[str, object] | None:
        """alipay.open.auth.token.app.query's view of a token (None: never issued)."""
        with self._lock:
            row = self._db.execute("SELECT app_id, seller_id, auth_app_id, issued_at, expires_at, ends_at FROM app_tokens WHERE token = ?",
                                   (token,)).fetchone()
        if row is None:
            old = self.token(token, now)
            return None if old is None else {"app_id": old[0], "user_id": old[1], "auth_app_id": old[2], "status": "valid", "expires_in": 0}
        app_id, seller, auth_app, issued_at, expires_at, ends_at = row
        end = min(expires_at, ends_at) if ends_at is not None else expires_at
        return {"app_id": app_id, "user_id": seller, "auth_app_id": auth_app, "status": "valid" if now < end else "invalid",
                "expires_in": max(0, int(end - now)), "auth_start": _alipay_time(issued_at), "auth_end": _alipay_time(end)}

    def _issue(self, app_id: str, seller: str, auth_app: str, now: float, expires_in: int, re_expires_in: int) -> dict[str, object]:
        token, refresh = f"{_stamp(now)}BB{secrets.token_hex(16)}", f"{_stamp(now)}BB{secrets.token_hex(16)}"
        with self._lock:
            self._db.execute("INSERT INTO app_tokens (token, refresh_token, app_id, seller_id, auth_app_id, issued_at, expires_at, re_expires_at, "
                             "expires_in, re_expires_in) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (token, refresh, app_id, seller, auth_app, now, now + expires_in, now + re_expires_in, expires_in, re_expires_in))
        return {"app_auth_token": token, "app_refresh_token": refresh, "auth_app_id": auth_app, "expires_in": expires_in,
                "re_expires_in": re_expires_in}

    def token(self, token: str, now: float | None = None) -> tuple[str, str, str] | None:
        """(authorised app_id, seller_id, auth_app_id) of a token that works at `now`, or None."""
        with self._lock:
            row = self._db.execute("SELECT app_id, seller_id, auth_app_id, expires_at, ends_at FROM app_tokens WHERE token = ?",
                                   (token,)).fetchone()
            if row is None:  # a token from before codes existed here: no lifetime
                old = self._db.execute("SELECT app_id, seller_id, auth_app_id FROM app_auth WHERE token = ?", (token,)).fetchone()
                return None if old is None else (old[0], old[1], old[2])
        if now is not None and (now >= row[3] or (row[4] is not None and now >= row[4])):
            return None
        return (row[0], row[1], row[2])

    def claim(self, out_trade_no: str, caller: Caller, notify_url: str | None) -> bool:
        """Record the caller's merchant's trade (numbers are each merchant's own); True."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM trades WHERE seller_id = ? AND out_trade_no = ?", (caller.seller_id, out_trade_no)).fetchone()
            if row is not None:
                if notify_url:
                    self._db.execute("UPDATE trades SET notify_url = ? WHERE seller_id = ? AND out_trade_no = ?",
                                     (notify_url, caller.seller_id, out_trade_no))
                return True
            self._db.execute("INSERT INTO trades (out_trade_no, seller_id, app_id, auth_app_id, notify_url) VALUES (?, ?, ?, ?, ?)",
                             (out_trade_no, caller.seller_id, caller.app.app_id, caller.auth_app_id, notify_url))
            return True

    def owner(self, out_trade_no: str, seller_id: str | None = None) -> TradeOwner | None:
        """The merchant's trade (`seller_id`), or without one the first merchant's with that number."""
        with self._lock:
            row = self._db.execute("SELECT seller_id, app_id, auth_app_id, notify_url, notified FROM trades WHERE out_trade_no = ?"
                                   + (" AND seller_id = ?" if seller_id is not None else " ORDER BY rowid LIMIT 1"),
                                   (out_trade_no, seller_id) if seller_id is not None else (out_trade_no,)).fetchone()
        return None if row is None else TradeOwner(*row)

    def trades_of_others(self, own_seller_id: str) -> list[tuple[str, str]]:
        """(seller_id, out_trade_no) of every trade not of `own_seller_id` (re-keying a migrated ledger)."""
        with self._lock:
            return [(str(r[0]), str(r[1])) for r in self._db.execute(
                "SELECT seller_id, out_trade_no FROM trades WHERE seller_id != ?", (own_seller_id,)).fetchall()]

    def mark_notified(self, out_trade_no: str, seller_id: str, state: str) -> bool:
        """True the first time `state` is announced for the merchant's trade (so each change is sent once)."""
        with self._lock:
            cur = self._db.execute("UPDATE trades SET notified = ? WHERE seller_id = ? AND out_trade_no = ? AND notified != ?",
                                   (state, seller_id, out_trade_no, state))
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
