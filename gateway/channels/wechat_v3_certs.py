"""WeChat Pay APIv3 platform certificates (平台证书, GET /v3/certificates): the reply's wire format
and the rules for believing it. Pure, no I/O.

The reply is JSON:

    {"data": [{"serial_no": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
               "effective_time": "2026-01-01T00:00:00+08:00", "expire_time": "2031-01-01T00:00:00+08:00",
               "encrypt_certificate": {"algorithm": "AEAD_AES_256_GCM", "nonce": "61f9c719728a",
                                       "associated_data": "certificate", "ciphertext": "base64..."}}, ...]}

Each certificate is a PEM encrypted with AEAD_AES_256_GCM under the merchant's APIv3 key, with the
nonce and associated data given beside it. A certificate that opens is authentic to whoever trusts
the APIv3 key (only WeChat Pay and the merchant know it). The reply itself is signed like every
APIv3 reply (Wechatpay-Serial names the certificate whose key signed it).

Which certificate may verify that signature (`signer_for`): one this gateway already holds; or, on
first use only, when nothing is held for the merchant, one from the list itself: WeChat Pay's
documented bootstrap (its CertificateDownloader does the same; the docs ask merchants to check the
first certificate against a known one or out of band, which `--expect-serial` lets an operator do).
A list signed by a certificate we do not hold, while we hold others, is not believed unless the
operator names that serial (`expect_serial`): that is the one case a person must look at.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Iterable, Mapping

from cryptography import x509

from gateway.channels import wechat_v3_codec as v3

ALGORITHM = "AEAD_AES_256_GCM"
PATH = "/v3/certificates"
# A list longer than this is not what WeChat Pay sends (it lists the current and the next certificate).
MAX_CERTIFICATES = 16


class CertificateListError(v3.WeChatV3Error):
    """A /v3/certificates reply that is not a list of certificates this merchant's APIv3 key opens."""

    code = "wechat_v3_certificates"


class CertificateTrustError(v3.WeChatV3Error):
    """A certificate list whose signature no certificate we may use verifies (see the module docstring)."""

    code = "wechat_v3_certificates_unverified"


@dataclass(frozen=True, slots=True)
class PlatformCertificate:
    serial_no: str  # uppercase hex, as WeChat Pay writes it and as Wechatpay-Serial names it
    effective_at: int  # unix seconds
    expire_at: int
    pem: str

    def public_key(self) -> v3.PublicKey:
        return v3.load_public_key(self.pem)

    def valid_at(self, now: float) -> bool:
        return self.effective_at <= now < self.expire_at


def _time(value: object, what: str) -> int:
    if not isinstance(value, str) or not value:
        raise CertificateListError(f"{what} is missing")
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise CertificateListError(f"{what} {value[:40]!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise CertificateListError(f"{what} {value[:40]!r} has no time zone")
    return int(moment.timestamp())


def parse_certificate_list(body: bytes | str, apiv3_key: str) -> list[PlatformCertificate]:
    """The certificates of a /v3/certificates reply, each opened with the APIv3 key and checked to be
    the X.509 certificate its serial_no names. CertificateListError (or the AEAD's WeChatV3Error,
    code `wechat_v3_resource`) when anything is not so: one bad entry spoils the list."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise CertificateListError("the certificate list is not JSON") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list) or not data:
        raise CertificateListError("the certificate list has no data[]")
    if len(data) > MAX_CERTIFICATES:
        raise CertificateListError(f"the certificate list has {len(data)} entries (at most {MAX_CERTIFICATES})")
    found: list[PlatformCertificate] = []
    for n, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise CertificateListError(f"data[{n}] is not an object")
        serial = entry.get("serial_no")
        if not isinstance(serial, str) or not serial or not all(c in "0123456789ABCDEFabcdef" for c in serial) or len(serial) > 64:
            raise CertificateListError(f"data[{n}].serial_no must be hex")
        sealed = entry.get("encrypt_certificate")
        if not isinstance(sealed, dict) or sealed.get("algorithm") != ALGORITHM:
            raise CertificateListError(f"data[{n}].encrypt_certificate must be {ALGORITHM}")
        nonce, associated, ciphertext = sealed.get("nonce"), sealed.get("associated_data", ""), sealed.get("ciphertext")
        if not isinstance(nonce, str) or not nonce or not isinstance(associated, str) or not isinstance(ciphertext, str):
            raise CertificateListError(f"data[{n}].encrypt_certificate needs nonce, associated_data and ciphertext")
        plain = v3.aead_decrypt(apiv3_key, nonce, associated, ciphertext)
        try:
            pem = plain.decode("ascii")
            cert = x509.load_pem_x509_certificate(plain)
        except (UnicodeDecodeError, ValueError):
            raise CertificateListError(f"data[{n}] opens but is not a PEM certificate") from None
        if format(cert.serial_number, "X") != serial.upper().lstrip("0"):
            raise CertificateListError(f"data[{n}] is certificate {format(cert.serial_number, 'X')}, not {serial}")
        try:
            v3.load_public_key(pem)
        except v3.WeChatV3Error as exc:
            raise CertificateListError(f"data[{n}]: {exc}") from None
        effective, expire = _time(entry.get("effective_time"), f"data[{n}].effective_time"), _time(entry.get("expire_time"), f"data[{n}].expire_time")
        if expire <= effective:
            raise CertificateListError(f"data[{n}] expires before it takes effect")
        found.append(PlatformCertificate(serial.upper(), effective, expire, pem))
    if len({c.serial_no for c in found}) != len(found):
        raise CertificateListError("the certificate list names a serial twice")
    return found


def signer_for(serial: str, listed: Iterable[PlatformCertificate], held: Mapping[str, v3.PublicKey], *,
               expect_serial: str | None = None) -> v3.PublicKey:
    """The key that must verify a certificate list signed by `serial` (see the module docstring)."""
    listed_by_serial = {c.serial_no: c for c in listed}
    if expect_serial is not None and expect_serial.upper() not in listed_by_serial:
        raise CertificateTrustError(f"the certificate list does not hold the expected certificate {expect_serial[:64]}; "
                                    f"it holds {', '.join(sorted(listed_by_serial))}")
    if serial in held:
        return held[serial]
    if serial not in listed_by_serial:
        raise CertificateTrustError(f"the certificate list is signed by {serial[:64]!r}, which is neither held nor listed")
    if held and (expect_serial is None or expect_serial.upper() != serial):
        raise CertificateTrustError(
            f"the certificate list is signed by {serial[:64]}, which this gateway does not hold (it holds {', '.join(sorted(held))}); "
            f"check {serial[:64]} with WeChat Pay (merchant platform) and run: gateway-admin wechat certificates refresh ... "
            f"--expect-serial {serial[:64]}")
    if expect_serial is not None and expect_serial.upper() != serial:
        raise CertificateTrustError(f"the certificate list is signed by {serial[:64]}, not by the expected {expect_serial[:64]}")
    return listed_by_serial[serial].public_key()


def encrypt_entry(cert_pem: str, serial_no: str, effective_at: float, expire_at: float, apiv3_key: str, nonce: str,
                  associated_data: str = "certificate") -> dict[str, object]:
    """One data[] entry as WeChat Pay writes it (the sandbox serves these; tests build them)."""
    tz = datetime.timezone(datetime.timedelta(hours=8))
    return {"serial_no": serial_no, "effective_time": datetime.datetime.fromtimestamp(effective_at, tz).isoformat(timespec="seconds"),
            "expire_time": datetime.datetime.fromtimestamp(expire_at, tz).isoformat(timespec="seconds"),
            "encrypt_certificate": {"algorithm": ALGORITHM, "nonce": nonce, "associated_data": associated_data,
                                    "ciphertext": v3.aead_encrypt(apiv3_key, nonce, associated_data, cert_pem.encode("ascii"))}}
