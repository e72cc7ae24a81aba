"""The flash commands: what the bootloader-range link frames (0x80-0xBF) carry. Pure, no I/O.

The link (protocol.link.session) moves these as reliable frames: acknowledged, retransmitted,
delivered once and in order. It does not keep anything across a session reset, so every message
stands on its own: it names its flash session and its byte offset, and every request carries a
request id that its reply echoes.

Host -> device (all integers big-endian; `session` is 16 random bytes chosen by the host per run):

    0x80 BEGIN     req u32 | session 16 | total u32 | chunk_size u32 | image header (magic..signature)
    0x81 CHUNK     session 16 | offset u32 | length u32 | crc32 u32 | encoding u8 | data
    0x82 END       req u32 | session 16
    0x83 ABORT     req u32 | session 16
    0x84 INFO      req u32 | log_lines u16
    0x85 REBOOT    req u32
    0x86 CONFIRM   req u32
    0x87 ROLLBACK  req u32

Device -> host:

    0xA0 BEGIN_OK  req u32 | session 16 | resume_offset u32 | chunk_size u32 | slot u8 (ASCII a/b)
    0xA1 END_OK    req u32 | session 16 | JSON {"slot", "version", "rebooting"}
    0xA2 INFO_OK   req u32 | JSON device status (see firmware_sim.bootloader.Bootloader.status)
    0xA3 DONE      req u32 | op u8 (the request's frame type) | JSON {"message"}
    0xAF ERROR     req u32 (0 for a CHUNK) | op u8 | session 16 (zeros if none) | offset u32 |
                   JSON {"code", "message"}

CHUNK: `offset`/`length` are positions in the image payload (uncompressed); `crc32` is zlib's CRC-32
of the uncompressed bytes; `encoding` 0 = raw, 1 = zlib (RFC 1950), 2 = zlib with a preset
dictionary (RFC 1950 FDICT): the WINDOW_SIZE payload bytes just before `offset`, which the device has
already written (and, after a resume, still holds), so a chunk compresses as if the image were one
stream yet stays decodable on its own from what is on the device. `make_chunk` picks the smallest
of the three, so incompressible images never grow.
A CHUNK has no reply when it is written: the link ACK, which the device sends only after handling
the frame, says so. Only a refused CHUNK gets an ERROR (with the offset the device expects).

Errors are one hierarchy: `FlashError(code, message)`, with `code` a stable `FlashCode` and a message
that says what is wrong and what to do. Image parsing (protocol.image) and the device use the
same codes, so the engineer at the PC sees exactly what the device refused and why.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from protocol.errors import CodedError, ProtocolError
from protocol.strictjson import dumps_compact, loads_object

SESSION_SIZE = 16
# The largest chunk (uncompressed) a device must accept; a device may announce less in BEGIN_OK.
MAX_CHUNK = 60 * 1024
# What a CHUNK frame adds to its data; the link frame adds protocol.link.frame.OVERHEAD on top.
CHUNK_HEADER_SIZE = SESSION_SIZE + 13
MAX_HEADER = 64 * 1024  # image header carried by BEGIN (the image format bounds it further)
MAX_LOG_LINES = 200


class FlashType(enum.IntEnum):
    BEGIN = 0x80
    CHUNK = 0x81
    END = 0x82
    ABORT = 0x83
    INFO = 0x84
    REBOOT = 0x85
    CONFIRM = 0x86
    ROLLBACK = 0x87
    BEGIN_OK = 0xA0
    END_OK = 0xA1
    INFO_OK = 0xA2
    DONE = 0xA3
    ERROR = 0xAF


class Encoding(enum.IntEnum):
    RAW = 0
    ZLIB = 1
    ZLIB_WINDOW = 2  # zlib with the preceding WINDOW_SIZE payload bytes as its preset dictionary


# zlib's own window: a longer dictionary would not be used, a shorter one loses matches.
WINDOW_SIZE = 32 * 1024


class FlashCode(str, enum.Enum):
    # The image itself (protocol.image).
    BAD_MAGIC = "bad_magic"
    TRUNCATED = "truncated"
    TOO_LARGE = "too_large"
    BAD_MANIFEST = "bad_manifest"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TRAILING_DATA = "trailing_data"
    HASH_MISMATCH = "hash_mismatch"
    BAD_PART = "bad_part"
    # Who signed it and whether this device takes it.
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_SIGNER = "unknown_signer"
    WRONG_MODEL = "wrong_model"
    WRONG_DEVICE = "wrong_device"
    DOWNGRADE = "downgrade"
    # The flash session.
    BAD_MESSAGE = "bad_message"
    NO_SESSION = "no_session"
    CHUNK_GAP = "chunk_gap"
    BAD_CHUNK = "bad_chunk"
    INCOMPLETE = "incomplete"
    PENDING_CONFIRM = "pending_confirm"
    NOTHING_TO_CONFIRM = "nothing_to_confirm"
    NO_ROLLBACK = "no_rollback"
    NO_IMAGE = "no_image"
    STORAGE = "storage"
    # The PC side.
    PORT_BUSY = "port_busy"
    NO_DEVICE = "no_device"
    UNKNOWN_DEVICE = "unknown_device"
    TIMEOUT = "timeout"
    HEALTH_FAILED = "health_failed"
    BAD_KEY = "bad_key"
    EXISTS = "exists"
    BAD_INPUT = "bad_input"




class FlashError(CodedError):
    """A refusal with a stable code. `detail` says what is wrong; `message` is what a person reads.

    What to do about each code is the field tool's advice (posflash/hints.py adds it), not the
    protocol's: the device and the bridge raise these too, and they do not quote the field tool's commands.
    """

    code: FlashCode

    def __init__(self, code: FlashCode, detail: str, *, offset: int | None = None, message: str | None = None) -> None:
        self.code = code
        self.detail = detail
        self.offset = offset  # for chunk refusals: the offset the device expects
        self.message = detail if message is None else message
        super().__init__(f"{code.value}: {self.message}")


def _bad(detail: str) -> FlashError:
    return FlashError(FlashCode.BAD_MESSAGE, detail)


# ----------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Begin:
    req: int
    session: bytes
    total: int
    chunk_size: int
    header: bytes  # the image header: magic, manifest length, manifest, signature


@dataclass(frozen=True, slots=True)
class Chunk:
    session: bytes
    offset: int
    length: int  # uncompressed
    crc32: int  # of the uncompressed bytes
    encoding: Encoding
    data: bytes  # as sent (compressed or raw)


@dataclass(frozen=True, slots=True)
class End:
    req: int
    session: bytes


@dataclass(frozen=True, slots=True)
class Abort:
    req: int
    session: bytes


@dataclass(frozen=True, slots=True)
class Info:
    req: int
    log_lines: int = 20


@dataclass(frozen=True, slots=True)
class Reboot:
    req: int


@dataclass(frozen=True, slots=True)
class Confirm:
    req: int


@dataclass(frozen=True, slots=True)
class Rollback:
    req: int


@dataclass(frozen=True, slots=True)
class BeginOk:
    req: int
    session: bytes
    resume_offset: int
    chunk_size: int
    slot: str  # "a" or "b": the slot being written


@dataclass(frozen=True, slots=True)
class EndOk:
    req: int
    session: bytes
    slot: str
    version: str
    rebooting: bool


@dataclass(frozen=True, slots=True)
class InfoOk:
    req: int
    status: dict[str, object]


@dataclass(frozen=True, slots=True)
class Done:
    req: int
    op: int  # the FlashType of the request
    message: str


@dataclass(frozen=True, slots=True)
class ErrorReply:
    req: int
    op: int
    session: bytes
    offset: int
    code: str  # a FlashCode value (kept as text: a newer device may send a code we do not know)
    message: str

    def to_error(self) -> FlashError:
        try:
            code = FlashCode(self.code)
        except ValueError:
            code = FlashCode.BAD_MESSAGE
        return FlashError(code, self.message, offset=self.offset)


Request = Begin | Chunk | End | Abort | Info | Reboot | Confirm | Rollback
Reply = BeginOk | EndOk | InfoOk | Done | ErrorReply
Message = Request | Reply

_U32 = struct.Struct(">I")
_BEGIN = struct.Struct(f">I{SESSION_SIZE}sII")
_CHUNK = struct.Struct(f">{SESSION_SIZE}sIIIB")
_REQ_SESSION = struct.Struct(f">I{SESSION_SIZE}s")
_INFO = struct.Struct(">IH")
_BEGIN_OK = struct.Struct(f">I{SESSION_SIZE}sIIB")
_DONE = struct.Struct(">IB")
_ERROR = struct.Struct(f">IB{SESSION_SIZE}sI")
assert _CHUNK.size == CHUNK_HEADER_SIZE

NO_SESSION = bytes(SESSION_SIZE)


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} {value} does not fit in 32 bits")


def _check_session(session: bytes) -> None:
    if len(session) != SESSION_SIZE:
        raise ValueError(f"a session id is {SESSION_SIZE} bytes")


def _slot_byte(slot: str) -> int:
    if slot not in ("a", "b"):
        raise ValueError("slot must be 'a' or 'b'")
    return ord(slot)


def encode(msg: Message) -> tuple[int, bytes]:
    """The (frame type, payload) that carries `msg` on the link."""
    if isinstance(msg, Chunk):
        _check_session(msg.session)
        for name in ("offset", "length", "crc32"):
            _check_u32(name, getattr(msg, name))
        return FlashType.CHUNK, _CHUNK.pack(msg.session, msg.offset, msg.length, msg.crc32, msg.encoding) + msg.data
    if isinstance(msg, Begin):
        _check_session(msg.session)
        _check_u32("total", msg.total)
        _check_u32("chunk_size", msg.chunk_size)
        if len(msg.header) > MAX_HEADER:
            raise ValueError("image header too large for BEGIN")
        return FlashType.BEGIN, _BEGIN.pack(msg.req, msg.session, msg.total, msg.chunk_size) + msg.header
    if isinstance(msg, (End, Abort)):
        _check_session(msg.session)
        ftype = FlashType.END if isinstance(msg, End) else FlashType.ABORT
        return ftype, _REQ_SESSION.pack(msg.req, msg.session)
    if isinstance(msg, Info):
        return FlashType.INFO, _INFO.pack(msg.req, min(msg.log_lines, MAX_LOG_LINES))
    if isinstance(msg, (Reboot, Confirm, Rollback)):
        ftype = {Reboot: FlashType.REBOOT, Confirm: FlashType.CONFIRM, Rollback: FlashType.ROLLBACK}[type(msg)]
        return ftype, _U32.pack(msg.req)
    if isinstance(msg, BeginOk):
        _check_session(msg.session)
        return FlashType.BEGIN_OK, _BEGIN_OK.pack(msg.req, msg.session, msg.resume_offset, msg.chunk_size, _slot_byte(msg.slot))
    if isinstance(msg, EndOk):
        _check_session(msg.session)
        body = dumps_compact({"slot": msg.slot, "version": msg.version, "rebooting": msg.rebooting})
        return FlashType.END_OK, _REQ_SESSION.pack(msg.req, msg.session) + body
    if isinstance(msg, InfoOk):
        return FlashType.INFO_OK, _U32.pack(msg.req) + dumps_compact(msg.status)
    if isinstance(msg, Done):
        return FlashType.DONE, _DONE.pack(msg.req, msg.op) + dumps_compact({"message": msg.message})
    if isinstance(msg, ErrorReply):
        _check_session(msg.session)
        body = dumps_compact({"code": msg.code, "message": msg.message})
        return FlashType.ERROR, _ERROR.pack(msg.req, msg.op, msg.session, msg.offset) + body
    raise TypeError(f"not a flash message: {type(msg).__name__}")


def _json(data: bytes, what: str) -> dict[str, object]:
    try:
        return loads_object(data, what=what)
    except ProtocolError as exc:
        raise _bad(exc.message) from None


def _text(obj: dict[str, object], field: str, what: str, max_len: int = 2048) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or len(value) > max_len:
        raise _bad(f"{what}.{field} must be a string of at most {max_len} characters")
    return value


def _need(payload: bytes, size: int, what: str, *, exact: bool = False) -> None:
    if len(payload) < size or (exact and len(payload) != size):
        raise _bad(f"{what} payload has {len(payload)} bytes; expected {'exactly ' if exact else 'at least '}{size}")


def _slot(value: int, what: str) -> str:
    if value not in (ord("a"), ord("b")):
        raise _bad(f"{what}.slot must be 'a' or 'b'")
    return chr(value)


def decode(frame_type: int, payload: bytes) -> Message:
    """Parse one flash frame. Raises FlashError(bad_message) for anything malformed."""
    try:
        ftype = FlashType(frame_type)
    except ValueError:
        raise _bad(f"frame type 0x{frame_type:02x} is not a flash command") from None
    if ftype is FlashType.CHUNK:
        _need(payload, _CHUNK.size, "CHUNK")
        session, offset, length, crc, enc = _CHUNK.unpack_from(payload)
        try:
            encoding = Encoding(enc)
        except ValueError:
            raise _bad(f"CHUNK encoding {enc} is unknown") from None
        return Chunk(session, offset, length, crc, encoding, bytes(payload[_CHUNK.size :]))
    if ftype is FlashType.BEGIN:
        _need(payload, _BEGIN.size, "BEGIN")
        req, session, total, chunk_size = _BEGIN.unpack_from(payload)
        header = bytes(payload[_BEGIN.size :])
        if len(header) > MAX_HEADER:
            raise _bad("BEGIN image header too large")
        return Begin(req, session, total, chunk_size, header)
    if ftype in (FlashType.END, FlashType.ABORT):
        _need(payload, _REQ_SESSION.size, ftype.name, exact=True)
        req, session = _REQ_SESSION.unpack(payload)
        return End(req, session) if ftype is FlashType.END else Abort(req, session)
    if ftype is FlashType.INFO:
        _need(payload, _INFO.size, "INFO", exact=True)
        req, lines = _INFO.unpack(payload)
        return Info(req, min(lines, MAX_LOG_LINES))
    if ftype in (FlashType.REBOOT, FlashType.CONFIRM, FlashType.ROLLBACK):
        _need(payload, _U32.size, ftype.name, exact=True)
        (req,) = _U32.unpack(payload)
        if ftype is FlashType.REBOOT:
            return Reboot(req)
        return Confirm(req) if ftype is FlashType.CONFIRM else Rollback(req)
    if ftype is FlashType.BEGIN_OK:
        _need(payload, _BEGIN_OK.size, "BEGIN_OK", exact=True)
        req, session, resume, chunk_size, slot = _BEGIN_OK.unpack(payload)
        return BeginOk(req, session, resume, chunk_size, _slot(slot, "BEGIN_OK"))
    if ftype is FlashType.END_OK:
        _need(payload, _REQ_SESSION.size, "END_OK")
        req, session = _REQ_SESSION.unpack_from(payload)
        body = _json(payload[_REQ_SESSION.size :], "END_OK")
        slot = _text(body, "slot", "END_OK", 1)
        rebooting = body.get("rebooting")
        if slot not in ("a", "b") or not isinstance(rebooting, bool):
            raise _bad("END_OK needs slot 'a'/'b' and a boolean 'rebooting'")
        return EndOk(req, session, slot, _text(body, "version", "END_OK", 64), rebooting)
    if ftype is FlashType.INFO_OK:
        _need(payload, _U32.size, "INFO_OK")
        (req,) = _U32.unpack_from(payload)
        return InfoOk(req, _json(payload[_U32.size :], "INFO_OK"))
    if ftype is FlashType.DONE:
        _need(payload, _DONE.size, "DONE")
        req, op = _DONE.unpack_from(payload)
        return Done(req, op, _text(_json(payload[_DONE.size :], "DONE"), "message", "DONE"))
    _need(payload, _ERROR.size, "ERROR")
    req, op, session, offset = _ERROR.unpack_from(payload)
    body = _json(payload[_ERROR.size :], "ERROR")
    return ErrorReply(req, op, session, offset, _text(body, "code", "ERROR", 64), _text(body, "message", "ERROR"))


def error_reply(err: FlashError, *, req: int = 0, op: int = 0, session: bytes = NO_SESSION, offset: int | None = None) -> ErrorReply:
    """The ERROR message that carries `err` back to the host."""
    at = err.offset if offset is None else offset
    return ErrorReply(req, op, session, at or 0, err.code.value, err.message)


# ----------------------------------------------------------------------------- chunk data


def make_chunk(session: bytes, offset: int, data: bytes, *, level: int = 6, window: bytes = b"") -> Chunk:
    """A CHUNK for `data` at `offset`: the smallest of raw, zlib, and zlib with `window` (the payload
    bytes just before `offset`, at most WINDOW_SIZE of them) as a preset dictionary."""
    crc = zlib.crc32(data)
    best = Chunk(session, offset, len(data), crc, Encoding.RAW, bytes(data))
    if level <= 0:
        return best
    packed = zlib.compress(data, level)
    if len(packed) < len(best.data):
        best = Chunk(session, offset, len(data), crc, Encoding.ZLIB, packed)
    window = bytes(window[-WINDOW_SIZE:])
    if window:
        deflater = zlib.compressobj(level, zdict=window)
        packed = deflater.compress(data) + deflater.flush()
        if len(packed) < len(best.data):
            best = Chunk(session, offset, len(data), crc, Encoding.ZLIB_WINDOW, packed)
    return best


def chunk_data(chunk: Chunk, max_length: int, window: bytes = b"") -> bytes:
    """The uncompressed bytes of a CHUNK, checked against its length and CRC. `window` is the payload
    written before the chunk's offset (only its last WINDOW_SIZE bytes are used).

    Decompression is bounded by `max_length`, so a crafted chunk cannot inflate without limit.
    """
    if chunk.length > max_length:
        raise FlashError(FlashCode.BAD_CHUNK, f"chunk at offset {chunk.offset} is {chunk.length} bytes; the device takes at most {max_length}", offset=chunk.offset)
    if chunk.encoding is Encoding.RAW:
        data = chunk.data
    else:
        if chunk.encoding is Encoding.ZLIB_WINDOW:
            dictionary = bytes(window[-WINDOW_SIZE:])
            if not dictionary:
                raise FlashError(FlashCode.BAD_CHUNK, f"chunk at offset {chunk.offset} needs the preceding payload as its dictionary, and there is none", offset=chunk.offset)
            inflater = zlib.decompressobj(zdict=dictionary)
        else:
            inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(chunk.data, chunk.length + 1)
        except zlib.error as exc:
            raise FlashError(FlashCode.BAD_CHUNK, f"chunk at offset {chunk.offset} does not decompress ({exc})", offset=chunk.offset) from None
        if not inflater.eof or inflater.unused_data:
            raise FlashError(FlashCode.BAD_CHUNK, f"chunk at offset {chunk.offset} is not one complete zlib stream", offset=chunk.offset)
    if len(data) != chunk.length:
        raise FlashError(FlashCode.BAD_CHUNK, f"chunk at offset {chunk.offset} holds {len(data)} bytes, not the {chunk.length} it declares", offset=chunk.offset)
    if zlib.crc32(data) != chunk.crc32:
        raise FlashError(FlashCode.BAD_CHUNK, f"chunk at offset {chunk.offset} fails its CRC-32", offset=chunk.offset)
    return data


def wire_size(chunk: Chunk) -> int:
    """Bytes this CHUNK's payload occupies in its frame (without the link frame overhead)."""
    return CHUNK_HEADER_SIZE + len(chunk.data)
