"""Frame codec and decoder: any chunking, garbage, corruption, bounded memory."""

import struct
import zlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from protocol.link.decoder import Corrupt, FrameDecoder
from protocol.link.frame import MAX_PAYLOAD, OVERHEAD, START, Frame, FrameType, encode_frame

frames = st.builds(
    Frame,
    st.sampled_from([t.value for t in FrameType if t not in (FrameType.BOOT_FIRST, FrameType.BOOT_LAST)] + [0x80, 0x9F, 0xBF]),
    st.integers(0, 0xFFFF),
    st.binary(max_size=600),
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


def feed_all(decoder: FrameDecoder, pieces) -> list:
    out = []
    for piece in pieces:
        out += decoder.feed(piece)
        assert decoder.buffered <= decoder.max_buffered
    return out


def test_layout_byte_by_byte():
    wire = encode_frame(FrameType.DATA, 0x0102, b"hi")
    assert wire[:2] == START
    assert wire[2:8] == bytes([1, 0x10, 0x01, 0x02, 0x00, 0x02])
    assert struct.unpack(">H", wire[8:10])[0] == __import__("binascii").crc_hqx(wire[2:8], 0xFFFF)
    assert wire[10:12] == b"hi"
    assert struct.unpack(">I", wire[12:])[0] == zlib.crc32(wire[2:12])
    assert len(wire) - 2 == OVERHEAD == 14


@given(st.lists(frames, max_size=8), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_chunking_yields_the_same_frames(sent, cuts):
    wire = b"".join(f.encode() for f in sent)
    assert FrameDecoder().feed(wire) == sent
    assert feed_all(FrameDecoder(), chunked(wire, cuts)) == sent
    # ... and one byte at a time (h11's habit: test every decoder twice).
    assert feed_all(FrameDecoder(), [wire[i : i + 1] for i in range(len(wire))]) == sent


@given(st.lists(st.tuples(st.binary(max_size=40), frames), max_size=6), st.lists(st.integers(0, 5000), max_size=10))
def test_resynchronises_after_garbage(pairs, cuts):
    wire = b"".join(garbage.replace(START, b"\x00") + f.encode() for garbage, f in pairs)
    out = feed_all(FrameDecoder(), chunked(wire, cuts))
    assert [o for o in out if isinstance(o, Frame)] == [f for _, f in pairs]


@given(frames, frames, st.data())
def test_a_corrupted_frame_is_reported_or_dropped_and_the_next_one_survives(first, second, data):
    assume(first != second)
    wire = bytearray(first.encode())
    bit = data.draw(st.integers(16, len(wire) * 8 - 1))  # anywhere after the start marker
    wire[bit // 8] ^= 1 << (bit % 8)
    out = FrameDecoder().feed(bytes(wire) + second.encode())
    frames_out = [o for o in out if isinstance(o, Frame)]
    # Both CRCs catch every single-bit error: the damaged frame never comes out.
    assert frames_out == [second]


def test_payload_corruption_is_reported_with_type_and_seq():
    wire = bytearray(encode_frame(FrameType.DATA, 77, b"payload"))
    wire[12] ^= 0xFF
    (report,) = FrameDecoder().feed(bytes(wire))
    assert report == Corrupt(FrameType.DATA, 77, "crc")


def test_a_corrupted_length_does_not_stall_the_next_frame():
    # The header CRC refuses the bogus length at once; the next frame is decoded without waiting
    # for 64 KiB that will never come.
    bad = bytearray(encode_frame(FrameType.DATA, 1, b"x"))
    bad[6:8] = b"\xff\xf0"
    good = encode_frame(FrameType.DATA, 2, b"y")
    out = FrameDecoder().feed(bytes(bad) + good)
    assert out == [Frame(FrameType.DATA, 2, b"y")]


def test_too_large_is_refused_by_a_small_decoder():
    decoder = FrameDecoder(max_payload=16)
    out = decoder.feed(encode_frame(FrameType.DATA, 9, bytes(17)) + encode_frame(FrameType.DATA, 10, bytes(16)))
    assert out[0] == Corrupt(FrameType.DATA, 9, "too_large")
    assert out[-1] == Frame(FrameType.DATA, 10, bytes(16))


@given(st.binary(max_size=4000), st.lists(st.integers(0, 4000), max_size=10))
def test_arbitrary_bytes_never_raise_and_memory_stays_bounded(noise, cuts):
    decoder = FrameDecoder(max_payload=1024)
    for item in feed_all(decoder, chunked(noise, cuts)):
        assert isinstance(item, (Frame, Corrupt))


def test_memory_bound_under_a_flood_of_start_markers():
    decoder = FrameDecoder(max_payload=1024)
    for _ in range(100):
        decoder.feed(START * 5000)
        assert decoder.buffered <= decoder.max_buffered


def test_encoder_refuses_out_of_range():
    with pytest.raises(ValueError):
        encode_frame(FrameType.DATA, 0x10000, b"")
    with pytest.raises(ValueError):
        encode_frame(FrameType.DATA, 0, bytes(MAX_PAYLOAD + 1))
    with pytest.raises(ValueError):
        encode_frame(0x100, 0, b"")
