"""The test vectors of his-interface 1.1 (docs/vectors/his-interface-v1.1.json): signatures.

Version 1's vectors (protocol.vectors) stay as they are: they test the envelope. These add what 1.1
adds: results signed by the device (`sig`, part A), instructions signed by HIS (`his_sig`, part B),
the duplicate_order fields, and the clock window in whole seconds. Shape:

    {"spec": "his-interface-v1.1", "now": <receiver clock>,
     "device_registry": "device_id,model,serial_no,public_key\\r\\n...",   the step-2 CSV HIS holds
     "his_public_key": "<base64>",                                        HIS's key, as the bridge holds it
     "test_private_keys": {"D-SN-000123": "<hex seed>", "his": "<hex seed>", ...},   TEST KEYS ONLY
     "vectors": [{"name", "suite", "key_hex", "envelope", "plaintext", "expect",
                  "require_his_signature": bool, "now": <optional: a receiver clock of its own>}]}

A receiver of these vectors holds the shared key `key_hex` (as in version 1), the device registry
above (a result's `sig` must verify with the public key of its device_id) and HIS's public key (an
instruction's `his_sig` is checked when present, and required where `require_his_signature`).
Ed25519 signatures are deterministic: with the published test seeds a sender reproduces every
`sig` byte for byte. Never use these keys for anything else.
"""

from __future__ import annotations

import base64
import hashlib

from protocol import signing
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import Envelope, MsgType, parse_envelope, receive_instruction, receive_result, seal, sign_envelope
from protocol.errors import ProtocolError
from protocol.registry import DeviceRecord, format_device_csv, parse_device_csv
from protocol.signatures import HisSignaturePolicy
from protocol.strictjson import dumps_compact
from protocol.vectors import INSTRUCTION, KEYS, NOW, RECEIVER_KIDS, REFUND, RESULT, _nonce

SPEC = "his-interface-v1.1"
DEVICE_ID = "D-SN-000123"
OTHER_DEVICE_ID = "D-SN-000124"
SEEDS = {
    DEVICE_ID: hashlib.sha256(b"his-interface test vectors: device D-SN-000123").digest(),
    OTHER_DEVICE_ID: hashlib.sha256(b"his-interface test vectors: device D-SN-000124").digest(),
    "his": hashlib.sha256(b"his-interface test vectors: HIS").digest(),
    "stranger": hashlib.sha256(b"his-interface test vectors: not a registered key").digest(),
}
REGISTRY = [DeviceRecord(DEVICE_ID, "HP-POS-1", "SN000123", signing.public_key(SEEDS[DEVICE_ID])),
            DeviceRecord(OTHER_DEVICE_ID, "HP-POS-1", "SN000124", signing.public_key(SEEDS[OTHER_DEVICE_ID]))]
HIS_PUBLIC_KEY = signing.public_key(SEEDS["his"])

REFUSED = dict(RESULT, pay_order_no="", pay_status="FAILED", pay_channel=None, error_code="unknown_terminal",
               error_message="terminal 'T0009' is not provisioned on device D-SN-000123")
DUPLICATE = dict(RESULT, error_code="duplicate_order", finished_at=NOW + 90, refunded_fen=500,
                 error_message="order already collected (instruction HIS-0001-000042); nothing was charged again")


def _envelope(name: str, suite: str, plaintext: dict | bytes, *, result: bool, v1_name: str | None = None,
              **header: object) -> Envelope:
    """Sealed as the version-1 vectors seal; `v1_name` reuses that version-1 vector's nonce, so the
    envelope is byte for byte the version-1 one and 1.1 only adds the signature."""
    raw = plaintext if isinstance(plaintext, bytes) else dumps_compact(plaintext)
    fields: dict[str, object] = {"msg_id": "HIS-0001-000042", "ts": NOW, "party_id": "T0001", "reply_to": None}
    if result:
        fields.update(msg_id="R-D-SN-000123-000001", party_id=DEVICE_ID, reply_to="HIS-0001-000042", ts=NOW + 42)
    fields.update(header)
    return seal(msg_type=MsgType.RESULT if result else MsgType.INSTRUCTION, key=SharedKey(RECEIVER_KIDS[suite], suite, KEYS[suite]),
                msg_id=fields["msg_id"], ts=fields["ts"], party_id=fields["party_id"],  # type: ignore[arg-type]
                reply_to=fields["reply_to"], plaintext=raw,  # type: ignore[arg-type]
                nonce=_nonce(f"{suite}/{v1_name}" if v1_name else f"1.1/{suite}/{name}"))


def _with_sig(envelope: Envelope, seed: str | None) -> dict:
    signed = envelope if seed is None else sign_envelope(envelope, SEEDS[seed])
    return signed.to_json_obj()


def _set_b64(obj: dict, field: str, raw: bytes) -> None:
    obj[field] = base64.b64encode(raw).decode()


def _cases(suite: str) -> list[dict]:
    cases: list[dict] = []

    def add(name: str, envelope: dict, plaintext: dict | None, expect: str, *, required: bool = False,
            now: float | None = None) -> None:
        case = {"name": name, "envelope": envelope, "plaintext": plaintext, "expect": expect, "require_his_signature": required}
        if now is not None:
            case["now"] = now
        cases.append(case)

    # Part A: results signed by the device.
    success = _envelope("result_signed", suite, RESULT, result=True, v1_name="result_success")
    add("result_signed", _with_sig(success, DEVICE_ID), RESULT, "accept")
    add("result_refusal_signed", _with_sig(_envelope("refusal", suite, REFUSED, result=True, msg_id="R-D-SN-000123-000003"),
                                           DEVICE_ID), REFUSED, "accept")
    add("result_duplicate_order_signed", _with_sig(_envelope("duplicate", suite, DUPLICATE, result=True,
                                                             msg_id="R-D-SN-000123-000004", reply_to="HIS-0001-000044",
                                                             ts=NOW + 90), DEVICE_ID), DUPLICATE, "accept")
    add("result_unsigned", _with_sig(success, None), None, "auth_failed")
    add("result_signed_by_an_unregistered_key", _with_sig(success, "stranger"), None, "auth_failed")
    add("result_signed_by_another_registered_device", _with_sig(success, OTHER_DEVICE_ID), None, "auth_failed")
    flipped = _with_sig(success, DEVICE_ID)
    raw = bytearray(base64.b64decode(flipped["sig"]))
    raw[10] ^= 0x01
    _set_b64(flipped, "sig", bytes(raw))
    add("result_sig_bit_flipped", flipped, None, "auth_failed")
    moved = _with_sig(_envelope("result_other", suite, RESULT, result=True, msg_id="R-D-SN-000123-000002"), None)
    moved["sig"] = _with_sig(success, DEVICE_ID)["sig"]  # a genuine signature of another result
    add("result_sig_of_another_result", moved, None, "auth_failed")
    stranger = _envelope("result_stranger", suite, dict(RESULT, device_id="D-SN-999999"), result=True, party_id="D-SN-999999")
    add("result_device_not_in_registry", _with_sig(stranger, "stranger"), None, "auth_failed")
    bad = _with_sig(success, DEVICE_ID)
    bad["sig"] = "not base64!"
    add("result_sig_not_base64", bad, None, "bad_envelope")
    short = _with_sig(success, DEVICE_ID)
    _set_b64(short, "sig", bytes(63))
    add("result_sig_63_bytes", short, None, "bad_envelope")
    # Part B: instructions signed by HIS.
    collect = _envelope("instruction_his_signed", suite, INSTRUCTION, result=False, v1_name="instruction_collect")
    refund = _envelope("refund_his_signed", suite, REFUND, result=False, msg_id="HIS-0001-000043")
    add("instruction_his_signed_required", _with_sig(collect, "his"), INSTRUCTION, "accept", required=True)
    add("refund_his_signed_required", _with_sig(refund, "his"), REFUND, "accept", required=True)
    add("refund_without_his_sig_required", _with_sig(refund, None), None, "auth_failed", required=True)
    add("instruction_without_his_sig_not_required", _with_sig(collect, None), INSTRUCTION, "accept")
    add("instruction_his_sig_by_another_key", _with_sig(collect, "stranger"), None, "auth_failed")
    add("instruction_his_sig_by_a_device_key", _with_sig(collect, DEVICE_ID), None, "auth_failed", required=True)
    bad_his = _with_sig(collect, "his")
    bad_his["his_sig"] = bad_his["his_sig"][:-4]
    add("instruction_his_sig_truncated", bad_his, None, "bad_envelope")
    # The clock window in whole seconds, whatever the fraction of the receiver's clock (finding 9).
    for label, ts, expect in (("past_edge", NOW - 300, "accept"), ("future_edge", NOW + 300, "accept"),
                              ("past_301", NOW - 301, "clock_skew"), ("future_301", NOW + 301, "clock_skew")):
        env = _envelope(f"clock_{label}", suite, INSTRUCTION, result=False, ts=ts, msg_id=f"HIS-0001-{label}")
        add(f"clock_fractional_now_{label}", _with_sig(env, None), INSTRUCTION if expect == "accept" else None, expect,
            now=NOW + 0.75)
    return cases


def build_vectors() -> dict:
    vectors = []
    for suite in ("AES-256-GCM", "SM4-GCM"):
        prefix = "aes256gcm" if suite == "AES-256-GCM" else "sm4gcm"
        for case in _cases(suite):
            vectors.append({"name": f"{prefix}_{case.pop('name')}", "suite": suite, "key_hex": KEYS[suite].hex(), **case})
    return {
        "spec": SPEC,
        "now": NOW,
        "device_registry": format_device_csv(REGISTRY, for_his=True),
        "his_public_key": signing.encode_public_key(HIS_PUBLIC_KEY),
        "test_private_keys": {name: seed.hex() for name, seed in SEEDS.items()},
        "vectors": vectors,
    }


def check_vector(vector: dict, data: dict) -> str:
    """What a conforming 1.1 receiver answers for one vector: "accept" or the error code."""
    suite = vector["suite"]
    ring = KeyRing([SharedKey(RECEIVER_KIDS[suite], suite, bytes.fromhex(vector["key_hex"]))])
    registry = {d.device_id: d.public_key for d in parse_device_csv(data["device_registry"], "device_registry")}
    policy = HisSignaturePolicy((signing.decode_public_key(data["his_public_key"]),), bool(vector["require_his_signature"]))
    now = vector.get("now", data["now"])
    try:
        envelope = parse_envelope(vector["envelope"])
        if envelope.type is MsgType.RESULT:
            receive_result(envelope, ring, now=now, device_keys=registry.get)
        else:
            receive_instruction(envelope, ring, now=now, his_signature=policy)
    except ProtocolError as exc:
        return exc.code.value
    return "accept"

