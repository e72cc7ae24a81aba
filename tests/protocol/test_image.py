"""Signed images and signing keys: building, strict parsing, and every refusal with its code.

The builders at the top are shared with the other flashing tests (test_bootloader, test_flasher,
test_provision) so they all flash the same kind of images.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import signing
from protocol.flash import FlashCode, FlashError

from protocol.image import MAGIC, PartKind, check_acceptable, describe, parse_header, parse_image, verify_signature
from posflash.image_build import build_image
from protocol.trust import KeyRole, TrustStore, parse_trust, format_trust
from terminal.secure_files import check_private_mode, write_new_file
from posflash.signing_keys import format_private, load_public_key, load_signing_key, new_signing_key, parse_private

MODEL = "HP-S1"
DEVICE_ID = "D-SN0001"
BUILD_TIME = "2026-11-23T10:00:00Z"
RELEASE = new_signing_key("release-2026", KeyRole.RELEASE, bytes(range(32)))
OVERRIDE = new_signing_key("override-2026", KeyRole.OVERRIDE, bytes(range(1, 33)))
TRUST = TrustStore((RELEASE.trusted(), OVERRIDE.trusted()))


def app_bundle(version: str, size: int = 20_000, *, noise: bool = False) -> bytes:
    """A stored zip, as `pos-flash build --app DIR` makes; `noise` makes it incompressible."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as bundle:
        # A fixed date, as pos-flash writes (posflash/cli.py): the same bundle built twice is the same bytes,
        # whichever second each build falls in.
        stamp = (1980, 1, 1, 0, 0, 0)
        bundle.writestr(zipfile.ZipInfo("app/__init__.py", date_time=stamp), f"VERSION = {version!r}\n")
        body = os.urandom(size) if noise else (b"def handle(instruction):\n    return instruction\n" * (size // 48 + 1))[:size]
        bundle.writestr(zipfile.ZipInfo("app/main.py" if not noise else "app/blob.bin", date_time=stamp), body)
    return buf.getvalue()


def make_image(version: str = "1.0.0", counter: int = 1, *, key=RELEASE, model: str = MODEL, device_id: str | None = None,
               app: bytes | None = None, config: bytes | None = None, size: int = 20_000, noise: bool = False) -> bytes:
    parts: dict[PartKind, bytes] = {}
    if config is None or app is not None:
        parts[PartKind.APP] = app if app is not None else app_bundle(version, size, noise=noise)
    if config is not None:
        parts[PartKind.CONFIG] = config
    return build_image(parts, model=model, version=version, security_counter=counter, key=key,
                       build_time=BUILD_TIME, device_id=device_id)


def code_of(call, *args, **kwargs) -> FlashCode:
    with pytest.raises(FlashError) as info:
        call(*args, **kwargs)
    assert info.value.message  # every refusal says something
    return info.value.code


# ----------------------------------------------------------------------------- format


def test_build_then_parse_gives_back_the_parts_and_manifest():
    app = app_bundle("1.2.3")
    config = b'{"format": "his-device-config-v1"}'
    data = make_image("1.2.3", 7, app=app, config=config)
    assert data.startswith(MAGIC)
    image = parse_image(data)
    m = image.manifest
    assert (m.model, m.version, m.security_counter, m.key_id) == (MODEL, "1.2.3", 7, "release-2026")
    assert image.part(PartKind.APP) == app and image.part(PartKind.CONFIG) == config
    assert m.kinds == (PartKind.APP, PartKind.CONFIG)
    assert verify_signature(image.header, TRUST).role is KeyRole.RELEASE
    shown = describe(image.header)
    assert shown["version"] == "1.2.3" and "seed" not in str(shown)


def test_layout_is_magic_length_manifest_signature_payload():
    data = make_image()
    (m,) = struct.unpack_from(">I", data, 8)
    header = parse_header(data)
    assert header.size == 12 + m + 64 and data[12 : 12 + m].startswith(b'{"format":"his-pos-image-v1"')
    signing.verify(RELEASE.public, b"his-smartpos image v1\x00" + data[: 12 + m], data[12 + m : 12 + m + 64])


@pytest.mark.parametrize("mutate, code", [
    (lambda d: b"NOTANIMG" + d[8:], FlashCode.BAD_MAGIC),
    (lambda d: d[:5], FlashCode.TRUNCATED),
    (lambda d: d[:40], FlashCode.TRUNCATED),
    (lambda d: d[:-1], FlashCode.TRUNCATED),
    (lambda d: d + b"\x00", FlashCode.TRAILING_DATA),
    (lambda d: d[:8] + struct.pack(">I", 1) + d[12:], FlashCode.BAD_MANIFEST),
    (lambda d: d[:-100] + bytes([d[-100] ^ 1]) + d[-99:], FlashCode.HASH_MISMATCH),
])
def test_malformed_images_get_specific_codes(mutate, code):
    assert code_of(parse_image, mutate(make_image())) is code


def test_manifest_strictness():
    def with_manifest(text: bytes) -> bytes:
        signed = MAGIC + struct.pack(">I", len(text)) + text
        return signed + bytes(64)

    assert code_of(parse_header, with_manifest(b'{"format":"his-pos-image-v9"}')) is FlashCode.UNSUPPORTED_FORMAT
    assert code_of(parse_header, with_manifest(b'{"format":"his-pos-image-v1","format":"x"}')) is FlashCode.BAD_MANIFEST
    assert code_of(parse_header, with_manifest(b"[1,2]")) is FlashCode.BAD_MANIFEST
    good = parse_header(make_image()).manifest.to_json_obj()
    import json

    for field, value in [("security_counter", True), ("security_counter", -1), ("version", "1 0"), ("model", ""),
                         ("payload_sha256", "AB" * 32), ("build_time", "yesterday"), ("key_id", "a/b"), ("extra", 1),
                         ("parts", []), ("parts", [{"kind": "app", "size": 1, "sha256": "0" * 64}])]:
        bad = dict(good, **{field: value})
        assert code_of(parse_header, with_manifest(json.dumps(bad).encode())) is FlashCode.BAD_MANIFEST, field


def test_signature_checks():
    data = make_image()
    header = parse_header(data)
    assert code_of(verify_signature, header, TrustStore((OVERRIDE.trusted(),))) is FlashCode.UNKNOWN_SIGNER
    forged = data[: header.size - 1] + bytes([data[header.size - 1] ^ 0x80]) + data[header.size :]
    assert code_of(verify_signature, parse_header(forged), TRUST) is FlashCode.BAD_SIGNATURE
    # An image signed by a stranger who reuses our key id does not verify.
    stranger = new_signing_key("release-2026", KeyRole.RELEASE, os.urandom(32))
    assert code_of(verify_signature, parse_header(make_image(key=stranger)), TRUST) is FlashCode.BAD_SIGNATURE


def test_acceptance_model_device_counter_and_override():
    def accept(data: bytes, minimum: int = 5, device: str = DEVICE_ID) -> None:
        header = parse_header(data)
        check_acceptable(header, verify_signature(header, TRUST), model=MODEL, device_id=device,
                         min_counters={"app": minimum})

    accept(make_image(counter=5))
    assert code_of(accept, make_image(counter=4)) is FlashCode.DOWNGRADE
    assert code_of(accept, make_image(counter=9, model="HP-S2")) is FlashCode.WRONG_MODEL
    assert code_of(accept, make_image(counter=9, device_id="D-OTHER")) is FlashCode.WRONG_DEVICE
    accept(make_image(counter=1, key=OVERRIDE, device_id=DEVICE_ID))  # the engineer override may go down
    assert code_of(accept, make_image(counter=1, key=OVERRIDE, device_id=DEVICE_ID), device="D-OTHER") is FlashCode.WRONG_DEVICE
    # An override image must be bound to a device: the builder refuses, and so does the device.
    assert code_of(make_image, counter=1, key=OVERRIDE) is FlashCode.BAD_INPUT
    unbound = make_image(counter=1, key=new_signing_key("override-2026", KeyRole.RELEASE, bytes(range(1, 33))))
    assert code_of(accept, unbound) is FlashCode.WRONG_DEVICE


ERROR_CODES = {FlashCode.BAD_MAGIC, FlashCode.TRUNCATED, FlashCode.BAD_MANIFEST, FlashCode.UNSUPPORTED_FORMAT,
               FlashCode.TRAILING_DATA, FlashCode.HASH_MISMATCH, FlashCode.TOO_LARGE}
VALID = make_image(size=600)


def _parse_and_verify(data: bytes) -> None:
    image = parse_image(data)
    verify_signature(image.header, TRUST)


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash_the_parser(data):
    try:
        parse_image(data)
    except FlashError as exc:
        assert exc.code in ERROR_CODES


@given(st.integers(0, len(VALID) - 1))
def test_every_truncation_is_refused(cut):
    assert code_of(parse_image, VALID[:cut]) in {FlashCode.TRUNCATED, FlashCode.BAD_MAGIC}


@given(st.integers(0, len(VALID) * 8 - 1))
def test_every_single_bit_flip_is_detected(bit):
    flipped = bytearray(VALID)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert code_of(_parse_and_verify, bytes(flipped)) in ERROR_CODES | {FlashCode.BAD_SIGNATURE, FlashCode.UNKNOWN_SIGNER}


@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_random_corruption_never_crashes_and_never_passes(edits):
    data = bytearray(VALID)
    for pos, value in edits:
        data[pos] = value
    if bytes(data) == VALID:
        return
    assert code_of(_parse_and_verify, bytes(data)) in ERROR_CODES | {FlashCode.BAD_SIGNATURE, FlashCode.UNKNOWN_SIGNER}


# ----------------------------------------------------------------------------- keys


def test_private_key_files_are_0600_never_overwritten_and_checked(tmp_path):
    path = tmp_path / "k" / "release.key"
    write_new_file(path, format_private(RELEASE), private=True)
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert code_of(write_new_file, path, "x", private=True) is FlashCode.EXISTS
    assert load_signing_key(path) == RELEASE
    assert load_public_key(path) == RELEASE.trusted()  # a .key also names its public half
    if os.name == "posix":
        path.chmod(0o644)
        assert code_of(check_private_mode, path) is FlashCode.BAD_KEY
        assert code_of(load_signing_key, path) is FlashCode.BAD_KEY
    assert "seed" not in repr(RELEASE) and RELEASE.seed.hex() not in repr(RELEASE)


def test_key_file_refusals():
    text = format_private(RELEASE)
    assert code_of(parse_private, text.replace(RELEASE.public.hex(), OVERRIDE.public.hex())) is FlashCode.BAD_KEY
    assert code_of(parse_private, text.replace('"release"', '"admin"')) is FlashCode.BAD_KEY
    assert code_of(parse_private, "{}") is FlashCode.BAD_KEY
    assert code_of(parse_trust, '{"format": "his-trust-v1", "keys": [1]}') is FlashCode.BAD_KEY
    assert parse_trust(format_trust(TRUST)) == TRUST
    assert code_of(new_signing_key, "bad id", KeyRole.RELEASE, bytes(32)) is FlashCode.BAD_INPUT
