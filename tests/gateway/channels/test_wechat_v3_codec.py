"""WeChat Pay APIv3 signatures and encryptions: the documented string to sign, and cross-checks with
the wechatpayv3 SDK (what merchants' Python code uses) on RSA keys this test makes."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st
from wechatpayv3 import utils as sdk

from gateway.channels import wechat_v3_codec as v3


@pytest.fixture(scope="module")
def keypair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return key, v3.load_private_key(pem), v3.load_public_key(public)


def test_the_string_to_sign_is_the_documented_example() -> None:
    # WeChat Pay "签名生成": GET /v3/certificates at 1554208460 with nonce 593BEC0C930BF1AFEB40B4A08C8FB242, empty body.
    assert v3.request_message("GET", "/v3/certificates", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", "") == \
        "GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n"
    # "签名验证": timestamp, nonce, body, each line ending in \n (an empty body leaves a bare \n).
    assert v3.response_message("1554209980", "c5ac7061fccab6bf3e254dcf98995b8c", "") == "1554209980\nc5ac7061fccab6bf3e254dcf98995b8c\n\n"


def test_our_request_signature_is_the_sdks(keypair) -> None:
    key, ours, public = keypair
    body = json.dumps({"mchid": "1900000109", "out_trade_no": "T20261202", "amount": {"total": 1250}})
    auth = v3.authorization(method="POST", url="/v3/pay/transactions/codepay", body=body, mchid="1900000109",
                            serial_no="5157F09EFDC096DE15EBE81A47057A7232F1B8E1", private_key=ours, timestamp="1764633600",
                            nonce="593BEC0C930BF1AFEB40B4A08C8FB242")
    # PKCS#1 v1.5 is deterministic: the SDK's signature of the same string is the same bytes.
    assert auth.signature == sdk.rsa_sign(key, v3.request_message("POST", "/v3/pay/transactions/codepay", "1764633600",
                                                                  "593BEC0C930BF1AFEB40B4A08C8FB242", body))
    sdk_header = sdk.build_authorization("/v3/pay/transactions/codepay", "POST", "1900000109", "5157F09E", key, data=body)
    parsed = v3.parse_authorization(sdk_header)
    assert parsed.mchid == "1900000109" and parsed.serial_no == "5157F09E"
    message = v3.request_message("POST", "/v3/pay/transactions/codepay", parsed.timestamp, parsed.nonce_str, body)
    assert v3.rsa_verify(message, parsed.signature, public)
    assert not v3.rsa_verify(message.replace("1250", "1251"), parsed.signature, public)


def test_a_reply_signed_as_the_platform_signs_verifies_in_the_sdk(keypair) -> None:
    key, ours, _ = keypair
    body = '{"trade_state":"SUCCESS"}'
    signature = v3.rsa_sign(v3.response_message("1764633600", "abc", body), ours)
    assert sdk.rsa_verify("1764633600", "abc", body, signature, key.public_key())
    assert not sdk.rsa_verify("1764633601", "abc", body, signature, key.public_key())
    # And with a second, independent RSA implementation (pycryptodome; ours and the SDK's are OpenSSL's).
    from Crypto.Hash import SHA256
    from Crypto.PublicKey import RSA
    from Crypto.Signature import pkcs1_15

    public = RSA.import_key(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    pkcs1_15.new(public).verify(SHA256.new(b"1764633600\nabc\n" + body.encode() + b"\n"), base64.b64decode(signature))


@given(st.text(alphabet=st.characters(blacklist_characters='"', blacklist_categories=["Cs"]), min_size=1, max_size=40)
       .filter(lambda s: s.strip() == s and "," not in s))
def test_an_authorization_header_parses_back(value: str) -> None:
    auth = v3.Authorization("1900000109", value, "c2ln", "1764633600", "5157F09E")
    assert v3.parse_authorization(auth.header()) == auth


@pytest.mark.parametrize("header", [
    "", "Bearer x", 'WECHATPAY2-SHA256-RSA2048 mchid="1"', 'WECHATPAY2-SHA256-RSA2048 mchid="1",mchid="2",nonce_str="n",signature="s",timestamp="1",serial_no="x"',
    'WECHATPAY2-SHA256-RSA2048 mchid=1,nonce_str="n",signature="s",timestamp="1",serial_no="x"'])
def test_a_malformed_authorization_is_refused_with_a_stable_code(header: str) -> None:
    with pytest.raises(v3.WeChatV3Error) as refused:
        v3.parse_authorization(header)
    assert refused.value.code == "wechat_v3"


APIV3_KEY = "0123456789abcdefABCDEF0123456789"


@given(st.binary(max_size=2000), st.text(max_size=20))
def test_a_resource_sealed_here_opens_in_the_sdk(plaintext: bytes, associated: str) -> None:
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    ciphertext = v3.aead_encrypt(APIV3_KEY, "NONCE0123456", associated, plaintext)
    assert v3.aead_decrypt(APIV3_KEY, "NONCE0123456", associated, ciphertext) == plaintext
    if text is not None:
        assert sdk.aes_decrypt("NONCE0123456", ciphertext, associated, APIV3_KEY) == text


def test_an_altered_resource_or_another_key_does_not_open() -> None:
    ciphertext = v3.aead_encrypt(APIV3_KEY, "NONCE0123456", "refund", b'{"refund_status":"SUCCESS"}')
    raw = bytearray(base64.b64decode(ciphertext))
    raw[3] ^= 1
    for key, blob, ad in ((APIV3_KEY, base64.b64encode(bytes(raw)).decode(), "refund"), ("x" * 32, ciphertext, "refund"),
                          (APIV3_KEY, ciphertext, "transaction")):
        with pytest.raises(v3.WeChatV3Error):
            v3.aead_decrypt(key, "NONCE0123456", ad, blob)


def test_req_info_is_aes_256_ecb_keyed_with_the_md5_of_the_api_key() -> None:
    from Crypto.Cipher import AES

    api_key = "192006250b4c09247ec02edce69f6a2d"  # the API key of WeChat Pay's v2 signing example
    sealed = v3.req_info_encrypt(api_key, b"<root><out_refund_no><![CDATA[R1]]></out_refund_no></root>")
    key = hashlib.md5(api_key.encode()).hexdigest().lower().encode()
    raw = AES.new(key, AES.MODE_ECB).decrypt(base64.b64decode(sealed))
    assert raw[: -raw[-1]] == b"<root><out_refund_no><![CDATA[R1]]></out_refund_no></root>"  # PKCS#7
    assert v3.req_info_decrypt(api_key, sealed).startswith(b"<root>")
    with pytest.raises(v3.WeChatV3Error):
        v3.req_info_decrypt("another-key" * 3, sealed)
