"""Configuration secrets encrypted to one device: the configuration part of an image, sealed.

A configuration (his-device-config-v1) holds the shared HIS keys and the channel keys. In an image it
travels sealed to the device it is for, so neither the image file, nor the cable during a flash, nor
a copy of the device's flash slots shows them to anyone but that device:

    {"format": "his-sealed-config-v1", "device_id": "...", "epk": "<hex, 32>", "ct": "<base64>"}

    shared = X25519(ephemeral private, device config key)       (a fresh ephemeral key per image)
    key    = HKDF-SHA256(shared, salt = epk | device config key, info = "his-smartpos config v1")
    ct     = ChaCha20-Poly1305(key, nonce = 12 zero bytes, plaintext = the document,
                               associated data = format | 0 | device_id | 0 | epk)

The nonce can be constant because every key is used once (a new ephemeral key per seal). The device
config key is an X25519 key of its own, made on the device beside its Ed25519 device key at
provisioning (terminal.identity); the two are never converted into each other. The image signature
(protocol.image) still covers the sealed bytes, so who made the configuration is proven as before.
Pure: randomness comes in as a callable.
"""

from __future__ import annotations

import base64
import binascii
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.errors import ProtocolError
from protocol.flash import FlashCode, FlashError
from protocol.strictjson import dumps_compact, loads_object

SEALED_FORMAT = "his-sealed-config-v1"
KEY_SIZE = 32
_INFO = b"his-smartpos config v1"
_NONCE = bytes(12)


def config_public_key(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def is_sealed(data: bytes) -> bool:
    return data.lstrip()[:1] == b"{" and SEALED_FORMAT.encode() in data[:200]


def _key(shared: bytes, epk: bytes, device_public: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=epk + device_public, info=_INFO).derive(shared)


def _aad(device_id: str, epk: bytes) -> bytes:
    return SEALED_FORMAT.encode() + b"\x00" + device_id.encode() + b"\x00" + epk


def seal_config(document: bytes, *, device_id: str, device_public: bytes, random: Callable[[int], bytes]) -> bytes:
    if len(device_public) != KEY_SIZE:
        raise FlashError(FlashCode.BAD_KEY, f"device {device_id}: its config_key must be {KEY_SIZE} bytes")
    eph = X25519PrivateKey.from_private_bytes(random(KEY_SIZE))
    epk = eph.public_key().public_bytes_raw()
    shared = eph.exchange(X25519PublicKey.from_public_bytes(device_public))
    ct = ChaCha20Poly1305(_key(shared, epk, device_public)).encrypt(_NONCE, document, _aad(device_id, epk))
    return dumps_compact({"format": SEALED_FORMAT, "device_id": device_id, "epk": epk.hex(),
                          "ct": base64.b64encode(ct).decode("ascii")}) + b"\n"


def open_config(data: bytes, *, device_id: str, device_private: bytes) -> bytes:
    """The plaintext document; FlashError (bad_part / wrong_device) when it is not sealed to this device."""
    try:
        obj = loads_object(data, what="sealed configuration")
    except ProtocolError as exc:
        raise FlashError(FlashCode.BAD_PART, exc.message) from None
    if obj.get("format") != SEALED_FORMAT:
        raise FlashError(FlashCode.BAD_PART, "the configuration is not sealed to this device "
                         "(build it with pos-flash provision config, which encrypts it to the device's config_key)")
    if obj.get("device_id") != device_id:
        raise FlashError(FlashCode.WRONG_DEVICE, f"the configuration is sealed to device {obj.get('device_id')}; this is {device_id}")
    try:
        epk = bytes.fromhex(str(obj.get("epk")))
        ct = base64.b64decode(str(obj.get("ct")), validate=True)
        if len(epk) != KEY_SIZE:
            raise ValueError
    except (ValueError, binascii.Error):
        raise FlashError(FlashCode.BAD_PART, "the sealed configuration is malformed (epk, ct)") from None
    private = X25519PrivateKey.from_private_bytes(device_private)
    public = private.public_key().public_bytes_raw()
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(epk))
        return ChaCha20Poly1305(_key(shared, epk, public)).decrypt(_NONCE, ct, _aad(device_id, epk))
    except (InvalidTag, ValueError):
        raise FlashError(FlashCode.BAD_PART, "the configuration does not decrypt with this device's config key "
                         "(sealed to an older key of this device?)") from None
