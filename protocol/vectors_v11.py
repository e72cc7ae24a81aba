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

His-interface 1.1 C adds the withdrawal (`cancel` envelopes: accepted, tampered, unsigned where
HIS signatures are required, outside the clock window, naming another terminal) and the
instruction's `expires_at` (accepted; already past with the skew: expired_undelivered; more than a
day after ts, or not an integer: bad_envelope). Each vector names its `receiver` (protocol.vectors).

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
from protocol.envelope import (Envelope, MsgType, parse_envelope, receive_cancel, receive_instruction, receive_result, seal,
                               sign_envelope)
from protocol.freshness import check_expiry
from protocol.messages import Instruction
from protocol.errors import ProtocolError
from protocol.registry import DeviceRecord, format_device_csv, parse_device_csv
from protocol.signatures import HisSignaturePolicy
from protocol.strictjson import dumps_compact
from protocol.vectors import INSTRUCTION, KEYS, NOW, RECEIVER_KIDS, REFUND, RESULT, JsonObj, _nonce, receiver_of

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


def _envelope(name: str, suite: str, plaintext: JsonObj | bytes, *, result: bool, v1_name: str | None = None,
              **header: object) -> Envelope:
    """Sealed as the version-1 vectors seal; `v1_name` reuses that version-1 vector's nonce, so the
    envelope is byte for byte the version-1 one and 1.1 only adds the signature."""
    raw = plaintext if isinstance(plaintext, bytes) else dumps_compact(plaintext)
    fields: JsonObj = {"msg_id": "HIS-0001-000042", "ts": NOW, "party_id": "T0001", "reply_to": None}
    if result:
        fields.update(msg_id="R-D-SN-000123-000001", party_id=DEVICE_ID, reply_to="HIS-0001-000042", ts=NOW + 42)
    msg_type = MsgType.RESULT if result else MsgType(str(header.pop("msg_type", MsgType.INSTRUCTION.value)))
    fields.update(header)
    return seal(msg_type=msg_type, key=SharedKey(RECEIVER_KIDS[suite], suite, KEYS[suite]),
                msg_id=fields["msg_id"], ts=fields["ts"], party_id=fields["party_id"],
                reply_to=fields["reply_to"], plaintext=raw,
                nonce=_nonce(f"{suite}/{v1_name}" if v1_name else f"1.1/{suite}/{name}"))


def _with_sig(envelope: Envelope, seed: str | None) -> JsonObj:
    signed = envelope if seed is None else sign_envelope(envelope, SEEDS[seed])
    return signed.to_json_obj()


def _set_b64(obj: JsonObj, field: str, raw: bytes) -> None:
    obj[field] = base64.b64encode(raw).decode()


def _cases(suite: str) -> list[JsonObj]:
    cases: list[JsonObj] = []

    def add(name: str, envelope: JsonObj, plaintext: JsonObj | None, expect: str, *, required: bool = False,
            now: float | None = None) -> None:
        case: JsonObj = {"name": name, "envelope": envelope, "plaintext": plaintext, "expect": expect, "require_his_signature": required}
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
    # Part C: expiry (the plaintext's expires_at) and withdrawal (`cancel` envelopes).
    expiring = dict(INSTRUCTION, expires_at=NOW + 600)
    add("instruction_expires_at", _with_sig(_envelope("expires_at", suite, expiring, result=False,
                                                      msg_id="HIS-0001-000045"), None), expiring, "accept")
    edge = dict(REFUND, expires_at=NOW - 300)
    add("instruction_expires_at_past_within_skew", _with_sig(_envelope("expires_edge", suite, edge, result=False,
                                                                       msg_id="HIS-0001-000046"), None), edge, "accept")
    add("instruction_expires_at_passed", _with_sig(_envelope("expires_passed", suite, dict(REFUND, expires_at=NOW - 301),
                                                             result=False, msg_id="HIS-0001-000047"), None),
        None, "expired_undelivered")
    add("instruction_expires_at_beyond_a_day", _with_sig(_envelope("expires_far", suite, dict(INSTRUCTION, expires_at=NOW + 86_401),
                                                                   result=False, msg_id="HIS-0001-000048"), None),
        None, "bad_envelope")
    add("instruction_expires_at_as_string", _with_sig(_envelope("expires_str", suite, dict(INSTRUCTION, expires_at=str(NOW + 600)),
                                                                result=False, msg_id="HIS-0001-000049"), None),
        None, "bad_envelope")
    withdrawal = {"terminal_id": "T0001", "order_no": "MZ20261122000123"}

    def cancel(name: str, plaintext: JsonObj = withdrawal, **header: object) -> Envelope:
        fields: JsonObj = {"msg_id": "HIS-0001-000050", "reply_to": "HIS-0001-000042", "msg_type": "cancel"}
        fields.update(header)
        return _envelope(name, suite, plaintext, result=False, **fields)

    add("cancel", _with_sig(cancel("cancel"), None), withdrawal, "accept")
    add("cancel_his_signed_required", _with_sig(cancel("cancel_signed"), "his"), withdrawal, "accept", required=True)
    add("cancel_without_his_sig_required", _with_sig(cancel("cancel_signed"), None), None, "auth_failed", required=True)
    moved = _with_sig(cancel("cancel"), None)
    moved["reply_to"] = "HIS-0001-000043"  # aimed at another instruction after sealing
    add("cancel_tampered_reply_to", moved, None, "auth_failed")
    add("cancel_clock_skew_past", _with_sig(cancel("cancel_old", ts=NOW - 301), None), None, "clock_skew")
    other = {"terminal_id": "T0002", "order_no": "MZ20261122000123"}
    add("cancel_plaintext_terminal_differs_from_header", _with_sig(cancel("cancel_other", other), None), None, "unknown_terminal")
    add("cancel_bad_order_no", _with_sig(cancel("cancel_bad_order", {"terminal_id": "T0001", "order_no": "MZ 2026"}), None),
        None, "bad_order_no")
    missing = _with_sig(cancel("cancel"), None)
    del missing["reply_to"]
    add("cancel_without_reply_to", missing, None, "bad_envelope")
    # One rule for field errors (docs/his-interface.md §9): whatever is wrong with order_no is
    # bad_order_no, with amount bad_amount, with anything else (display included) bad_envelope.
    without = {k: v for k, v in INSTRUCTION.items() if k != "order_no"}
    for label, plaintext, expect in (
        ("order_no_number", dict(INSTRUCTION, order_no=20261122000123), "bad_order_no"),
        ("order_no_missing", without, "bad_order_no"),
        ("amount_missing", {k: v for k, v in INSTRUCTION.items() if k != "amount"}, "bad_amount"),
        ("amount_null", dict(INSTRUCTION, amount=None), "bad_amount"),
        ("terminal_id_number", dict(INSTRUCTION, terminal_id=1), "bad_envelope"),
        ("display_item_signed_amount", dict(REFUND, display={"items": [{"name": "退药", "qty": "1", "amount": "-5.00"}]}),
         "bad_envelope"),
        ("display_item_without_qty", dict(INSTRUCTION, display={"items": [{"name": "阿莫西林胶囊", "amount": "12.50"}]}),
         "bad_envelope"),
        ("display_items_not_a_list", dict(INSTRUCTION, display={"items": {"name": "阿莫西林胶囊"}}), "bad_envelope"),
        # Invisible and control characters (categories Cc, Cf, Cs, Co, Cn, Zl, Zp) are refused in text;
        # every space (Zs) is fine: U+3000, the ideographic space, is common in Chinese names.
        ("patient_zero_width_space", dict(INSTRUCTION, display={"patient": "张\u200b*明"}), "bad_envelope"),
        ("patient_right_to_left_override", dict(INSTRUCTION, display={"patient": "张\u202e*明"}), "bad_envelope"),
        ("item_name_line_separator", dict(INSTRUCTION, display={"items": [{"name": "阿莫西林\u2028胶囊", "qty": "2",
                                                                          "amount": "12.50"}]}), "bad_envelope"),
        ("patient_ideographic_space", dict(INSTRUCTION, display={"patient": "欧阳\u3000*明"}), "accept"),
        ("patient_32_code_points", dict(INSTRUCTION, display={"patient": "张" + "*" * 30 + "明"}), "accept"),
        ("patient_33_code_points", dict(INSTRUCTION, display={"patient": "张" + "*" * 31 + "明"}), "bad_envelope"),
    ):
        env = _envelope(f"field_{label}", suite, plaintext, result=False, msg_id=f"HIS-0001-{label[:40]}")
        add(f"instruction_{label}", _with_sig(env, None), plaintext if expect == "accept" else None, expect)
    return cases


def build_vectors() -> JsonObj:
    vectors = []
    for suite in ("AES-256-GCM", "SM4-GCM"):
        prefix = "aes256gcm" if suite == "AES-256-GCM" else "sm4gcm"
        for case in _cases(suite):
            vectors.append({"name": f"{prefix}_{case.pop('name')}", "suite": suite, "key_hex": KEYS[suite].hex(),
                            "receiver": receiver_of(case["envelope"]), **case})
    return {
        "spec": SPEC,
        "now": NOW,
        "device_registry": format_device_csv(REGISTRY, for_his=True),
        "his_public_key": signing.encode_public_key(HIS_PUBLIC_KEY),
        "test_private_keys": {name: seed.hex() for name, seed in SEEDS.items()},
        "vectors": vectors,
    }


def check_vector(vector: JsonObj, data: JsonObj) -> str:
    """What a conforming 1.1 receiver answers for one vector: "accept" or the error code."""
    suite = vector["suite"]
    ring = KeyRing([SharedKey(RECEIVER_KIDS[suite], suite, bytes.fromhex(vector["key_hex"]))])
    registry = {d.device_id: d.public_key for d in parse_device_csv(data["device_registry"], "device_registry")}
    policy = HisSignaturePolicy((signing.decode_public_key(data["his_public_key"]),), bool(vector["require_his_signature"]))
    now = float(vector["now"] if "now" in vector else data["now"])
    try:
        envelope = parse_envelope(vector["envelope"])
        if envelope.type is MsgType.RESULT:
            receive_result(envelope, ring, now=now, device_keys=registry.get)
        elif envelope.type is MsgType.CANCEL:
            receive_cancel(envelope, ring, now=now, his_signature=policy)
        else:
            instruction = receive_instruction(envelope, ring, now=now, his_signature=policy).message
            if isinstance(instruction, Instruction) and instruction.expires_at is not None:
                check_expiry(instruction.expires_at, envelope.ts, now)
    except ProtocolError as exc:
        return exc.code.value
    return "accept"

