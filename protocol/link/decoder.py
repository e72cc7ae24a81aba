"""Sans-I/O frame decoder: bytes in any chunking in, frames and corruption reports out.

It resynchronises on the next start marker after garbage or a corrupted frame, and never holds more
than one frame's worth of bytes (HEADER + max_payload + TRAILER) between calls, whatever it is fed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from protocol.link.frame import HEADER_SIZE, MAX_PAYLOAD, START, TRAILER_SIZE, VERSION, Frame, header_crc

_FIELDS = struct.Struct(">BBHHH")  # version, type, seq, length, header crc (after the start marker)
_CRC32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Corrupt:
    """A frame whose header was sound but whose body was not (or that broke a limit).

    The header CRC passed, so `type` and `seq` are trustworthy enough to ask for a resend.
    """

    type: int
    seq: int
    reason: str  # "crc", "too_large", "version"


@dataclass(slots=True)
class DecoderStats:
    frames: int = 0
    garbage_bytes: int = 0
    bad_headers: int = 0
    corrupt_frames: int = 0


class FrameDecoder:
    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        if not 0 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be within 0..{MAX_PAYLOAD}")
        self.max_payload = max_payload
        self.stats = DecoderStats()
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def max_buffered(self) -> int:
        """The most bytes this decoder keeps between calls to `feed`."""
        return HEADER_SIZE + self.max_payload + TRAILER_SIZE - 1

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Frame | Corrupt]:
        buf = self._buf
        buf += data
        out: list[Frame | Corrupt] = []
        stats = self.stats
        pos = 0
        end = len(buf)
        with memoryview(buf) as view:
            while True:
                start = buf.find(START, pos)
                if start < 0:
                    # Keep a trailing first byte of the marker; everything else is garbage.
                    keep = 1 if end > pos and buf[end - 1] == START[0] else 0
                    stats.garbage_bytes += end - pos - keep
                    pos = end - keep
                    break
                stats.garbage_bytes += start - pos
                pos = start
                if end - start < HEADER_SIZE:
                    break
                version, ftype, seq, length, hcrc = _FIELDS.unpack_from(buf, start + 2)
                if header_crc(view[start + 2 : start + 8]) != hcrc:
                    stats.bad_headers += 1
                    stats.garbage_bytes += 1
                    pos = start + 1
                    continue
                if version != VERSION or length > self.max_payload:
                    stats.corrupt_frames += 1
                    out.append(Corrupt(ftype, seq, "version" if version != VERSION else "too_large"))
                    pos = start + 1
                    continue
                body_end = start + HEADER_SIZE + length
                if end < body_end + TRAILER_SIZE:
                    break
                (crc,) = _CRC32.unpack_from(buf, body_end)
                if zlib.crc32(view[start + 2 : body_end]) != crc:
                    stats.corrupt_frames += 1
                    out.append(Corrupt(ftype, seq, "crc"))
                    pos = start + 1
                    continue
                out.append(Frame(ftype, seq, bytes(view[start + HEADER_SIZE : body_end])))
                stats.frames += 1
                pos = body_end + TRAILER_SIZE
        del buf[:pos]
        return out
