"""Alipay certificate mode (公钥证书模式): certificate serial numbers ("SN") and keys from certificates. Pure, no I/O.

In certificate mode every request carries two more common parameters, and every reply one more field:
- `app_cert_sn`: the SN of the app's own certificate (appCertPublicKey_<app_id>.crt);
- `alipay_root_cert_sn`: the SNs of the RSA certificates of the Alipay root chain (alipayRootCert.crt,
  several certificates in one file, some of them not RSA, e.g. SM2) joined with `_`;
- `alipay_cert_sn` beside the reply's `sign`: which Alipay public certificate (alipayCertPublicKey_RSA2.crt)
  signed it. The reply is verified with the public key of the certificate whose SN matches; an SN we do
  not hold means we cannot verify the reply (a certificate Alipay rotated to, or not Alipay at all).

SN, as Alipay's SDKs compute it: MD5 (lowercase hex) of the issuer's distinguished name in RFC 2253
order (most specific first: "CN=...,OU=...,O=...,C=...") followed by the serial number in decimal.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from Crypto.PublicKey import RSA

from protocol.errors import CodedError

_RSA_SIGNATURES = "1.2.840.113549.1.1."  # PKCS #1: sha1WithRSAEncryption, sha256WithRSAEncryption ...
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class CertificateError(CodedError, ValueError):
    """A certificate text that is not what Alipay's certificate mode needs; the message says which."""

    code = "alipay_certificate"


def load_certificates(pem: str | bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM text (a chain file holds several), in file order."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    blocks = _PEM_CERT.findall(data)
    if not blocks:
        raise CertificateError("no PEM certificate (-----BEGIN CERTIFICATE-----) found")
    certs = []
    for block in blocks:
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise CertificateError(f"unreadable certificate: {exc}") from None
    return certs


def cert_sn(cert: x509.Certificate) -> str:
    """Alipay's SN of one certificate: md5(issuer DN, RFC 2253 order + decimal serial)."""
    issuer = cert.issuer.rfc4514_string()
    return hashlib.md5((issuer + str(cert.serial_number)).encode("utf-8")).hexdigest()


def root_cert_sn(pem: str | bytes) -> str:
    """`alipay_root_cert_sn`: the SNs of the chain's certificates signed with RSA (signature algorithm
    OID under 1.2.840.113549.1.1, as Alipay's Java SDK checks), joined by `_`, in file order."""
    sns = [cert_sn(c) for c in load_certificates(pem) if c.signature_algorithm_oid.dotted_string.startswith(_RSA_SIGNATURES)]
    if not sns:
        raise CertificateError("the Alipay root certificate file holds no RSA certificate")
    return "_".join(sns)


def app_cert_sn(pem: str | bytes) -> str:
    """`app_cert_sn`: the SN of the app's certificate (the first certificate of the file)."""
    return cert_sn(load_certificates(pem)[0])


def rsa_public_key(cert: x509.Certificate) -> RSA.RsaKey:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CertificateError("the certificate's key is not RSA (Alipay's RSA2 needs an RSA certificate)")
    return RSA.import_key(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


@dataclass(frozen=True, slots=True)
class AlipayCertificates:
    """What a client in certificate mode sends and what it verifies replies with."""

    app_cert_sn: str
    alipay_root_cert_sn: str
    alipay_keys: dict[str, RSA.RsaKey]  # SN -> the public key of that Alipay public certificate

    @classmethod
    def from_pem(cls, app_cert: str, alipay_cert: str, alipay_root_cert: str) -> "AlipayCertificates":
        """`alipay_cert` may hold several Alipay public certificates (the current and the next one)."""
        keys = {cert_sn(c): rsa_public_key(c) for c in load_certificates(alipay_cert)}
        return cls(app_cert_sn(app_cert), root_cert_sn(alipay_root_cert), keys)

    def key_for(self, sn: str | None) -> RSA.RsaKey | None:
        return None if sn is None else self.alipay_keys.get(sn)
