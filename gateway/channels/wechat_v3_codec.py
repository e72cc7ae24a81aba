"""WeChat Pay APIv3 wire rules: request and reply signatures, the Authorization header, and the two
encryptions of notifications. Pure, no I/O.

Request signature (WeChat Pay "签名生成"): the string to sign is five lines, each ending in "\\n":

    HTTP method \\n URL path with its query \\n unix timestamp \\n nonce \\n body (empty for GET) \\n

signed with the merchant's API certificate key (SHA256 with RSA, PKCS#1 v1.5), base64, and sent as

    Authorization: WECHATPAY2-SHA256-RSA2048 mchid="...",nonce_str="...",signature="...",timestamp="...",serial_no="..."

where serial_no names the merchant certificate. Replies and notifications are signed by the
platform over "timestamp \\n nonce \\n body \\n" (headers Wechatpay-Timestamp / -Nonce / -Signature
/ -Serial); -Serial names the platform certificate's serial or the platform public key's id
(PUB_KEY_ID_...), so a verifier knows which key it must use and refuses one it does not hold.

Notifications: APIv3 ones carry a resource encrypted with AEAD_AES_256_GCM under the APIv3 key
(32 bytes of ASCII), with its nonce and associated_data; API v2 refund notifications carry
`req_info`: base64 of AES-256-ECB (PKCS#7) under the lowercase hex MD5 of the API key.

RSA runs on `cryptography` (OpenSSL): a 2048-bit signature takes a few ms there and three times as
long in pycryptodome, and every APIv3 request is signed. The AES modes use pycryptodome (GCM
notifications are rare; ECB is v2's), which also makes them independent of the SDK's OpenSSL in the
cross-checks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from Crypto.Cipher import AES
from Crypto.Util.Padding import pad, unpad

from protocol.errors import CodedError

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
SIGNATURE_TYPE = SCHEMA  # the Wechatpay-Signature-Type header's value
# Header names as WeChat Pay sends them (HTTP header names are case-insensitive).
H_SIGNATURE, H_TIMESTAMP, H_NONCE, H_SERIAL = "Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial"
H_SIGNATURE_TYPE = "Wechatpay-Signature-Type"
APIV3_KEY_LENGTH = 32
GCM_TAG_BYTES = 16
_AUTH_PARAM = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*(?:,|$)', re.ASCII)
_AUTH_FIELDS = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")


class WeChatV3Error(CodedError, ValueError):
    """Bytes or headers that are not what APIv3 sends (a bad Authorization header, a resource that does not open)."""

    code = "wechat_v3"


class ResourceError(WeChatV3Error):
    """An AEAD_AES_256_GCM resource that does not open: not base64, too short, wrong key, altered bytes."""

    code = "wechat_v3_resource"


def request_message(method: str, url: str, timestamp: str, nonce: str, body: str) -> str:
    """The exact string a request signature covers; `url` is the path with its query, no host."""
    return f"{method}\n{url}\n{timestamp}\n{nonce}\n{body}\n"


def response_message(timestamp: str, nonce: str, body: str) -> str:
    """The exact string the platform's signature of a reply or a notification covers."""
    return f"{timestamp}\n{nonce}\n{body}\n"


PrivateKey = rsa.RSAPrivateKey
PublicKey = rsa.RSAPublicKey


def rsa_sign(message: str, private_key: PrivateKey) -> str:
    """SHA256 with RSA (PKCS#1 v1.5), base64: the signature of requests and of the platform's replies."""
    return base64.b64encode(private_key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def rsa_verify(message: str, signature_b64: str, public_key: PublicKey) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(signature, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Authorization:
    mchid: str
    nonce_str: str
    signature: str
    timestamp: str
    serial_no: str

    def header(self) -> str:
        return (f'{SCHEMA} mchid="{self.mchid}",nonce_str="{self.nonce_str}",signature="{self.signature}",'
                f'timestamp="{self.timestamp}",serial_no="{self.serial_no}"')


def authorization(*, method: str, url: str, body: str, mchid: str, serial_no: str, private_key: PrivateKey,
                  timestamp: str, nonce: str) -> Authorization:
    signature = rsa_sign(request_message(method, url, timestamp, nonce, body), private_key)
    return Authorization(mchid, nonce, signature, timestamp, serial_no)


def parse_authorization(header: str) -> Authorization:
    """The five parameters of an Authorization header; WeChatV3Error when it is not exactly that."""
    if not isinstance(header, str) or not header.startswith(SCHEMA + " "):
        raise WeChatV3Error(f"Authorization must start with {SCHEMA}")
    rest = header[len(SCHEMA) + 1:]
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _AUTH_PARAM.match(rest, pos)
        if match is None or match.end() == pos:
            raise WeChatV3Error("Authorization parameters must be name=\"value\" separated by commas")
        name, value = match.group(1), match.group(2)
        if name in params:
            raise WeChatV3Error(f"Authorization has {name} twice")
        params[name] = value
        pos = match.end()
    missing = [f for f in _AUTH_FIELDS if not params.get(f)]
    if missing:
        raise WeChatV3Error(f"Authorization lacks {', '.join(missing)}")
    return Authorization(*(params[f] for f in _AUTH_FIELDS))


# --- keys ------------------------------------------------------------------------------------

def load_private_key(text: str) -> PrivateKey:
    """A PEM private key (apiclient_key.pem, PKCS#8 or PKCS#1)."""
    if "PRIVATE KEY" not in text:
        raise WeChatV3Error("not a PEM private key; the merchant's API certificate private key (apiclient_key.pem) is needed to sign")
    try:
        key = serialization.load_pem_private_key(text.strip().encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise WeChatV3Error(f"not an RSA private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise WeChatV3Error("the key is not an RSA key")
    return key


def load_public_key(text: str) -> PublicKey:
    """A PEM public key (the platform public key, pub_key.pem) or an X.509 certificate (a platform certificate)."""
    key: object
    try:
        data = text.strip().encode("ascii")
        if b"BEGIN CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise WeChatV3Error(f"not an RSA public key or certificate: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise WeChatV3Error("the key is not an RSA key")
    return key


def certificate_serial(pem: str) -> str:
    """The serial number of a PEM certificate as WeChat Pay writes it (uppercase hex)."""
    try:
        cert = x509.load_pem_x509_certificate(pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise WeChatV3Error(f"not a PEM certificate: {exc}") from None
    return format(cert.serial_number, "X")


# --- notification encryptions ----------------------------------------------------------------

def _apiv3_key(key: str) -> bytes:
    raw = key.encode("utf-8")
    if len(raw) != APIV3_KEY_LENGTH:
        raise WeChatV3Error(f"the APIv3 key must be {APIV3_KEY_LENGTH} bytes")
    return raw


def aead_encrypt(apiv3_key: str, nonce: str, associated_data: str, plaintext: bytes) -> str:
    cipher = AES.new(_apiv3_key(apiv3_key), AES.MODE_GCM, nonce=nonce.encode("utf-8"), mac_len=GCM_TAG_BYTES)
    cipher.update(associated_data.encode("utf-8"))
    ciphertext, tag = cipher.encrypt_and_digest(plaintext)
    return base64.b64encode(ciphertext + tag).decode("ascii")


def aead_decrypt(apiv3_key: str, nonce: str, associated_data: str, ciphertext_b64: str) -> bytes:
    """Open an AEAD_AES_256_GCM resource; ResourceError (code wechat_v3_resource) when it does not open
    (wrong key, altered bytes or tag, another nonce or associated data)."""
    try:
        data = base64.b64decode(ciphertext_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ResourceError("the resource ciphertext is not base64") from None
    if len(data) < GCM_TAG_BYTES:
        raise ResourceError("the resource ciphertext is too short")
    key = _apiv3_key(apiv3_key)
    try:
        if not nonce:
            raise ValueError("empty nonce")
        cipher = AES.new(key, AES.MODE_GCM, nonce=nonce.encode("utf-8"), mac_len=GCM_TAG_BYTES)
        cipher.update(associated_data.encode("utf-8"))
        return cipher.decrypt_and_verify(data[:-GCM_TAG_BYTES], data[-GCM_TAG_BYTES:])
    except (ValueError, UnicodeEncodeError):
        raise ResourceError("the resource does not open with this APIv3 key (wrong key, or altered)") from None


def _req_info_key(api_key: str) -> bytes:
    return hashlib.md5(api_key.encode("utf-8")).hexdigest().encode("ascii")  # 32 lowercase hex digits: AES-256


def req_info_encrypt(api_key: str, plaintext: bytes) -> str:
    return base64.b64encode(AES.new(_req_info_key(api_key), AES.MODE_ECB).encrypt(pad(plaintext, AES.block_size))).decode("ascii")


def req_info_decrypt(api_key: str, req_info_b64: str) -> bytes:
    """Open a v2 refund notification's req_info; WeChatV3Error when it does not (wrong key, altered)."""
    try:
        data = base64.b64decode(req_info_b64, validate=True)
    except (binascii.Error, ValueError):
        raise WeChatV3Error("req_info is not base64") from None
    if not data or len(data) % AES.block_size:
        raise WeChatV3Error("req_info is not a whole number of AES blocks")
    try:
        return unpad(AES.new(_req_info_key(api_key), AES.MODE_ECB).decrypt(data), AES.block_size)
    except ValueError:
        raise WeChatV3Error("req_info does not open with this API key (bad padding)") from None
