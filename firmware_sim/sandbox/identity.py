"""The sandbox's merchant identities and keys, created on first start and kept in the data dir.

    <data-dir>/identity.json              WeChat appid, mch_id, API key; Alipay app_id, pid
    <data-dir>/keys/alipay_private_key.pem   the sandbox's own "Alipay" key (signs replies)
    <data-dir>/keys/alipay_public_key.pem    what clients verify replies with
    <data-dir>/keys/app_private_key.pem      the app's key, for the client to sign requests
    <data-dir>/keys/app_public_key.pem       what the sandbox verifies requests with
Each can be supplied instead (`--wechat-key`, `--alipay-key`, `--alipay-app-public-key`), for
instance to test with the keys an HIS vendor or a field engineer already has. Keeping them in the
data dir means orders in the SQLite ledger stay valid across restarts.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from Crypto.PublicKey import RSA

from gateway.channels.alipay_codec import load_private_key, load_public_key
from protocol.errors import CodedError


class IdentityError(CodedError):
    """A key or identity file the sandbox cannot use; the message says which and why."""

    code = "sandbox_identity"


@dataclass(frozen=True, slots=True)
class Identity:
    wechat_appid: str
    wechat_mch_id: str
    wechat_api_key: str = field(repr=False)
    alipay_app_id: str = ""
    alipay_pid: str = ""
    alipay_private_key: RSA.RsaKey | None = field(default=None, repr=False)
    app_public_key: RSA.RsaKey | None = field(default=None, repr=False)
    alipay_public_key_path: str = ""
    app_private_key_path: str | None = None  # None when the app's public key was supplied
    # A service provider's third-party app (第三方应用) and an app in certificate mode, each with its key pair.
    alipay_isv_app_id: str = ""
    alipay_isv_pid: str = ""
    isv_public_key: RSA.RsaKey | None = field(default=None, repr=False)
    isv_private_key_path: str = ""
    alipay_cert_app_id: str = ""
    cert_app_public_key: RSA.RsaKey | None = field(default=None, repr=False)
    cert_app_private_key_path: str = ""


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _keypair(directory: str, stem: str) -> tuple[str, str]:
    """Create <stem>_private_key.pem / <stem>_public_key.pem if missing; return their paths."""
    private_path = os.path.join(directory, f"{stem}_private_key.pem")
    public_path = os.path.join(directory, f"{stem}_public_key.pem")
    if not os.path.exists(private_path):
        # `cryptography` generates 2048-bit keys in milliseconds; signing uses pycryptodome.
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(private_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
        with open(public_path, "wb") as handle:
            handle.write(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise IdentityError(f"cannot read the {what} {path}: {exc}") from None


def load_identity(data_dir: str, *, wechat_key: str | None = None, alipay_key_path: str | None = None,
                  app_public_key_path: str | None = None) -> Identity:
    keys_dir = os.path.join(data_dir, "keys")
    os.makedirs(keys_dir, exist_ok=True)
    id_path = os.path.join(data_dir, "identity.json")
    if os.path.exists(id_path):
        try:
            with open(id_path, encoding="utf-8") as handle:
                ids = json.load(handle)
        except (OSError, ValueError) as exc:
            raise IdentityError(f"cannot read {id_path}: {exc}; delete it to start a fresh sandbox") from None
    else:
        ids = {
            "wechat_appid": "wx" + secrets.token_hex(8),
            "wechat_mch_id": "1" + "".join(secrets.choice("0123456789") for _ in range(9)),
            "wechat_api_key": secrets.token_hex(16),  # WeChat API keys are 32 characters
            "alipay_app_id": "2021" + "".join(secrets.choice("0123456789") for _ in range(12)),
            "alipay_pid": "2088" + "".join(secrets.choice("0123456789") for _ in range(12)),
        }
        _write_private(id_path, json.dumps(ids, indent=2).encode("utf-8"))
    more = {"alipay_isv_app_id": "2021", "alipay_isv_pid": "2088", "alipay_cert_app_id": "2021"}
    if not all(name in ids for name in more):  # a data dir from before third-party and certificate mode
        for name, prefix in more.items():
            ids.setdefault(name, prefix + "".join(secrets.choice("0123456789") for _ in range(12)))
        _write_private(id_path, json.dumps(ids, indent=2).encode("utf-8"))
    if wechat_key is not None:
        if len(wechat_key) != 32 or not wechat_key.isascii() or not wechat_key.isalnum():
            raise IdentityError("--wechat-key must be 32 ASCII letters or digits, like a WeChat Pay API key")
        ids["wechat_api_key"] = wechat_key
    alipay_private_path, alipay_public_path = _keypair(keys_dir, "alipay")
    if alipay_key_path is not None:
        alipay_private_path = alipay_key_path
        try:
            derived = load_private_key(_read(alipay_key_path, "Alipay private key"))
        except ValueError as exc:
            raise IdentityError(f"{alipay_key_path}: {exc}") from None
        alipay_public_path = os.path.join(keys_dir, "alipay_public_key.supplied.pem")
        with open(alipay_public_path, "wb") as handle:
            handle.write(derived.public_key().export_key("PEM"))
    app_private_path: str | None
    if app_public_key_path is None:
        app_private_path, app_public_path = _keypair(keys_dir, "app")
    else:
        app_private_path, app_public_path = None, app_public_key_path
    isv_private_path, isv_public_path = _keypair(keys_dir, "isv_app")
    cert_private_path, cert_public_path = _keypair(keys_dir, "cert_app")
    try:
        alipay_private = load_private_key(_read(alipay_private_path, "Alipay private key"))
        app_public = load_public_key(_read(app_public_path, "app public key"))
        isv_public = load_public_key(_read(isv_public_path, "third-party app public key"))
        cert_public = load_public_key(_read(cert_public_path, "certificate-mode app public key"))
    except ValueError as exc:
        raise IdentityError(str(exc)) from None
    return Identity(ids["wechat_appid"], ids["wechat_mch_id"], ids["wechat_api_key"], ids["alipay_app_id"], ids["alipay_pid"],
                    alipay_private, app_public, os.path.abspath(alipay_public_path),
                    os.path.abspath(app_private_path) if app_private_path else None,
                    ids["alipay_isv_app_id"], ids["alipay_isv_pid"], isv_public, os.path.abspath(isv_private_path),
                    ids["alipay_cert_app_id"], cert_public, os.path.abspath(cert_private_path))
