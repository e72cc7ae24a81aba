"""Alipay OpenAPI wire format: RSA2 signatures and signed JSON replies. Pure, no I/O.

Request signing (Alipay "自行实现签名"): every parameter except `sign` whose value is not empty,
sorted by name (ASCII), joined as `k=v` with `&` (raw values, not URL-encoded), then RSA PKCS#1 v1.5
over SHA-256 with the app's private key ("RSA2"), base64.

Reply verification: a reply is `{"<method_with_underscores>_response": {...}, "sign": "..."}` and
the signature covers the exact text of the response node as it appears in the reply bytes, so the
node is cut out of the raw text, never re-serialised (re-serialising changes spacing, key order or
escapes and the signature no longer matches, or worse, matches something else). Duplicate keys
anywhere are refused: two parsers could otherwise verify one node and read another.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from dataclasses import dataclass
from typing import Mapping

from Crypto.PublicKey import RSA
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from protocol.errors import CodedError, ProtocolError
from protocol.strictjson import loads_object

MAX_REPLY_CHARS = 256 * 1024
ERROR_NODE = "error_response"
_B64 = re.compile(r"[A-Za-z0-9+/=\s]+", re.ASCII)


class AlipayReplyError(CodedError, ValueError):
    """The bytes are not a signed Alipay reply we can read."""

    code = "alipay_reply"


def sign_content(params: Mapping[str, str]) -> str:
    return "&".join(f"{name}={params[name]}" for name in sorted(params) if name != "sign" and params[name] != "")


def notify_sign_content(params: Mapping[str, str]) -> str:
    """What an async notification's signature covers: every parameter but `sign` and `sign_type`
    (unlike a request, where sign_type is signed), empty ones left out, sorted, raw values `&`-joined."""
    return "&".join(f"{name}={params[name]}" for name in sorted(params) if name not in ("sign", "sign_type") and params[name] != "")


def rsa2_sign(content: str, private_key: RSA.RsaKey) -> str:
    signature = _openssl_private(private_key.n, private_key.e, private_key.d, private_key.p, private_key.q).sign(
        content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa2_verify(content: bytes, signature_b64: str, public_key: RSA.RsaKey) -> bool:
    """True only for a valid RSA2 signature of `content`; anything malformed is simply False."""
    if not isinstance(signature_b64, str) or not _B64.fullmatch(signature_b64):
        return False
    try:
        signature = base64.b64decode("".join(signature_b64.split()), validate=True)
        _openssl_public(public_key.n, public_key.e).verify(signature, content, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError, binascii.Error):
        return False
    return True


# The keys are read (PEM, PKCS#1 or #8, Alipay's bare base64) and held as pycryptodome keys; the
# arithmetic is OpenSSL's (the `cryptography` package, as WeChat Pay APIv3's signatures): an RSA-2048
# signature costs ~0.8 ms of CPU there, ~1.6 ms in pycryptodome, at every Alipay call of the gateway.
@functools.lru_cache(maxsize=64)
def _openssl_private(n: int, e: int, d: int, p: int, q: int) -> rsa.RSAPrivateKey:
    return rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
                                 rsa.RSAPublicNumbers(e, n)).private_key()


@functools.lru_cache(maxsize=256)
def _openssl_public(n: int, e: int) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(e, n).public_key()


def load_private_key(text: str) -> RSA.RsaKey:
    """A PEM (PKCS#1 or PKCS#8) or the bare base64 body Alipay's key tool prints."""
    key = _import_key(text, "PRIVATE KEY")
    if not key.has_private():
        raise ValueError("this is a public key; the app's private key is needed to sign requests")
    return key


def load_public_key(text: str) -> RSA.RsaKey:
    key = _import_key(text, "PUBLIC KEY")
    return key.public_key()


def _import_key(text: str, kind: str) -> RSA.RsaKey:
    body = text.strip()
    if not body.startswith("-----BEGIN"):
        body = f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"
    try:
        return RSA.import_key(body)
    except (ValueError, IndexError, TypeError) as exc:
        raise ValueError(f"not an RSA {kind.lower()}: {exc}") from None


@dataclass(frozen=True, slots=True)
class SignedReply:
    node_name: str  # the node found: the method's own, or error_response
    node: dict[str, object]  # its fields
    raw_node: str  # its exact text, what the signature covers
    sign: str | None
    cert_sn: str | None = None  # certificate mode: `alipay_cert_sn`, which Alipay certificate signed it


def response_node_name(method: str) -> str:
    return method.replace(".", "_") + "_response"


def parse_reply(data: bytes, method: str) -> SignedReply:
    """Find the method's response node (or `error_response`) and the signature in a reply."""
    if not isinstance(data, (bytes, bytearray)):
        raise AlipayReplyError(f"expected bytes, got {type(data).__name__}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AlipayReplyError(f"reply is not UTF-8 (byte {exc.start})") from None
    if len(text) > MAX_REPLY_CHARS:
        raise AlipayReplyError("reply too large")
    members = _top_level_members(text)
    sign_raw = members.get("sign")
    signature: str | None = None
    if sign_raw is not None:
        value = json.loads(sign_raw)
        if not isinstance(value, str):
            raise AlipayReplyError("sign is not a string")
        signature = value
    cert_sn: str | None = None
    if "alipay_cert_sn" in members:
        sn = json.loads(members["alipay_cert_sn"])
        if not isinstance(sn, str):
            raise AlipayReplyError("alipay_cert_sn is not a string")
        cert_sn = sn
    for name in (response_node_name(method), ERROR_NODE):
        raw = members.get(name)
        if raw is None:
            continue
        try:
            node = loads_object(raw, what=name)
        except (ProtocolError, RecursionError) as exc:
            raise AlipayReplyError(f"{name} is not a JSON object: {exc}") from None
        return SignedReply(name, node, raw, signature, cert_sn)
    raise AlipayReplyError(f"reply has no {response_node_name(method)} node")


def _top_level_members(text: str) -> dict[str, str]:
    """{key: raw text of its value} for the top-level object, keeping each value's exact text."""
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "{":
        raise AlipayReplyError("reply is not a JSON object")
    i = _skip_ws(text, i + 1)
    members: dict[str, str] = {}
    if i < len(text) and text[i] == "}":
        return _only_ws_after(text, i + 1, members)
    while True:
        if i >= len(text) or text[i] != '"':
            raise AlipayReplyError(f"expected a key at offset {i}")
        key, i = _decode(decoder, text, i)
        i = _skip_ws(text, i)
        if i >= len(text) or text[i] != ":":
            raise AlipayReplyError(f"expected ':' at offset {i}")
        start = _skip_ws(text, i + 1)
        _value, end = _decode(decoder, text, start)
        if not isinstance(key, str):
            raise AlipayReplyError("key is not a string")
        if key in members:
            raise AlipayReplyError(f"duplicate key {key[:64]!r}")
        members[key] = text[start:end]
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if i < len(text) and text[i] == "}":
            return _only_ws_after(text, i + 1, members)
        raise AlipayReplyError(f"expected ',' or '}}' at offset {i}")


def _decode(decoder: json.JSONDecoder, text: str, i: int) -> tuple[object, int]:
    try:
        return decoder.raw_decode(text, i)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise AlipayReplyError(f"malformed JSON at offset {i}: {exc}") from None


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _only_ws_after(text: str, i: int, members: dict[str, str]) -> dict[str, str]:
    if _skip_ws(text, i) != len(text):
        raise AlipayReplyError("data after the JSON object")
    return members
