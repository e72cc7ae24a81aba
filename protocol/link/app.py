"""Application messages carried in DATA frames between bridge and device.

Each DATA payload is one compact JSON object with a `kind`:

    bridge -> device  {"kind": "instruction", "envelope": {...}, "expires_at": 1795000600, "clock": 1795000000}
                                                                     step 3, relayed unchanged; expires_at
                                                                     is the bridge's: the plaintext's, or its default;
                                                                     clock: the bridge's clock when it sent it
    bridge -> device  {"kind": "cancel", "envelope": {...}}          1.1 C: HIS withdraws reply_to
    device -> bridge  {"kind": "result", "envelope": {...}}          step 5
    device -> bridge  {"kind": "progress", "msg_id": "...", "state": "awaiting_scan",
                       "event": {"code": "insufficient_funds", "message": "...", "at": 1795000042}}
                                                                     `event` optional: what HIS's operator
                                                                     should know now (the 202's last_event)
    device -> bridge  {"kind": "not_taken", "msg_id": "...", "code": "<spec code>", "message": "..."}
    either            {"kind": "marks", "mine": 1234, "yours": 567}   first thing after link-up

Envelopes are end-to-end sealed by HIS and the device; the link adds nothing to their security
and takes nothing from it. Only a `result` ends an instruction (his-interface 1.1 A): every answer
of the POS that ends one, a refusal included, is a sealed result signed by the device. `progress`
and `not_taken` are unsealed and so can never end anything: `not_taken` says the device cannot
answer the instruction at all (no running application or configuration, no key for its kid), the
bridge keeps it unfinished, says why in its 202 answer and health, and sends it again when the
device next attaches. The link ACK of a `result` means the bridge has journaled it; the device
keeps every result until then and sends it again after a reconnect. Sending an instruction again
is always safe: the device answers a msg_id it already has with its progress or stored result.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping

from protocol.envelope import Envelope, MsgType, parse_envelope
from protocol.errors import ErrorCode, ProtocolError
from protocol.ids import check_id
from protocol.messages import Progress
from protocol.strictjson import Fields, dumps_compact, loads_object


MAX_MARK = 2**53  # a journal's commit counter
MAX_CLOCK = 2**40  # Unix seconds: far beyond any real clock, so a bad value cannot overflow anything


class AppKind(enum.Enum):
    INSTRUCTION = "instruction"
    CANCEL = "cancel"
    RESULT = "result"
    PROGRESS = "progress"
    NOT_TAKEN = "not_taken"
    MARKS = "marks"


@dataclass(frozen=True, slots=True)
class InstructionMsg:
    envelope: Envelope
    # When the instruction expires (unix s, bridge clock): the plaintext's expires_at, or the
    # bridge's default (his-interface 1.1 C). None from an older bridge: the POS applies its own.
    expires_at: int | None = None
    # The bridge's clock (Unix seconds) when it sent this: the POS refreshes its estimate of the
    # bridge's time with it (docs/link-protocol.md section 7). Optional: older bridges omit it.
    clock: int | None = None


@dataclass(frozen=True, slots=True)
class CancelMsg:
    """HIS withdraws an instruction (1.1 C): its sealed `cancel` envelope, relayed unchanged."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Something HIS's operator should know while the instruction goes on (a declined code, an
    alarm): the 202 body's `last_event`. `code` is a stable code (a result error code or an alarm's)."""

    code: str
    message: str
    at: int  # unix s, bridge-synchronised

    def to_json_obj(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "at": self.at}


@dataclass(frozen=True, slots=True)
class ResultMsg:
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class ProgressMsg:
    msg_id: str
    state: Progress
    event: ProgressEvent | None = None


@dataclass(frozen=True, slots=True)
class NotTakenMsg:
    """The device cannot answer this instruction with a sealed result (why: a spec error code and
    words). Not an answer: the instruction stays unfinished at the bridge."""

    msg_id: str
    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class MarksMsg:
    """High-water marks, sent by each side first thing after an authenticated link-up: `mine` is the
    sender's journal mark (its last durable commit), `yours` the mark the sender holds for the
    receiver's journal from their last exchange (None: none yet). A receiver whose own mark is below
    `yours` was rolled back as a whole (an old copy of its storage put back) and locks its journal."""

    mine: int
    yours: int | None


AppMessage = InstructionMsg | CancelMsg | ResultMsg | ProgressMsg | NotTakenMsg | MarksMsg
MAX_EVENT_CODE = 64
MAX_EVENT_MESSAGE = 256


def encode_app(message: AppMessage) -> bytes:
    if isinstance(message, InstructionMsg):
        obj: dict[str, object] = {"kind": AppKind.INSTRUCTION.value, "envelope": message.envelope.to_json_obj()}
        if message.expires_at is not None:
            obj["expires_at"] = message.expires_at
        if message.clock is not None:
            obj["clock"] = message.clock
    elif isinstance(message, CancelMsg):
        obj = {"kind": AppKind.CANCEL.value, "envelope": message.envelope.to_json_obj()}
    elif isinstance(message, ResultMsg):
        obj = {"kind": AppKind.RESULT.value, "envelope": message.envelope.to_json_obj()}
    elif isinstance(message, ProgressMsg):
        obj = {"kind": AppKind.PROGRESS.value, "msg_id": message.msg_id, "state": message.state.value}
        if message.event is not None:
            obj["event"] = message.event.to_json_obj()
    elif isinstance(message, MarksMsg):
        obj = {"kind": AppKind.MARKS.value, "mine": message.mine, "yours": message.yours}
    else:
        obj = {"kind": AppKind.NOT_TAKEN.value, "msg_id": message.msg_id, "code": message.code.value, "message": message.message}
    return dumps_compact(obj)


def decode_app(payload: bytes) -> AppMessage:
    """Decode a DATA payload; ProtocolError (malformed_json / bad_envelope) on anything else."""
    f = Fields(loads_object(payload, what="DATA payload"), where="data")
    kind_text = f.req_str("kind", max_len=16)
    try:
        kind = AppKind(kind_text)
    except ValueError:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"data.kind {kind_text!r} is unknown") from None
    if kind is AppKind.INSTRUCTION:
        expires_at = f.int("expires_at", minimum=1, maximum=2**40) if f.has("expires_at") else None
        clock = f.int("clock", minimum=0, maximum=MAX_CLOCK) if f.has("clock") else None
        return InstructionMsg(parse_envelope(_obj(f, "envelope"), expect=MsgType.INSTRUCTION), expires_at, clock)
    if kind is AppKind.CANCEL:
        return CancelMsg(parse_envelope(_obj(f, "envelope"), expect=MsgType.CANCEL))
    if kind is AppKind.RESULT:
        return ResultMsg(parse_envelope(_obj(f, "envelope"), expect=MsgType.RESULT))
    if kind is AppKind.MARKS:
        yours = None if f.raw("yours") is None else f.int("yours", minimum=0, maximum=MAX_MARK)
        return MarksMsg(f.int("mine", minimum=0, maximum=MAX_MARK), yours)
    msg_id = check_id("data.msg_id", f.raw("msg_id"))
    if kind is AppKind.PROGRESS:
        state_text = f.req_str("state", max_len=32)
        try:
            state = Progress(state_text)
        except ValueError:
            raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"data.state {state_text!r} is unknown") from None
        event = None
        if f.has("event"):
            e = Fields(_obj(f, "event"), where="data.event")
            event = ProgressEvent(e.req_str("code", max_len=MAX_EVENT_CODE), e.req_str("message", max_len=MAX_EVENT_MESSAGE),
                                  e.int("at", minimum=0, maximum=2**40))
        return ProgressMsg(msg_id, state, event)
    code_text = f.req_str("code", max_len=32)
    try:
        code = ErrorCode(code_text)
    except ValueError:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"data.code {code_text!r} is not a spec error code") from None
    return NotTakenMsg(msg_id, code, f.req_str("message", max_len=512))


def _obj(f: Fields, field: str) -> Mapping[str, object]:
    value = f.obj(field)
    assert value is not None
    return value
