"""The envelope (his-interface-v1 section 3): header in the clear, plaintext sealed with AAD.

    AAD = UTF-8 of "v|type|suite|kid|msg_id|ts|<terminal_id or device_id>|<reply_to or empty>"

His-interface 1.1 adds a signature header field, outside the AAD: a result's `sig` (Ed25519 by the
device's key) and an instruction's optional `his_sig` (by HIS's key), both over the bytes
AAD || CT (`Envelope.signed_bytes`). `receive_result(..., device_keys=...)` refuses a result whose
`sig` is missing or does not verify with the registry's key for its device_id (`auth_failed`);
`receive_instruction(..., his_signature=...)` applies the `require_his_signature` policy.

`parse_envelope` checks shape only (`malformed_json`, `bad_envelope`); `open_envelope` checks suite,
kid and tag (`unsupported_suite`, `unknown_kid`, `auth_failed`); the clock window and the replay rule
live in `protocol.freshness`. `receive_instruction` / `receive_result` run the whole pipeline in the
order every receiver uses, so the bridge, the terminal, the reference client and the test vectors
agree on which error wins when several apply.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from protocol import signing
from protocol.amount import DEFAULT_LIMIT_FEN, MAX_FEN, Amount, parse_amount
from protocol.crypto import NONCE_SIZE, TAG_SIZE, AuthenticationError, KeyRing, SharedKey, get_suite
from protocol.errors import ErrorCode, ProtocolError
from protocol.freshness import (
    DEFAULT_ANSWER_TTL_S,
    DEFAULT_SKEW_S,
    SeenStore,
    Verdict,
    check_clock,
    check_result_clock,
    classify,
)
from protocol.ids import check_id, check_order_no
from protocol.messages import (Cancel, Instruction, Result, decode_cancel, decode_instruction, decode_result, encode_cancel,
                               encode_instruction, encode_result)
from protocol.signatures import NO_HIS_SIGNATURE, HisSignaturePolicy
from protocol.strictjson import Fields, JsonObject, dumps_compact, loads_object

VERSION = 1
# The largest envelope we accept as JSON: the HTTP body limit of the spec.
MAX_ENVELOPE_BYTES = 64 * 1024
# Base64 of the ciphertext is bounded so a header-only check can refuse it before decoding.
MAX_CT_B64 = MAX_ENVELOPE_BYTES
# The header field that carries the signature, by envelope type (1.1 A and B).
SIG_FIELD = {"result": "sig", "instruction": "his_sig", "cancel": "his_sig"}


class MsgType(enum.Enum):
    INSTRUCTION = "instruction"
    RESULT = "result"
    # His-interface 1.1 C: HIS withdraws an instruction. Header as an instruction's (terminal_id)
    # plus reply_to = the withdrawn instruction's msg_id; plaintext {"terminal_id", "order_no"}.
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Envelope:
    v: int
    type: MsgType
    suite: str
    kid: str
    msg_id: str
    ts: int
    party_id: str  # terminal_id for an instruction or a cancel, device_id for a result
    reply_to: str | None  # results and cancels
    nonce: bytes
    ct: bytes  # ciphertext followed by the 16-byte tag
    sig: bytes | None = None  # Ed25519 over signed_bytes(): `sig` of a result, `his_sig` of an instruction

    @property
    def terminal_id(self) -> str:
        assert self.type is not MsgType.RESULT
        return self.party_id

    @property
    def device_id(self) -> str:
        assert self.type is MsgType.RESULT
        return self.party_id

    def aad(self) -> bytes:
        parts = (str(self.v), self.type.value, self.suite, self.kid, self.msg_id, str(self.ts), self.party_id, self.reply_to or "")
        return "|".join(parts).encode("utf-8")

    def signed_bytes(self) -> bytes:
        """What `sig` / `his_sig` sign: AAD || CT (his-interface 1.1 A)."""
        return self.aad() + self.ct

    def digest(self) -> bytes:
        """Identifies "the same envelope" for idempotent retries: same header, nonce and ciphertext.

        The signature is left out: it is over exactly these bytes, and Ed25519 is deterministic."""
        h = hashlib.sha256()
        for part in (self.aad(), self.nonce, self.ct):
            h.update(len(part).to_bytes(4, "big"))
            h.update(part)
        return h.digest()

    def to_json_obj(self) -> JsonObject:
        obj: JsonObject = {
            "v": self.v,
            "type": self.type.value,
            "suite": self.suite,
            "kid": self.kid,
            "msg_id": self.msg_id,
            "ts": self.ts,
        }
        if self.type is MsgType.INSTRUCTION:
            obj["terminal_id"] = self.party_id
        elif self.type is MsgType.CANCEL:
            obj["terminal_id"] = self.party_id
            obj["reply_to"] = self.reply_to
        else:
            obj["device_id"] = self.party_id
            obj["reply_to"] = self.reply_to
        obj["nonce"] = base64.b64encode(self.nonce).decode("ascii")
        obj["ct"] = base64.b64encode(self.ct).decode("ascii")
        if self.sig is not None:
            obj[SIG_FIELD[self.type.value]] = base64.b64encode(self.sig).decode("ascii")
        return obj

    def to_bytes(self) -> bytes:
        return dumps_compact(self.to_json_obj())


def _b64(f: Fields, field: str, *, exact: int | None = None, minimum: int = 0) -> bytes:
    text = f.req_str(field, max_len=MAX_CT_B64)
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"envelope.{field} is not standard base64") from None
    # validate=True still accepts non-canonical padding bits; re-encoding catches those.
    if base64.b64encode(raw).decode("ascii") != text:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"envelope.{field} is not canonical base64")
    if exact is not None and len(raw) != exact:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"envelope.{field} must be {exact} bytes, got {len(raw)}")
    if len(raw) < minimum:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"envelope.{field} must be at least {minimum} bytes, got {len(raw)}")
    return raw


def parse_envelope(data: bytes | str | Mapping[str, object] | Envelope, *, expect: MsgType | None = None) -> Envelope:
    """Check an envelope's shape. Unknown fields are ignored, as the spec requires.

    An `Envelope` (already parsed, e.g. from a DATA frame) is only checked for its type.
    """
    if isinstance(data, Envelope):
        if expect is not None and data.type is not expect:
            raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"envelope.type must be {expect.value!r} here, not {data.type.value!r}")
        return data
    if isinstance(data, (bytes, str)):
        if len(data) > MAX_ENVELOPE_BYTES:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"envelope is larger than {MAX_ENVELOPE_BYTES} bytes")
        obj: Mapping[str, object] = loads_object(data, what="envelope")
    else:
        obj = data
    f = Fields(obj, where="envelope")
    v = f.int("v")
    if v != VERSION:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"envelope.v {v} is not supported; this is version {VERSION}")
    type_text = f.req_str("type", max_len=16)
    try:
        msg_type = MsgType(type_text)
    except ValueError:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE,
                            f"envelope.type {type_text!r} must be 'instruction', 'result' or 'cancel'") from None
    if expect is not None and msg_type is not expect:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"envelope.type must be {expect.value!r} here, not {type_text!r}")
    suite = f.req_str("suite", max_len=32)
    kid = check_id("envelope.kid", f.raw("kid"))
    msg_id = check_id("envelope.msg_id", f.raw("msg_id"))
    ts = f.int("ts", minimum=0, maximum=2**40)
    if msg_type is MsgType.INSTRUCTION:
        party_id = check_id("envelope.terminal_id", f.raw("terminal_id"))
        reply_to = None
    elif msg_type is MsgType.CANCEL:
        party_id = check_id("envelope.terminal_id", f.raw("terminal_id"))
        reply_to = check_id("envelope.reply_to", f.raw("reply_to"))
    else:
        party_id = check_id("envelope.device_id", f.raw("device_id"))
        reply_to = check_id("envelope.reply_to", f.raw("reply_to"))
    nonce = _b64(f, "nonce", exact=NONCE_SIZE)
    ct = _b64(f, "ct", minimum=TAG_SIZE)
    sig_field = SIG_FIELD[msg_type.value]
    sig = _b64(f, sig_field, exact=signing.SIGNATURE_SIZE) if f.has(sig_field) else None
    return Envelope(v, msg_type, suite, kid, msg_id, ts, party_id, reply_to, nonce, ct, sig)


def open_envelope(envelope: Envelope, keys: KeyRing) -> bytes:
    """Check suite and kid, verify the tag, return the plaintext bytes."""
    suite = get_suite(envelope.suite)
    key = keys.key_for(envelope.kid, envelope.suite)
    try:
        return suite.open(key.secret, envelope.nonce, envelope.ct, envelope.aad())
    except AuthenticationError:
        raise ProtocolError(
            ErrorCode.AUTH_FAILED,
            "the envelope does not verify: wrong key, or header, nonce or ciphertext altered",
        ) from None


def seal(
    *,
    msg_type: MsgType,
    key: SharedKey,
    msg_id: str,
    ts: int,
    party_id: str,
    reply_to: str | None,
    plaintext: bytes,
    nonce: bytes,
) -> Envelope:
    """Seal `plaintext`. The caller supplies a fresh random 12-byte nonce (never reused with a key)."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
    check_id("msg_id", msg_id)
    check_id("party_id", party_id)
    if reply_to is not None:
        check_id("reply_to", reply_to)
    if (msg_type is not MsgType.INSTRUCTION) != (reply_to is not None):
        raise ValueError("a result and a cancel have reply_to, an instruction has none")
    header = Envelope(VERSION, msg_type, key.suite, key.kid, msg_id, ts, party_id, reply_to, nonce, b"")
    sealed = get_suite(key.suite).seal(key.secret, nonce, plaintext, header.aad())
    return Envelope(VERSION, msg_type, key.suite, key.kid, msg_id, ts, party_id, reply_to, nonce, sealed)


def sign_envelope(envelope: Envelope, seed: bytes) -> Envelope:
    """The envelope with its signature: a device key for a result (`sig`), HIS's key for an
    instruction (`his_sig`). Ed25519 over AAD || CT, nothing else (1.1 A)."""
    return replace(envelope, sig=signing.sign(seed, envelope.signed_bytes()))


def check_signature(envelope: Envelope, public_keys: tuple[bytes, ...] | list[bytes], *, signer: str) -> None:
    """Raise auth_failed unless the envelope's signature verifies with one of `public_keys`."""
    name = SIG_FIELD[envelope.type.value]
    if envelope.sig is None:
        raise ProtocolError(ErrorCode.AUTH_FAILED, f"the {envelope.type.value} has no {name}: it is not signed by {signer}")
    for public in public_keys:
        try:
            signing.verify(public, envelope.signed_bytes(), envelope.sig)
            return
        except signing.SignatureError:
            continue
    raise ProtocolError(ErrorCode.AUTH_FAILED, f"the {envelope.type.value}'s {name} does not verify with the key of {signer}")


def seal_instruction(instruction: Instruction, *, key: SharedKey, msg_id: str, ts: int, nonce: bytes,
                     his_key_seed: bytes | None = None) -> Envelope:
    """Seal an instruction; with `his_key_seed`, HIS also signs it (`his_sig`, 1.1 B)."""
    envelope = seal(
        msg_type=MsgType.INSTRUCTION,
        key=key,
        msg_id=msg_id,
        ts=ts,
        party_id=instruction.terminal_id,
        reply_to=None,
        plaintext=dumps_compact(encode_instruction(instruction)),
        nonce=nonce,
    )
    return envelope if his_key_seed is None else sign_envelope(envelope, his_key_seed)


def seal_cancel(cancel: Cancel, *, key: SharedKey, msg_id: str, reply_to: str, ts: int, nonce: bytes,
                his_key_seed: bytes | None = None) -> Envelope:
    """Seal a withdrawal of instruction `reply_to` (1.1 C); with `his_key_seed`, signed like an instruction."""
    envelope = seal(msg_type=MsgType.CANCEL, key=key, msg_id=msg_id, ts=ts, party_id=cancel.terminal_id,
                    reply_to=reply_to, plaintext=dumps_compact(encode_cancel(cancel)), nonce=nonce)
    return envelope if his_key_seed is None else sign_envelope(envelope, his_key_seed)


def seal_result(result: Result, *, key: SharedKey, msg_id: str, reply_to: str, ts: int, nonce: bytes,
                device_key_seed: bytes | None = None) -> Envelope:
    """Seal a result; a device signs every result it sends with its own key (`device_key_seed`, 1.1 A)."""
    envelope = seal(
        msg_type=MsgType.RESULT,
        key=key,
        msg_id=msg_id,
        ts=ts,
        party_id=result.device_id,
        reply_to=reply_to,
        plaintext=dumps_compact(encode_result(result)),
        nonce=nonce,
    )
    return envelope if device_key_seed is None else sign_envelope(envelope, device_key_seed)


def open_for_refusal(envelope: Envelope, keys: KeyRing) -> tuple[str, Amount] | None:
    """The order and amount of an instruction the receiver refuses, so that it can answer with a
    sealed result (1.1 A: every refusal that ends an instruction is a signed result). None when it
    cannot: the envelope does not open with `keys` (nothing can be sealed for its sender), or the
    plaintext has no readable order_no and amount (then nothing can be said about which order)."""
    try:
        obj = loads_object(open_envelope(envelope, keys), what="instruction plaintext")
        return check_order_no(obj.get("order_no")), parse_amount(obj.get("amount"), limit_fen=MAX_FEN)
    except ProtocolError:
        return None


@dataclass(frozen=True, slots=True)
class Received:
    """What a receiver accepted: the envelope, its decoded message and the replay verdict."""

    envelope: Envelope
    message: Instruction | Result | Cancel | None  # None for a RETRY: the stored answer is what counts
    verdict: Verdict


def _receive(
    data: bytes | str | Mapping[str, object] | Envelope,
    expect: MsgType,
    keys: KeyRing,
    now: float,
    seen: SeenStore | None,
    answer_ttl_s: float,
    check_sig: Callable[[Envelope], None],
) -> tuple[Envelope, bytes, Verdict]:
    # Order matters and is part of the contract (docs/his-interface.md, "Order of checks"):
    # shape -> suite/kid -> tag -> signature -> idempotency -> clock -> plaintext. The tag comes
    # before the clock so only key holders learn anything; idempotency comes before the clock so an
    # identical retry still gets its stored answer after the window has passed.
    envelope = parse_envelope(data, expect=expect)
    plaintext = open_envelope(envelope, keys)
    check_sig(envelope)
    verdict = Verdict.NEW
    if seen is not None:
        verdict = classify(seen, envelope.kid, envelope.msg_id, envelope.digest(), now, answer_ttl_s)
    return envelope, plaintext, verdict


def _his_sig_check(his_signature: HisSignaturePolicy) -> Callable[[Envelope], None]:
    def check_his_sig(envelope: Envelope) -> None:
        if his_signature.public_keys and (envelope.sig is not None or his_signature.required_for(envelope.terminal_id)):
            check_signature(envelope, his_signature.public_keys, signer="HIS (require_his_signature)")
    return check_his_sig


def receive_cancel(
    data: bytes | str | Mapping[str, object] | Envelope,
    keys: KeyRing,
    *,
    now: float,
    skew_s: int = DEFAULT_SKEW_S,
    his_signature: HisSignaturePolicy = NO_HIS_SIGNATURE,
) -> Received:
    """The receiver's whole check of a withdrawal (1.1 C; bridge and terminal): the instruction's
    order of checks without the msg_id store. A cancel is idempotent by nature (withdrawing twice
    withdraws once), so its msg_id is not remembered; the clock window bounds replays of it, and
    `his_sig` is checked as on an instruction (required where the policy requires it)."""
    envelope, plaintext, verdict = _receive(data, MsgType.CANCEL, keys, now, None, 0.0, _his_sig_check(his_signature))
    check_clock(envelope.ts, now, skew_s)
    cancel = decode_cancel(plaintext, header_terminal_id=envelope.terminal_id)
    return Received(envelope, cancel, verdict)


def receive_instruction(
    data: bytes | str | Mapping[str, object] | Envelope,
    keys: KeyRing,
    *,
    now: float,
    skew_s: int = DEFAULT_SKEW_S,
    limit_fen: int = DEFAULT_LIMIT_FEN,
    seen: SeenStore | None = None,
    answer_ttl_s: float = DEFAULT_ANSWER_TTL_S,
    his_signature: HisSignaturePolicy = NO_HIS_SIGNATURE,
) -> Received:
    """The receiver's whole check of an instruction (bridge and terminal).

    With a `seen` store, an identical retry comes back as Verdict.RETRY with no message (answer
    it from storage); a different envelope under a known msg_id raises msg_id_conflict or replay.
    `his_signature` is the 1.1 B policy: a `his_sig` present is always checked against HIS's keys
    (when any are configured); where it is required, an instruction without one is auth_failed.
    """

    envelope, plaintext, verdict = _receive(data, MsgType.INSTRUCTION, keys, now, seen, answer_ttl_s,
                                            _his_sig_check(his_signature))
    if verdict is Verdict.RETRY:
        return Received(envelope, None, verdict)
    check_clock(envelope.ts, now, skew_s)
    instruction = decode_instruction(plaintext, header_terminal_id=envelope.terminal_id, limit_fen=limit_fen)
    return Received(envelope, instruction, verdict)


def receive_result(
    data: bytes | str | Mapping[str, object] | Envelope,
    keys: KeyRing,
    *,
    now: float,
    skew_s: int = DEFAULT_SKEW_S,
    instruction_ts: int | None = None,
    seen: SeenStore | None = None,
    answer_ttl_s: float = DEFAULT_ANSWER_TTL_S,
    device_keys: Callable[[str], bytes | None] | None = None,
) -> Received:
    """The receiver's whole check of a result (bridge and HIS).

    `device_keys` looks a device_id up in the device registry (its Ed25519 public key, or None):
    the result's `sig` must verify with it (1.1 A), else auth_failed. Only a version-1 receiver
    (the v1 test vectors) passes None; the bridge and HIS always pass their registry.

    A result may be read long after it was sealed (a cable was unplugged, HIS polls later), so its
    `ts` is checked against the instruction it answers, not against "now +- skew": it must not be
    in the future and not before `instruction_ts` (both with `skew_s` of tolerance). The binding
    to one instruction is `reply_to`, which the caller checks against what it sent.
    """
    def check_device_sig(envelope: Envelope) -> None:
        if device_keys is None:
            return
        public = device_keys(envelope.device_id)
        if public is None:
            raise ProtocolError(ErrorCode.AUTH_FAILED, f"device {envelope.device_id} is not in the device registry (step 2)")
        check_signature(envelope, (public,), signer=f"device {envelope.device_id}")

    envelope, plaintext, verdict = _receive(data, MsgType.RESULT, keys, now, seen, answer_ttl_s, check_device_sig)
    if verdict is Verdict.RETRY:
        return Received(envelope, None, verdict)
    check_result_clock(envelope.ts, now, skew_s, instruction_ts)
    result = decode_result(plaintext, header_device_id=envelope.device_id)
    return Received(envelope, result, verdict)
