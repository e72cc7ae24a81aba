"""The flash command codec: round trips, strict decoding, chunk compression and its limits."""

import os
import zlib

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import flash as fc
from protocol.flash import FlashCode, FlashError
from protocol.link.frame import FrameType, is_reliable

sessions = st.binary(min_size=fc.SESSION_SIZE, max_size=fc.SESSION_SIZE)
u32 = st.integers(0, 2**32 - 1)
text = st.text(max_size=50)
messages = st.one_of(
    st.builds(fc.Begin, u32, sessions, u32, u32, st.binary(max_size=300)),
    st.builds(fc.Chunk, sessions, u32, u32, u32, st.sampled_from(fc.Encoding), st.binary(max_size=300)),
    st.builds(fc.End, u32, sessions),
    st.builds(fc.Abort, u32, sessions),
    st.builds(fc.Info, u32, st.integers(0, fc.MAX_LOG_LINES)),
    st.builds(fc.Reboot, u32),
    st.builds(fc.Confirm, u32),
    st.builds(fc.Rollback, u32),
    st.builds(fc.BeginOk, u32, sessions, u32, u32, st.sampled_from("ab")),
    st.builds(fc.EndOk, u32, sessions, st.sampled_from("ab"), st.text(max_size=20), st.booleans()),
    st.builds(fc.InfoOk, u32, st.dictionaries(st.text(max_size=5), st.integers() | text, max_size=5)),
    st.builds(fc.Done, u32, st.sampled_from(fc.FlashType), text),
    st.builds(fc.ErrorReply, u32, st.integers(0, 255), sessions, u32, st.sampled_from([c.value for c in FlashCode]), text),
)


def test_every_flash_type_is_a_reliable_bootloader_frame():
    for t in fc.FlashType:
        assert FrameType.BOOT_FIRST <= t <= FrameType.BOOT_LAST and is_reliable(t)


@given(messages)
def test_round_trip(msg):
    frame_type, payload = fc.encode(msg)
    assert fc.decode(frame_type, payload) == msg


@given(st.integers(0x80, 0xBF), st.binary(max_size=200))
def test_arbitrary_payloads_decode_or_raise_bad_message(frame_type, payload):
    try:
        fc.decode(frame_type, payload)
    except FlashError as exc:
        assert exc.code is FlashCode.BAD_MESSAGE
        assert exc.message


@given(messages, st.data())
def test_truncated_control_messages_are_refused(msg, data):
    frame_type, payload = fc.encode(msg)
    if isinstance(msg, (fc.Begin, fc.Chunk)):
        cut = data.draw(st.integers(0, fc.CHUNK_HEADER_SIZE - 1 if isinstance(msg, fc.Chunk) else 27))
    else:
        cut = data.draw(st.integers(0, max(0, len(payload) - 1)))
    with pytest.raises(FlashError) as info:
        fc.decode(frame_type, payload[:cut])
    assert info.value.code is FlashCode.BAD_MESSAGE


def test_unknown_type_in_boot_range_is_refused():
    with pytest.raises(FlashError, match="not a flash command"):
        fc.decode(0xBE, b"")


def test_compressible_chunk_is_deflated_and_incompressible_sent_raw():
    session = os.urandom(16)
    text = b"def pay(amount_fen: int) -> None:\n    pass\n" * 200
    packed = fc.make_chunk(session, 0, text)
    assert packed.encoding is fc.Encoding.ZLIB and len(packed.data) < len(text) // 5
    assert fc.chunk_data(packed, len(text)) == text
    noise = os.urandom(8192)
    raw = fc.make_chunk(session, 4096, noise)
    assert raw.encoding is fc.Encoding.RAW and raw.data == noise  # never larger than the data
    assert fc.wire_size(raw) == fc.CHUNK_HEADER_SIZE + len(noise)
    assert fc.chunk_data(raw, 8192) == noise


def _source_like(n: int, seed: int = 0) -> bytes:
    """Text with the repetition of an application bundle: names recur across chunk boundaries."""
    import random

    rng = random.Random(seed)
    words = [f"amount_fen_{i}" for i in range(300)] + ["def ", "return ", "self.", "journal", "    ", "\n"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words).encode()
    return bytes(out[:n])


def test_a_chunk_with_the_preceding_payload_as_dictionary_packs_like_one_stream():
    payload = _source_like(256 * 1024)
    chunk_size, session = 16 * 1024, os.urandom(16)
    per_chunk = windowed = 0
    for off in range(0, len(payload), chunk_size):
        data, window = payload[off : off + chunk_size], payload[max(0, off - fc.WINDOW_SIZE) : off]
        alone = fc.make_chunk(session, off, data, level=9)
        best = fc.make_chunk(session, off, data, level=9, window=window)
        assert fc.chunk_data(best, chunk_size, window) == data
        per_chunk, windowed = per_chunk + len(alone.data), windowed + len(best.data)
    whole = len(zlib.compress(payload, 9))
    assert windowed < per_chunk  # the dictionary pays for itself
    assert len(payload) / windowed >= 0.95 * len(payload) / whole  # issue 11: within 95 % of whole-image


def test_a_windowed_chunk_needs_the_very_bytes_the_device_wrote():
    payload = _source_like(64 * 1024, seed=1)
    window, data = payload[:32 * 1024], payload[32 * 1024 : 48 * 1024]
    chunk = fc.make_chunk(os.urandom(16), 32 * 1024, data, window=window)
    assert chunk.encoding is fc.Encoding.ZLIB_WINDOW
    with pytest.raises(FlashError) as info:
        fc.chunk_data(chunk, 16 * 1024, b"")  # a device with nothing before the offset
    assert info.value.code is FlashCode.BAD_CHUNK and info.value.offset == 32 * 1024
    other = bytearray(window)
    other[-1] ^= 0xFF
    with pytest.raises(FlashError) as info:
        fc.chunk_data(chunk, 16 * 1024, bytes(other))  # a device whose preceding bytes differ
    assert info.value.code is FlashCode.BAD_CHUNK


@given(st.binary(max_size=4096), st.binary(max_size=40 * 1024), st.integers(0, 9))
def test_any_chunk_decodes_to_its_data_with_its_window(data, window, level):
    chunk = fc.make_chunk(b"s" * 16, len(window), data, level=level, window=window)
    assert len(chunk.data) <= len(data)  # never larger than raw
    assert fc.chunk_data(fc.decode(*fc.encode(chunk)), max(len(data), 1), window) == data


def test_chunk_refusals_name_the_offset():
    session = os.urandom(16)
    good = fc.make_chunk(session, 100, b"x" * 1000)
    bad_crc = fc.Chunk(session, 100, good.length, good.crc32 ^ 1, good.encoding, good.data)
    with pytest.raises(FlashError, match="CRC") as info:
        fc.chunk_data(bad_crc, 4096)
    assert info.value.code is FlashCode.BAD_CHUNK and info.value.offset == 100
    with pytest.raises(FlashError, match="at most"):
        fc.chunk_data(good, 999)
    lying = fc.Chunk(session, 100, 10, zlib.crc32(b"x" * 10), fc.Encoding.ZLIB, good.data)
    with pytest.raises(FlashError) as info:
        fc.chunk_data(lying, 4096)
    assert info.value.code is FlashCode.BAD_CHUNK
    garbage = fc.Chunk(session, 0, 10, 0, fc.Encoding.ZLIB, b"not zlib")
    with pytest.raises(FlashError, match="decompress"):
        fc.chunk_data(garbage, 4096)


def test_a_zip_bomb_chunk_cannot_inflate_past_its_limit():
    bomb = zlib.compress(bytes(50 * 1024 * 1024), 9)  # 50 MiB of zeros in ~50 KiB
    chunk = fc.Chunk(os.urandom(16), 0, 4096, 0, fc.Encoding.ZLIB, bomb)
    with pytest.raises(FlashError) as info:
        fc.chunk_data(chunk, 4096)
    assert info.value.code is FlashCode.BAD_CHUNK


def test_an_error_crosses_the_link_with_its_code_and_message_unchanged():
    err = FlashError(FlashCode.DOWNGRADE, "counter 3 is below 5")
    back = fc.decode(*fc.encode(fc.error_reply(err, req=7, op=fc.FlashType.BEGIN))).to_error()
    assert back.code is FlashCode.DOWNGRADE and back.message == err.message == "counter 3 is below 5"


def test_the_protocol_quotes_no_field_tool_command():
    # What to do is pos-flash's advice (posflash/hints.py); the device and the bridge raise these too.
    source = Path(fc.__file__).read_text(encoding="utf-8")
    assert "pos-flash " not in source and "`pos-flash" not in source and not hasattr(fc, "HINTS")


def test_an_unknown_error_code_from_a_newer_device_is_still_shown():
    reply = fc.ErrorReply(1, 0x80, fc.NO_SESSION, 0, "brand_new_code", "something new went wrong")
    err = reply.to_error()
    assert err.code is FlashCode.BAD_MESSAGE and "something new went wrong" in err.message


def test_encode_refuses_out_of_range_fields():
    with pytest.raises(ValueError):
        fc.encode(fc.Begin(1, b"short", 0, 0, b""))
    with pytest.raises(ValueError):
        fc.encode(fc.Chunk(os.urandom(16), 2**32, 0, 0, fc.Encoding.RAW, b""))
    with pytest.raises(ValueError):
        fc.encode(fc.BeginOk(1, os.urandom(16), 0, 0, "c"))
