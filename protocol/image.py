"""Signed POS images: byte layout, strict parsing, signature and acceptance checks (pure).

An image is one file (docs/field-engineer.md, "Image format"):

    offset      size  field
    0           8     magic "HISPIMG1"
    8           4     M = manifest length, big-endian, 2..MAX_MANIFEST
    12          M     manifest: compact UTF-8 JSON object (below)
    12+M        64    Ed25519 signature (RFC 8032) of SIGN_CONTEXT || bytes 0..12+M-1
    76+M        P     payload: the parts, in manifest order, back to back (P = payload_size)

    manifest {"format": "his-pos-image-v1", "model": "HP-S1", "version": "1.4.2",
              "security_counter": 7, "payload_size": P, "payload_sha256": "<hex>",
              "parts": [{"kind": "app"|"config", "size": n, "sha256": "<hex>"}, ...],
              "build_time": "2026-11-23T10:00:00Z", "key_id": "release-2026",
              "device_id": "D-0001" (optional; required when signed by an override key)}

The header (magic..signature) is what a flash BEGIN carries, so the device checks who signed the
image, for which model and at which security level before it accepts a byte of payload. The
signature covers the manifest, and the manifest pins the payload by SHA-256, so one signature
check plus one hash check authenticates the whole file.

Every refusal is a protocol.flash.FlashError with a specific code (bad_magic, truncated,
bad_manifest, too_large, trailing_data, hash_mismatch, bad_signature, unknown_signer, wrong_model,
wrong_device, downgrade...). Trust anchors are protocol.trust; building and signing an image is the
field engineer's tool's business (posflash.image_build), which holds the private keys.
"""

from __future__ import annotations

import enum
import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Iterable, Mapping

from protocol import signing
from protocol.errors import ProtocolError
from protocol.flash import FlashCode, FlashError
from protocol.ids import is_valid_id
from protocol.strictjson import loads_object

from protocol.trust import KeyRole, TrustedKey, TrustStore

MAGIC = b"HISPIMG1"
FORMAT = "his-pos-image-v1"
SIGN_CONTEXT = b"his-smartpos image v1\x00"
PREFIX_SIZE = len(MAGIC) + 4
MAX_MANIFEST = 16 * 1024
MAX_PAYLOAD = 64 * 1024 * 1024
MAX_COUNTER = 2**31 - 1
LENGTH_PREFIX = struct.Struct(">I")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,31}", re.ASCII)
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z", re.ASCII)
_MANIFEST_FIELDS = {"format", "model", "version", "security_counter", "payload_size", "payload_sha256",
                    "parts", "build_time", "key_id", "device_id"}


class PartKind(str, enum.Enum):
    APP = "app"  # the application bundle (a zip the device imports from)
    CONFIG = "config"  # the his-device-config-v1 document (terminal.config)


@dataclass(frozen=True, slots=True)
class Part:
    kind: PartKind
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    model: str
    version: str
    security_counter: int
    payload_size: int
    payload_sha256: str
    parts: tuple[Part, ...]
    build_time: str
    key_id: str
    device_id: str | None = None

    @property
    def kinds(self) -> tuple[PartKind, ...]:
        return tuple(p.kind for p in self.parts)

    def to_json_obj(self) -> dict[str, object]:
        obj: dict[str, object] = {
            "format": FORMAT, "model": self.model, "version": self.version,
            "security_counter": self.security_counter, "payload_size": self.payload_size,
            "payload_sha256": self.payload_sha256,
            "parts": [{"kind": p.kind.value, "size": p.size, "sha256": p.sha256} for p in self.parts],
            "build_time": self.build_time, "key_id": self.key_id,
        }
        if self.device_id is not None:
            obj["device_id"] = self.device_id
        return obj


@dataclass(frozen=True, slots=True)
class ImageHeader:
    manifest: Manifest
    signed: bytes  # bytes 0..12+M: what the signature covers (after SIGN_CONTEXT)
    signature: bytes

    @property
    def raw(self) -> bytes:
        """The header bytes as in the file (what BEGIN carries)."""
        return self.signed + self.signature

    @property
    def size(self) -> int:
        return len(self.signed) + signing.SIGNATURE_SIZE

    @property
    def digest(self) -> str:
        """Names this exact image: equal digests mean the same manifest, signature and payload hash."""
        return hashlib.sha256(self.raw).hexdigest()


@dataclass(frozen=True, slots=True)
class Image:
    header: ImageHeader
    payload: bytes

    @property
    def manifest(self) -> Manifest:
        return self.header.manifest

    def part(self, kind: PartKind) -> bytes | None:
        start = 0
        for p in self.manifest.parts:
            if p.kind is kind:
                return self.payload[start : start + p.size]
            start += p.size
        return None


def _fail(code: FlashCode, detail: str) -> FlashError:
    return FlashError(code, detail)


# ----------------------------------------------------------------------------- parsing


def parse_header(data: bytes) -> ImageHeader:
    """Parse the header at the start of `data` (which may hold more: the payload)."""
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise _fail(FlashCode.BAD_MAGIC, "the file does not start with the image magic HISPIMG1")
    if len(data) < PREFIX_SIZE:
        raise _fail(FlashCode.TRUNCATED, f"the image ends after {len(data)} bytes, inside its header")
    (m,) = LENGTH_PREFIX.unpack_from(data, len(MAGIC))
    if not 2 <= m <= MAX_MANIFEST:
        raise _fail(FlashCode.BAD_MANIFEST, f"manifest length {m} is outside 2..{MAX_MANIFEST}")
    end = PREFIX_SIZE + m
    if len(data) < end + signing.SIGNATURE_SIZE:
        raise _fail(FlashCode.TRUNCATED, f"the image ends after {len(data)} bytes, inside its header ({end + signing.SIGNATURE_SIZE} bytes)")
    manifest = parse_manifest(bytes(data[PREFIX_SIZE:end]))
    return ImageHeader(manifest, bytes(data[:end]), bytes(data[end : end + signing.SIGNATURE_SIZE]))


def parse_image(data: bytes, *, max_payload: int = MAX_PAYLOAD) -> Image:
    """Parse a whole image file and check its payload against the manifest (not the signature)."""
    header = parse_header(data)
    m = header.manifest
    if m.payload_size > max_payload:
        raise _fail(FlashCode.TOO_LARGE, f"payload of {m.payload_size} bytes exceeds the {max_payload} this device holds")
    expected = header.size + m.payload_size
    if len(data) < expected:
        raise _fail(FlashCode.TRUNCATED, f"the image is {len(data)} bytes; its manifest says {expected}")
    if len(data) > expected:
        raise _fail(FlashCode.TRAILING_DATA, f"the image is {len(data)} bytes; its manifest says {expected}")
    payload = bytes(data[header.size :])
    check_payload(m, payload)
    return Image(header, payload)


def check_payload(m: Manifest, payload: bytes) -> None:
    """The payload's size and SHA-256 (whole and per part) must be the manifest's."""
    if len(payload) != m.payload_size:
        raise _fail(FlashCode.TRUNCATED, f"payload is {len(payload)} bytes; the manifest says {m.payload_size}")
    if hashlib.sha256(payload).hexdigest() != m.payload_sha256:
        raise _fail(FlashCode.HASH_MISMATCH, "payload SHA-256 differs from the signed manifest")
    start = 0
    for p in m.parts:
        if hashlib.sha256(payload[start : start + p.size]).hexdigest() != p.sha256:
            raise _fail(FlashCode.HASH_MISMATCH, f"part {p.kind.value} SHA-256 differs from the signed manifest")
        start += p.size


def parse_manifest(raw: bytes) -> Manifest:
    try:
        obj = loads_object(raw, what="manifest")
    except ProtocolError as exc:
        raise _fail(FlashCode.BAD_MANIFEST, exc.message) from None
    fmt = obj.get("format")
    if fmt != FORMAT:
        if isinstance(fmt, str) and fmt.startswith("his-pos-image-"):
            raise _fail(FlashCode.UNSUPPORTED_FORMAT, f"image format {fmt!r} is not {FORMAT!r}")
        raise _fail(FlashCode.BAD_MANIFEST, f"manifest.format must be {FORMAT!r}")
    unknown = sorted(set(obj) - _MANIFEST_FIELDS)
    if unknown:
        raise _fail(FlashCode.BAD_MANIFEST, f"manifest has unknown fields: {', '.join(unknown)}")

    def text(name: str, pattern: re.Pattern[str], what: str) -> str:
        value = obj.get(name)
        if not isinstance(value, str) or pattern.fullmatch(value) is None:
            raise _fail(FlashCode.BAD_MANIFEST, f"manifest.{name} must be {what}")
        return value

    def integer(name: str, maximum: int) -> int:
        value = obj.get(name)
        if type(value) is not int or not 0 <= value <= maximum:
            raise _fail(FlashCode.BAD_MANIFEST, f"manifest.{name} must be an integer in 0..{maximum}")
        return value

    model = text("model", _MODEL, "a model name ([A-Za-z0-9._-], up to 64)")
    version = text("version", _VERSION, "a version such as 1.4.2 (up to 32 characters)")
    counter = integer("security_counter", MAX_COUNTER)
    size = integer("payload_size", MAX_PAYLOAD)
    sha = text("payload_sha256", _HEX64, "64 lowercase hex digits")
    build_time = text("build_time", _TIME, "UTC time as YYYY-MM-DDTHH:MM:SSZ")
    key_id = obj.get("key_id")
    if not is_valid_id(key_id):
        raise _fail(FlashCode.BAD_MANIFEST, "manifest.key_id must match [A-Za-z0-9_-]{1,64}")
    device_id = obj.get("device_id")
    if device_id is not None and not is_valid_id(device_id):
        raise _fail(FlashCode.BAD_MANIFEST, "manifest.device_id must match [A-Za-z0-9_-]{1,64}")
    parts = _parse_parts(obj.get("parts"), size)
    return Manifest(model, version, counter, size, sha, parts, build_time, key_id, device_id)


def _parse_parts(raw: object, payload_size: int) -> tuple[Part, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= len(PartKind):
        raise _fail(FlashCode.BAD_MANIFEST, f"manifest.parts must list 1..{len(PartKind)} parts")
    parts: list[Part] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or set(entry) != {"kind", "size", "sha256"}:
            raise _fail(FlashCode.BAD_MANIFEST, f"manifest.parts[{i}] must be an object with kind, size and sha256")
        try:
            kind = PartKind(entry["kind"])
        except ValueError:
            raise _fail(FlashCode.BAD_MANIFEST, f"manifest.parts[{i}].kind must be app or config") from None
        size, sha = entry["size"], entry["sha256"]
        if type(size) is not int or not 0 <= size <= MAX_PAYLOAD:
            raise _fail(FlashCode.BAD_MANIFEST, f"manifest.parts[{i}].size must be an integer in 0..{MAX_PAYLOAD}")
        if not isinstance(sha, str) or _HEX64.fullmatch(sha) is None:
            raise _fail(FlashCode.BAD_MANIFEST, f"manifest.parts[{i}].sha256 must be 64 lowercase hex digits")
        if any(p.kind is kind for p in parts):
            raise _fail(FlashCode.BAD_MANIFEST, f"manifest.parts lists {kind.value} twice")
        parts.append(Part(kind, size, sha))
    if sum(p.size for p in parts) != payload_size:
        raise _fail(FlashCode.BAD_MANIFEST, "manifest.parts sizes do not add up to payload_size")
    return tuple(parts)


# ----------------------------------------------------------------------------- trust and acceptance


def verify_signature(header: ImageHeader, trust: TrustStore) -> TrustedKey:
    """The trusted key that signed this header; unknown_signer or bad_signature otherwise."""
    key = trust.get(header.manifest.key_id)
    if key is None:
        known = ", ".join(trust.key_ids()) or "none"
        raise _fail(FlashCode.UNKNOWN_SIGNER, f"signing key {header.manifest.key_id!r} is not trusted here (trusted: {known})")
    try:
        signing.verify(key.public, SIGN_CONTEXT + header.signed, header.signature)
    except signing.SignatureError:
        raise _fail(FlashCode.BAD_SIGNATURE, f"the signature does not verify with key {key.key_id!r}") from None
    return key


def check_acceptable(header: ImageHeader, signer: TrustedKey, *, model: str, device_id: str,
                     min_counters: Mapping[str, int], kinds: Iterable[str] | None = None) -> None:
    """May a device of `model`/`device_id`, at these minimum counters, take this image?

    A security counter below the device's minimum for any part the image carries (or, with `kinds`,
    for the parts the device uses from it) is a downgrade: refused unless the image is signed by an
    engineer override key and bound to this device.
    """
    m = header.manifest
    if m.model != model:
        raise _fail(FlashCode.WRONG_MODEL, f"the image is for model {m.model}; this device is a {model}")
    if m.device_id is not None and m.device_id != device_id:
        raise _fail(FlashCode.WRONG_DEVICE, f"the image is for device {m.device_id}; this is {device_id}")
    if signer.role is KeyRole.OVERRIDE:
        if m.device_id is None:
            raise _fail(FlashCode.WRONG_DEVICE, "an engineer override image must name the one device it is for")
        return
    for kind in [k.value for k in m.kinds] if kinds is None else kinds:
        minimum = min_counters.get(kind, 0)
        if m.security_counter < minimum:
            raise _fail(FlashCode.DOWNGRADE,
                        f"{kind} security counter {m.security_counter} is below this device's minimum {minimum} "
                        "(only an image signed with the engineer override key may go lower)")


def describe(header: ImageHeader) -> dict[str, object]:
    """What `pos-flash inspect-image` shows: the manifest, never payload contents."""
    m = header.manifest
    return {
        "format": FORMAT, "model": m.model, "version": m.version, "security_counter": m.security_counter,
        "parts": [{"kind": p.kind.value, "size": p.size, "sha256": p.sha256} for p in m.parts],
        "payload_size": m.payload_size, "payload_sha256": m.payload_sha256, "build_time": m.build_time,
        "key_id": m.key_id, "device_id": m.device_id, "header_size": header.size, "image_digest": header.digest,
    }
