"""Requests from a POS to the payment gateway, signed by the device key: pure, no I/O.

The device signs, with its Ed25519 key, the bytes

    "his-gateway-request-v1\\n" METHOD "\\n" PATH "\\n" device_id "\\n" ts "\\n" nonce "\\n" firmware "\\n" hex(SHA-256(body))

and sends them as headers beside the body:

    X-Device-Id, X-Timestamp (unix s), X-Nonce (base64 of 16 random bytes), X-Firmware, X-Signature (base64)

Domain separation (HIS interface 1.1 A): the device key also signs results, over `AAD || CT`
whose AAD starts with "1|result|". This context starts with "his-gateway-request-v1", so a request
signature can never be presented as a result signature or the other way round.

`verify_request` checks shape, signature and clock; the replay rule (a nonce is accepted once per
device within the clock window) needs storage and is the receiver's (`gateway.service`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Mapping

from protocol.errors import CodedError
from protocol.ids import is_valid_id
from protocol.signing import SignatureError, sign, verify

CONTEXT = b"his-gateway-request-v1"
NONCE_SIZE = 16
# Requests older or newer than this (device clock vs gateway clock) are refused; the gateway keeps
# each nonce at least twice this long, so a replay inside the window is always caught.
MAX_SKEW_S = 300
MAX_FIRMWARE_LEN = 64  # as the link HELLO's firmware field

HEADER_DEVICE = "X-Device-Id"
HEADER_TS = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_FIRMWARE = "X-Firmware"
HEADER_SIGNATURE = "X-Signature"


class RequestAuthError(CodedError):
    """`code` is one of: bad_request_auth (missing/malformed headers), bad_signature, clock_skew."""

    code = "request_auth"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    device_id: str
    ts: int
    nonce: bytes
    firmware: str
    signature: bytes


def signing_bytes(method: str, path: str, device_id: str, ts: int, nonce: bytes, firmware: str, body: bytes) -> bytes:
    fields = (method.upper(), path, device_id, str(ts), base64.b64encode(nonce).decode("ascii"), firmware,
              hashlib.sha256(body).hexdigest())
    return CONTEXT + b"\n" + "\n".join(fields).encode("utf-8")


def sign_request(seed: bytes, *, method: str, path: str, device_id: str, ts: int, nonce: bytes, firmware: str,
                 body: bytes) -> dict[str, str]:
    """The headers that authenticate `body` as sent by `device_id` (the caller supplies a fresh nonce)."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"the nonce must be {NONCE_SIZE} random bytes")
    signature = sign(seed, signing_bytes(method, path, device_id, ts, nonce, firmware, body))
    return {
        HEADER_DEVICE: device_id,
        HEADER_TS: str(ts),
        HEADER_NONCE: base64.b64encode(nonce).decode("ascii"),
        HEADER_FIRMWARE: firmware,
        HEADER_SIGNATURE: base64.b64encode(signature).decode("ascii"),
    }


def _b64(value: str, name: str) -> bytes:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise RequestAuthError("bad_request_auth", f"{name} is not standard base64") from None
    return raw


def parse_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """Read the authentication headers (case-insensitive mapping, as http.server gives)."""
    def get(name: str) -> str:
        value = headers.get(name)
        if not value:
            raise RequestAuthError("bad_request_auth", f"the {name} header is missing")
        return value

    device_id = get(HEADER_DEVICE)
    if not is_valid_id(device_id):
        raise RequestAuthError("bad_request_auth", f"{HEADER_DEVICE} must match [A-Za-z0-9_-]{{1,64}}")
    ts_text = get(HEADER_TS)
    if not ts_text.isascii() or not ts_text.isdigit() or len(ts_text) > 12:
        raise RequestAuthError("bad_request_auth", f"{HEADER_TS} must be unix seconds")
    nonce = _b64(get(HEADER_NONCE), HEADER_NONCE)
    if len(nonce) != NONCE_SIZE:
        raise RequestAuthError("bad_request_auth", f"{HEADER_NONCE} must be {NONCE_SIZE} bytes")
    firmware = headers.get(HEADER_FIRMWARE) or ""
    if len(firmware) > MAX_FIRMWARE_LEN or not firmware.isprintable() or not firmware.isascii():
        raise RequestAuthError("bad_request_auth", f"{HEADER_FIRMWARE} must be printable ASCII of at most {MAX_FIRMWARE_LEN} characters")
    signature = _b64(get(HEADER_SIGNATURE), HEADER_SIGNATURE)
    return SignedHeaders(device_id, int(ts_text), nonce, firmware, signature)


def verify_request(signed: SignedHeaders, public_key: bytes, *, method: str, path: str, body: bytes, now: float,
                   max_skew_s: int = MAX_SKEW_S) -> None:
    """Signature first (only the key holder learns about the clock), then the clock window."""
    try:
        verify(public_key, signing_bytes(method, path, signed.device_id, signed.ts, signed.nonce, signed.firmware, body),
               signed.signature)
    except SignatureError:
        raise RequestAuthError("bad_signature", "the request signature does not verify with this device's key") from None
    if abs(signed.ts - now) > max_skew_s:
        raise RequestAuthError("clock_skew", f"the device clock is {int(signed.ts - now):+d} s off the gateway's; "
                                             f"at most {max_skew_s} s is accepted: set the device's time")
