"""The sandbox's WeChat Pay parties beyond the v2 direct merchant, made on first start and kept in the data dir.

    <data-dir>/wechat.json                       the service provider (服务商): appid, mch_id, API key,
                                                 its bound sub-merchants and their sub_appid; the APIv3
                                                 keys and certificate serials of both merchants; the
                                                 platform public key id
    <data-dir>/keys/wechat_merchant_private_key.pem   the direct merchant's API certificate key (apiclient_key.pem)
    <data-dir>/keys/wechat_provider_private_key.pem   the provider's
    <data-dir>/keys/wechat_platform_private_key.pem   the platform's key: signs APIv3 replies and notifications
    <data-dir>/keys/wechat_platform_public_key.pem    what clients verify them with (public-key mode)
    <data-dir>/keys/wechat_platform_cert.pem          the same key in a certificate (platform-certificate mode)

The direct merchant's v2 identity (appid, mch_id, API key) stays in identity.json (`identity`).
Keeping these in the data dir keeps orders in the SQLite ledger valid across restarts.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from firmware_sim.sandbox.identity import IdentityError

SUB_MERCHANTS = 2  # sub-merchants bound to the provider (one per demo hospital is enough)


@dataclass(frozen=True, slots=True)
class V3Party:
    """A merchant account's APIv3 credentials as WeChat Pay knows them."""

    mch_id: str
    serial_no: str  # of its API certificate: names the key in the Authorization header
    public_key: rsa.RSAPublicKey = field(repr=False)
    private_key_path: str  # for the client (the credentials file names it)
    apiv3_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class WeChatWorld:
    provider_appid: str
    provider_mch_id: str
    provider_api_key: str = field(repr=False)
    sub_mch_ids: tuple[str, ...] = ()
    sub_appid: str = ""
    direct_v3: V3Party | None = None
    provider_v3: V3Party | None = None
    platform_private_key: rsa.RSAPrivateKey | None = field(default=None, repr=False)
    platform_public_key_id: str = ""
    platform_cert_serial: str = ""
    platform_public_key_path: str = ""
    platform_cert_path: str = ""


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _private_key(path: str) -> rsa.RSAPrivateKey:
    if not os.path.exists(path):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return key
    try:
        with open(path, "rb") as handle:
            loaded = serialization.load_pem_private_key(handle.read(), password=None)
    except (OSError, ValueError) as exc:
        raise IdentityError(f"cannot read {path}: {exc}; delete it to start a fresh sandbox") from None
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise IdentityError(f"{path} is not an RSA private key")
    return loaded


def _platform_cert(path: str, key: rsa.RSAPrivateKey, serial: int) -> None:
    if os.path.exists(path):
        return
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (sandbox)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    with open(path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))


def load_wechat_world(data_dir: str, direct_mch_id: str) -> WeChatWorld:
    keys_dir = os.path.join(data_dir, "keys")
    os.makedirs(keys_dir, exist_ok=True)
    path = os.path.join(data_dir, "wechat.json")
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as handle:
                ids = json.load(handle)
        except (OSError, ValueError) as exc:
            raise IdentityError(f"cannot read {path}: {exc}; delete it to start a fresh sandbox") from None
    else:
        ids = {
            "provider_appid": "wx" + secrets.token_hex(8),
            "provider_mch_id": "1" + _digits(9),
            "provider_api_key": secrets.token_hex(16),
            "sub_mch_ids": ["1" + _digits(9) for _ in range(SUB_MERCHANTS)],
            "sub_appid": "wx" + secrets.token_hex(8),
            "direct_serial_no": secrets.token_hex(20).upper(),
            "direct_apiv3_key": secrets.token_hex(16),
            "provider_serial_no": secrets.token_hex(20).upper(),
            "provider_apiv3_key": secrets.token_hex(16),
            "platform_public_key_id": "PUB_KEY_ID_01" + _digits(30),
            "platform_cert_serial": ("5" + secrets.token_hex(20)[1:]).upper(),  # 40 hex digits, under X.509's 159 bits
        }
        _write_private(path, json.dumps(ids, indent=2).encode("utf-8"))
    direct_key_path = os.path.join(keys_dir, "wechat_merchant_private_key.pem")
    provider_key_path = os.path.join(keys_dir, "wechat_provider_private_key.pem")
    direct_key, provider_key = _private_key(direct_key_path), _private_key(provider_key_path)
    platform_key = _private_key(os.path.join(keys_dir, "wechat_platform_private_key.pem"))
    public_path = os.path.join(keys_dir, "wechat_platform_public_key.pem")
    if not os.path.exists(public_path):
        with open(public_path, "wb") as handle:
            handle.write(platform_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    cert_path = os.path.join(keys_dir, "wechat_platform_cert.pem")
    _platform_cert(cert_path, platform_key, int(ids["platform_cert_serial"], 16))
    return WeChatWorld(
        ids["provider_appid"], ids["provider_mch_id"], ids["provider_api_key"], tuple(ids["sub_mch_ids"]), ids["sub_appid"],
        direct_v3=V3Party(direct_mch_id, ids["direct_serial_no"], direct_key.public_key(), os.path.abspath(direct_key_path),
                          ids["direct_apiv3_key"]),
        provider_v3=V3Party(ids["provider_mch_id"], ids["provider_serial_no"], provider_key.public_key(), os.path.abspath(provider_key_path),
                            ids["provider_apiv3_key"]),
        platform_private_key=platform_key, platform_public_key_id=ids["platform_public_key_id"],
        platform_cert_serial=ids["platform_cert_serial"], platform_public_key_path=os.path.abspath(public_path),
        platform_cert_path=os.path.abspath(cert_path),
    )
