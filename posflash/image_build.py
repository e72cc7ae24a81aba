"""Building a signed POS image: what the release manager's or field engineer's PC does with a private
signing key (posflash.signing_keys). The byte layout and every check a device makes are
protocol.image; an image is round-tripped through that parser before it is signed, so the tool never
signs what a device would refuse.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

from protocol import signing
from protocol.flash import FlashCode, FlashError
from protocol.image import LENGTH_PREFIX, MAGIC, MAX_PAYLOAD, SIGN_CONTEXT, Manifest, Part, PartKind, parse_manifest
from protocol.strictjson import dumps_compact
from protocol.trust import KeyRole

from posflash.signing_keys import SigningKey


def build_image(parts: Mapping[PartKind, bytes], *, model: str, version: str, security_counter: int,
                key: SigningKey, build_time: str, device_id: str | None = None) -> bytes:
    """Sign `parts` (app first, then config) into one image file's bytes."""
    if not parts:
        raise FlashError(FlashCode.BAD_INPUT, "an image needs an application bundle, a configuration, or both")
    if key.role is KeyRole.OVERRIDE and device_id is None:
        raise FlashError(FlashCode.BAD_INPUT, "an engineer override image must name the one device it is for (--device-id)")
    ordered = [(k, parts[k]) for k in (PartKind.APP, PartKind.CONFIG) if k in parts]
    payload = b"".join(data for _, data in ordered)
    manifest = Manifest(
        model=model, version=version, security_counter=security_counter, payload_size=len(payload),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        parts=tuple(Part(k, len(d), hashlib.sha256(d).hexdigest()) for k, d in ordered),
        build_time=build_time, key_id=key.key_id, device_id=device_id,
    )
    # Round-trip through the parser so we never sign what a device would refuse.
    manifest_bytes = dumps_compact(manifest.to_json_obj())
    parse_manifest(manifest_bytes)
    if len(payload) > MAX_PAYLOAD:
        raise FlashError(FlashCode.TOO_LARGE, f"payload of {len(payload)} bytes exceeds the format's {MAX_PAYLOAD}")
    signed = MAGIC + LENGTH_PREFIX.pack(len(manifest_bytes)) + manifest_bytes
    return signed + signing.sign(key.seed, SIGN_CONTEXT + signed) + payload
