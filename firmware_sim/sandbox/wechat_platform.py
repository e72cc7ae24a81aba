"""The sandbox's WeChat Pay platform certificates (平台证书) and their rotation.

WeChat Pay signs APIv3 replies with a platform certificate's key and lists its certificates at
GET /v3/certificates (each encrypted with the asking merchant's APIv3 key). Before a certificate
expires it issues the next one: for a while both are listed and valid, the old one still signing;
then the new one signs. The sandbox does the same on request (the control API):

    rotate()          a new certificate is listed (valid from now, ten years); the old one keeps signing
    rotate(switch=True) / switch()   the newest certificate signs from now on

The first certificate is the one `wechat_identity` made (keys/wechat_platform_cert.pem, whose key
also stands for the platform public key). Rotated ones are kept in the data dir
(keys/wechat_platform_certs.json and a key and certificate file each), so a restart keeps them.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import threading
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from firmware_sim.sandbox.identity import IdentityError

CERT_LIFETIME_DAYS = 3650


@dataclass(frozen=True, slots=True)
class PlatformCert:
    serial_no: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    pem: str
    not_before: float
    not_after: float


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _load(pem_path: str, key_path: str) -> PlatformCert:
    try:
        with open(pem_path, "rb") as handle:
            pem = handle.read()
        with open(key_path, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
        cert = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError) as exc:
        raise IdentityError(f"cannot read the platform certificate {pem_path}: {exc}; delete the data dir to start afresh") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise IdentityError(f"{key_path} is not an RSA key")
    return PlatformCert(format(cert.serial_number, "X"), key, pem.decode("ascii"), cert.not_valid_before_utc.timestamp(),
                        cert.not_valid_after_utc.timestamp())


class PlatformCertificates:
    def __init__(self, keys_dir: str, first_cert_path: str, first_key_path: str) -> None:
        self._dir = keys_dir
        self._state_path = os.path.join(keys_dir, "wechat_platform_certs.json")
        self._lock = threading.Lock()
        self._certs = [_load(first_cert_path, first_key_path)]
        self._signing = 0
        if os.path.exists(self._state_path):
            try:
                with open(self._state_path, encoding="utf-8") as handle:
                    state = json.load(handle)
                for entry in state["rotated"]:
                    self._certs.append(_load(os.path.join(keys_dir, entry["cert"]), os.path.join(keys_dir, entry["key"])))
                self._signing = int(state["signing"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise IdentityError(f"cannot read {self._state_path}: {exc}; delete it to forget the rotations") from None

    def listed(self) -> list[PlatformCert]:
        with self._lock:
            return list(self._certs)

    def signer(self) -> PlatformCert:
        with self._lock:
            return self._certs[self._signing]

    def find(self, serial: str) -> PlatformCert | None:
        with self._lock:
            return next((c for c in self._certs if c.serial_no == serial), None)

    def rotate(self, *, switch: bool = False) -> PlatformCert:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        serial = int("5" + secrets.token_hex(20)[1:], 16)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (sandbox)")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(serial)
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=CERT_LIFETIME_DAYS))
                .sign(key, hashes.SHA256()))
        stem = f"wechat_platform_{format(serial, 'X')}"
        _write_private(os.path.join(self._dir, stem + "_key.pem"),
                       key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        with open(os.path.join(self._dir, stem + "_cert.pem"), "wb") as handle:
            handle.write(cert.public_bytes(serialization.Encoding.PEM))
        added = _load(os.path.join(self._dir, stem + "_cert.pem"), os.path.join(self._dir, stem + "_key.pem"))
        with self._lock:
            self._certs.append(added)
            if switch:
                self._signing = len(self._certs) - 1
            self._save()
        return added

    def switch(self) -> PlatformCert:
        with self._lock:
            self._signing = len(self._certs) - 1
            self._save()
            return self._certs[self._signing]

    def _save(self) -> None:
        rotated = [{"cert": f"wechat_platform_{c.serial_no}_cert.pem", "key": f"wechat_platform_{c.serial_no}_key.pem"} for c in self._certs[1:]]
        tmp = self._state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"rotated": rotated, "signing": self._signing}, handle)
        os.replace(tmp, self._state_path)

    def describe(self) -> list[dict[str, object]]:
        signer = self.signer().serial_no
        return [{"serial_no": c.serial_no, "not_before": int(c.not_before), "not_after": int(c.not_after), "signing": c.serial_no == signer}
                for c in self.listed()]
