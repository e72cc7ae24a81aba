"""The link frame between bridge and POS, byte by byte (docs/link-protocol.md has the full story).

    offset  size  field
    0       2     start marker A5 5A
    2       1     version (1)
    3       1     frame type (FrameType)
    4       2     sequence number, big-endian (reliable frames; ACK/NAK: the seq they answer)
    6       2     payload length N, big-endian, at most MAX_PAYLOAD
    8       2     header check: CRC-16/CCITT-FALSE of bytes 2..7
    10      N     payload
    10+N    4     CRC-32 (IEEE 802.3, as zlib) of bytes 2..10+N-1, big-endian

Overhead: 14 bytes a frame.

Why these checks: the header CRC lets a receiver reject a corrupted length at once instead of
waiting for up to 64 KiB that will never come, so it resynchronises on the next start marker
immediately. The frame CRC is CRC-32 rather than CRC-16: frames carry money and firmware up to
64 KiB; CRC-32 keeps Hamming distance 4 up to ~11 KB (CRC-16 only to ~4 KB) and lets a random
corruption through once in 4e9 frames rather than once in 65536, for two more bytes. Both CRCs run
in C in the standard library (zlib.crc32, binascii.crc_hqx), which keeps the decoder fast.
"""

from __future__ import annotations

import binascii
import enum
import struct
import zlib
from dataclasses import dataclass

START = b"\xa5\x5a"
VERSION = 1
HEADER_SIZE = 10
TRAILER_SIZE = 4
OVERHEAD = HEADER_SIZE + TRAILER_SIZE
MAX_PAYLOAD = 65535
SEQ_MODULO = 1 << 16

_HEADER = struct.Struct(">2sBBHHH")
_CRC32 = struct.Struct(">I")


class FrameType(enum.IntEnum):
    HELLO_REQUEST = 0x01  # host -> device: challenge
    HELLO = 0x02  # device -> host: identity and proof of the device key
    HELLO_ACK = 0x03  # host -> device: accepted; link is up
    RESET = 0x04  # either way: forget the session, handshake again
    DATA = 0x10  # reliable: one application message (protocol.link.app)
    ACK = 0x11  # seq = the reliable frame acknowledged
    NAK = 0x12  # seq = the reliable frame refused; payload[0] = NakReason
    PING = 0x20
    PONG = 0x21  # echoes the PING payload
    # 0x80..0xBF: bootloader and flashing commands (reliable, like DATA); see firmware_sim.
    BOOT_FIRST = 0x80
    BOOT_LAST = 0xBF


class NakReason(enum.IntEnum):
    CORRUPT = 0x01  # payload CRC failed: resend now
    NOT_READY = 0x02  # no session here: handshake again
    TOO_LARGE = 0x03
    UNKNOWN_TYPE = 0x04


def is_reliable(frame_type: int) -> bool:
    """Reliable frames carry a sequence number and are acknowledged, retransmitted and deduplicated."""
    return frame_type == FrameType.DATA or FrameType.BOOT_FIRST <= frame_type <= FrameType.BOOT_LAST


def is_known_type(frame_type: int) -> bool:
    return frame_type in FrameType._value2member_map_ or is_reliable(frame_type)


@dataclass(frozen=True, slots=True)
class Frame:
    type: int  # a FrameType, or a code in the bootloader range
    seq: int
    payload: bytes = b""

    def encode(self) -> bytes:
        return encode_frame(self.type, self.seq, self.payload)


def header_crc(header_fields: bytes | memoryview) -> int:
    return binascii.crc_hqx(header_fields, 0xFFFF)


def encode_frame(frame_type: int, seq: int, payload: bytes = b"") -> bytes:
    if not 0 <= frame_type <= 0xFF:
        raise ValueError(f"frame type {frame_type} out of range")
    if not 0 <= seq < SEQ_MODULO:
        raise ValueError(f"seq {seq} out of range")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    fields = struct.pack(">BBHH", VERSION, frame_type, seq, len(payload))
    body = START + fields + struct.pack(">H", header_crc(fields)) + payload
    return body + _CRC32.pack(zlib.crc32(body[2:]))


def wire_time_s(n_bytes: int, baud: int) -> float:
    """Seconds to move n bytes over a UART at `baud` with 8N1 framing (10 bits a byte)."""
    return n_bytes * 10 / baud
