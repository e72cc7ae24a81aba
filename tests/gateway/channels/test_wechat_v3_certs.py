"""WeChat Pay APIv3 platform certificate lists (GET /v3/certificates), without I/O: AEAD_AES_256_GCM
known answers built here with another library (`cryptography`'s AESGCM, not the codec's pycryptodome)
and opened by the wechatpayv3 SDK too, the list's checks, and who may sign a list."""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from wechatpayv3 import utils as sdk

from gateway.channels import wechat_v3_certs as certs
from gateway.channels import wechat_v3_codec as v3

APIV3_KEY = "0123456789abcdefABCDEF0123456789"
NONCE, AD = "61f9c719728a", "certificate"


def _cert(serial: int, days: int = 30) -> tuple[str, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (test)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), key


@pytest.fixture(scope="module")
def two_certs():
    return _cert(0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1), _cert(0x6A2B)


def test_a_resource_sealed_with_a_known_key_opens_to_the_known_plaintext() -> None:
    plaintext = b"-----BEGIN CERTIFICATE-----\nknown answer\n-----END CERTIFICATE-----\n"
    sealed = base64.b64encode(AESGCM(APIV3_KEY.encode()).encrypt(NONCE.encode(), plaintext, AD.encode())).decode()
    assert v3.aead_decrypt(APIV3_KEY, NONCE, AD, sealed) == plaintext
    assert sdk.aes_decrypt(NONCE, sealed, AD, APIV3_KEY) == plaintext.decode()  # merchants' SDK agrees
    # and what the codec seals is what AESGCM seals, byte for byte
    assert v3.aead_encrypt(APIV3_KEY, NONCE, AD, plaintext) == sealed


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()), st.text(max_size=60)),
       st.text(max_size=16), st.text(max_size=16))
def test_anything_but_a_valid_ciphertext_and_tag_is_refused_with_one_stable_code(blob: str, nonce: str, ad: str) -> None:
    with pytest.raises(v3.ResourceError) as refused:
        v3.aead_decrypt(APIV3_KEY, nonce, ad, blob)
    assert refused.value.code == "wechat_v3_resource"


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=10_000))
def test_a_valid_resource_with_any_bit_flipped_is_refused(plaintext: bytes, position: int) -> None:
    raw = bytearray(base64.b64decode(v3.aead_encrypt(APIV3_KEY, NONCE, AD, plaintext)))
    raw[position % len(raw)] ^= 1 << (position % 8)
    with pytest.raises(v3.ResourceError):
        v3.aead_decrypt(APIV3_KEY, NONCE, AD, base64.b64encode(bytes(raw)).decode())


def _listing(*entries: dict) -> bytes:
    return json.dumps({"data": list(entries)}).encode()


def _entry(pem: str, serial: str | None = None, key: str = APIV3_KEY, **changes) -> dict:
    cert = x509.load_pem_x509_certificate(pem.encode())
    entry = certs.encrypt_entry(pem, serial or format(cert.serial_number, "X"), cert.not_valid_before_utc.timestamp(),
                                cert.not_valid_after_utc.timestamp(), key, NONCE)
    return entry | changes


def test_a_list_opens_into_certificates_with_their_serials_and_times(two_certs) -> None:
    (pem_a, _), (pem_b, _) = two_certs
    listed = certs.parse_certificate_list(_listing(_entry(pem_a), _entry(pem_b)), APIV3_KEY)
    assert [c.serial_no for c in listed] == ["5157F09EFDC096DE15EBE81A47057A7232F1B8E1", "6A2B"]
    assert listed[0].pem == pem_a and listed[0].expire_at > listed[0].effective_at
    assert listed[0].public_key().public_numbers() == v3.load_public_key(pem_a).public_numbers()


@pytest.mark.parametrize("spoil, code", [
    (lambda a, b: b"not json", "wechat_v3_certificates"),
    (lambda a, b: b'{"data": []}', "wechat_v3_certificates"),
    (lambda a, b: _listing(_entry(a, key="x" * 32)), "wechat_v3_resource"),  # another merchant's APIv3 key
    (lambda a, b: _listing(_entry(a, serial="6A2B")), "wechat_v3_certificates"),  # serial_no names another certificate
    (lambda a, b: _listing(_entry(a), _entry(a)), "wechat_v3_certificates"),  # twice
    (lambda a, b: _listing(_entry(a, effective_time="yesterday")), "wechat_v3_certificates"),
    (lambda a, b: _listing(_entry(a, encrypt_certificate={"algorithm": "AES_128_CBC"})), "wechat_v3_certificates"),
    (lambda a, b: _listing(certs.encrypt_entry("not a certificate", "6A2B", 0, 1, APIV3_KEY, NONCE)), "wechat_v3_certificates"),
])
def test_a_list_that_is_not_what_wechat_pay_sends_is_refused_by_code(two_certs, spoil, code) -> None:
    (pem_a, _), (pem_b, _) = two_certs
    with pytest.raises(v3.WeChatV3Error) as refused:
        certs.parse_certificate_list(spoil(pem_a, pem_b), APIV3_KEY)
    assert refused.value.code == code


def test_who_may_sign_a_list(two_certs) -> None:
    (pem_a, _), (pem_b, _) = two_certs
    listed = certs.parse_certificate_list(_listing(_entry(pem_a), _entry(pem_b)), APIV3_KEY)
    a, b = listed[0].serial_no, listed[1].serial_no
    held_a = {a: listed[0].public_key()}
    # first use, nothing held: the list's own certificate (the documented bootstrap)
    assert certs.signer_for(b, listed, {}).public_numbers() == listed[1].public_key().public_numbers()
    # ...unless the operator pinned another one
    with pytest.raises(certs.CertificateTrustError):
        certs.signer_for(b, listed, {}, expect_serial=a)
    with pytest.raises(certs.CertificateTrustError):
        certs.signer_for(b, listed, {}, expect_serial="ABCDEF")  # not even listed
    # something held: a held certificate verifies; an unheld one only when the operator names it
    assert certs.signer_for(a, listed, held_a) is held_a[a]
    with pytest.raises(certs.CertificateTrustError) as refused:
        certs.signer_for(b, listed, held_a)
    assert refused.value.code == "wechat_v3_certificates_unverified" and f"--expect-serial {b}" in str(refused.value)
    assert certs.signer_for(b, listed, held_a, expect_serial=b.lower()).public_numbers() == listed[1].public_key().public_numbers()
    with pytest.raises(certs.CertificateTrustError):
        certs.signer_for("FFFF", listed, {})  # signed by a certificate neither held nor listed
