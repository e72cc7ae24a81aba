"""The published test vectors (docs/vectors/his-interface-v1.json): how they are made and checked.

Shape (fixed, part of what we promise vendors):
    {"spec": "his-interface-v1", "now": <receiver clock, unix seconds>,
     "vectors": [{"name": str, "suite": str, "key_hex": str, "envelope": {...as sent...},
                  "plaintext": {...} or null, "expect": "accept" or an error code}]}

`receiver` says who receives such an envelope in the system: ["bridge", "POS"] for instructions
and withdrawals (HIS sends them; the bridge checks them, then the POS does again), ["HIS", "bridge"]
for results (the POS sends them; the bridge checks them before HIS does). A vendor's HIS runs the
result vectors as a receiver and seals the instruction vectors as a sender.

The receiver of every vector holds exactly one key, `key_hex`, of `suite`, under kid `k2026a`
(AES-256-GCM) or `k2026s` (SM4-GCM); its clock reads `now`; it allows +-300 s of skew and the
default per-transaction limit of 50,000.00 yuan; results are checked without an instruction ts.
`plaintext` is what was sealed, or null where the envelope must be refused before anything is
decrypted. Nonces are fixed here so the file is reproducible: a real sender draws 12 random bytes
for every message and never reuses a nonce with a key.

    python -m protocol.vectors [--spec 1.1]            print the vectors
    python -m protocol.vectors [--spec 1.1] --write F  write them to F (`make vectors` writes both files)
    python -m protocol.vectors --verify                read a vectors file (either spec) on stdin, check each one

His-interface 1.1 adds signatures; its vectors are protocol.vectors_v11 (his-interface-v1.1.json).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from typing import Any, Callable

from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import MsgType, receive_instruction, receive_result, seal
from protocol.errors import ProtocolError
from protocol.strictjson import dumps_compact

JsonObj = dict[str, Any]  # a JSON object as json.loads gives it

SPEC = "his-interface-v1"
NOW = 1_795_000_000
RECEIVER_KIDS = {"AES-256-GCM": "k2026a", "SM4-GCM": "k2026s"}
KEYS = {
    "AES-256-GCM": bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
    "SM4-GCM": bytes.fromhex("0123456789abcdeffedcba9876543210"),
}
WRONG_KEYS = {suite: hashlib.sha256(b"not the shared key" + key).digest()[: len(key)] for suite, key in KEYS.items()}

INSTRUCTION = {
    "terminal_id": "T0001",
    "order_no": "MZ20261122000123",
    "amount": "+12.50",
    "display": {"patient": "张*明", "items": [{"name": "阿莫西林胶囊", "qty": "2", "amount": "12.50"}]},
}
REFUND = {"terminal_id": "T0001", "order_no": "MZ20261122000123", "amount": "-5.00"}
RESULT = {
    "device_id": "D-SN-000123",
    "order_no": "MZ20261122000123",
    "pay_order_no": "4200001234202611220000000001",
    "pay_status": "SUCCESS",
    "pay_channel": "WECHAT",
    "amount": "+12.50",
    "finished_at": NOW + 42,
    "error_code": None,
    "error_message": None,
}
REFUNDED = dict(RESULT, pay_order_no="50300001234202611220000000002", pay_status="REFUNDED", amount="-5.00")


def _nonce(name: str) -> bytes:
    return hashlib.sha256(b"vector nonce " + name.encode()).digest()[:12]


def _seal_raw(name: str, suite: str, plaintext: bytes, *, result: bool = False, key: bytes | None = None, **header: Any) -> JsonObj:
    shared = SharedKey(RECEIVER_KIDS[suite], suite, key or KEYS[suite])
    fields: JsonObj = {"msg_id": "HIS-0001-000042", "ts": NOW, "party_id": "T0001", "reply_to": None}
    if result:
        fields.update(msg_id="R-D-SN-000123-000001", party_id="D-SN-000123", reply_to="HIS-0001-000042", ts=NOW + 42)
    fields.update(header)
    envelope = seal(
        msg_type=MsgType.RESULT if result else MsgType.INSTRUCTION,
        key=shared,
        msg_id=fields["msg_id"],
        ts=fields["ts"],
        party_id=fields["party_id"],
        reply_to=fields["reply_to"],
        plaintext=plaintext,
        nonce=_nonce(f"{suite}/{name}"),
    )
    return envelope.to_json_obj()


def _flip(b64: str, index: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[index % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _cases(suite: str) -> list[tuple[str, JsonObj, JsonObj | None, str]]:
    """(name, envelope, plaintext, expect) for one suite."""
    cases: list[tuple[str, JsonObj, JsonObj | None, str]] = []

    def add(name: str, plaintext: JsonObj | bytes, expect: str, *, mutate: Callable[[JsonObj], None] | None = None, show: bool = True, **kw: Any) -> None:
        raw = plaintext if isinstance(plaintext, bytes) else dumps_compact(plaintext)
        envelope = _seal_raw(name, suite, raw, **kw)
        if mutate is not None:
            mutate(envelope)
        shown = None
        if show and not isinstance(plaintext, bytes):
            shown = plaintext
        cases.append((name, envelope, shown, expect))

    # Accepted messages.
    add("instruction_collect", INSTRUCTION, "accept")
    add("instruction_refund", REFUND, "accept", msg_id="HIS-0001-000043")
    add("result_success", RESULT, "accept", result=True)
    add("result_refunded", REFUNDED, "accept", result=True, msg_id="R-D-SN-000123-000002", reply_to="HIS-0001-000043")
    add("result_closed_no_channel", dict(RESULT, pay_order_no="", pay_status="CLOSED", pay_channel=None, error_code="cancelled"), "accept", result=True)
    # Tampering: the tag covers header, nonce and ciphertext.
    add("tampered_header_ts", INSTRUCTION, "auth_failed", mutate=lambda e: e.update(ts=NOW + 1), show=False)
    add("tampered_header_terminal_id", INSTRUCTION, "auth_failed", mutate=lambda e: e.update(terminal_id="T0002"), show=False)
    add("tampered_header_msg_id", INSTRUCTION, "auth_failed", mutate=lambda e: e.update(msg_id="HIS-0001-000099"), show=False)
    add("tampered_result_reply_to", RESULT, "auth_failed", result=True, mutate=lambda e: e.update(reply_to="HIS-0001-000099"), show=False)
    add("tampered_result_device_id", RESULT, "auth_failed", result=True, mutate=lambda e: e.update(device_id="D-SN-999999"), show=False)
    add("tampered_ciphertext_first_byte", INSTRUCTION, "auth_failed", mutate=lambda e: e.update(ct=_flip(e["ct"], 0)), show=False)
    add("tampered_tag_last_byte", INSTRUCTION, "auth_failed", mutate=lambda e: e.update(ct=_flip(e["ct"], -1)), show=False)
    add("tampered_nonce", INSTRUCTION, "auth_failed", mutate=lambda e: e.update(nonce=_flip(e["nonce"], 5)), show=False)
    add("wrong_key", INSTRUCTION, "auth_failed", key=WRONG_KEYS[suite], show=False)
    # Amounts, inside a genuine envelope: the receiver decrypts and refuses.
    for label, amount in [
        ("one_decimal", "+12.5"),
        ("three_decimals", "+12.500"),
        ("no_sign", "12.50"),
        ("negative_zero", "-0.00"),
        ("positive_zero", "+0.00"),
        ("exponent", "+1e3"),
        ("leading_zero", "+012.50"),
        ("double_sign", "--12.50"),
        ("space", "+ 12.50"),
        ("fullwidth_digits", "+１２.５０"),
        ("too_many_digits", "+12345678901.00"),
        ("over_default_limit", "+50000.01"),
    ]:
        add(f"bad_amount_{label}", dict(INSTRUCTION, amount=amount), "bad_amount")
    add("bad_amount_number_not_string", dict(INSTRUCTION, amount=12.5), "bad_amount")
    add("bad_amount_boolean", dict(INSTRUCTION, amount=True), "bad_amount")
    add("bad_order_no_space", dict(INSTRUCTION, order_no="MZ 2026"), "bad_order_no")
    add("bad_order_no_too_long", dict(INSTRUCTION, order_no="M" * 33), "bad_order_no")
    add("plaintext_terminal_differs_from_header", dict(INSTRUCTION, terminal_id="T0002"), "unknown_terminal")
    add(
        "plaintext_duplicate_amount_key",
        b'{"terminal_id":"T0001","order_no":"MZ20261122000123","amount":"+12.50","amount":"-9999.00"}',
        "malformed_json",
    )
    # Clock.
    add("clock_skew_past", INSTRUCTION, "clock_skew", ts=NOW - 301, show=False)
    add("clock_skew_future", INSTRUCTION, "clock_skew", ts=NOW + 301, show=False)
    add("clock_edge_accepted", INSTRUCTION, "accept", ts=NOW - 300)
    add("result_from_the_future", RESULT, "clock_skew", result=True, ts=NOW + 301, show=False)
    # Malformed envelope fields.
    for label, mutate, expect in [
        ("missing_nonce", lambda e: e.pop("nonce"), "bad_envelope"),
        ("short_nonce", lambda e: e.update(nonce=base64.b64encode(bytes(8)).decode()), "bad_envelope"),
        ("nonce_not_base64", lambda e: e.update(nonce="@@@@@@@@@@@@@@@@"), "bad_envelope"),
        ("ct_shorter_than_tag", lambda e: e.update(ct=base64.b64encode(bytes(15)).decode()), "bad_envelope"),
        ("ts_as_string", lambda e: e.update(ts=str(NOW)), "bad_envelope"),
        ("ts_as_boolean", lambda e: e.update(ts=True), "bad_envelope"),
        ("ts_with_fraction", lambda e: e.update(ts=NOW + 0.5), "bad_envelope"),
        ("version_2", lambda e: e.update(v=2), "bad_envelope"),
        ("unknown_type", lambda e: e.update(type="payment"), "bad_envelope"),
        ("msg_id_with_space", lambda e: e.update(msg_id="HIS 42"), "bad_envelope"),
        ("terminal_id_too_long", lambda e: e.update(terminal_id="T" * 65), "bad_envelope"),
        ("missing_terminal_id", lambda e: e.pop("terminal_id"), "bad_envelope"),
        ("unsupported_suite", lambda e: e.update(suite="AES-128-CBC"), "unsupported_suite"),
        ("unknown_kid", lambda e: e.update(kid="k1999"), "unknown_kid"),
    ]:
        add(f"malformed_{label}", INSTRUCTION, expect, mutate=mutate, show=False)
    add("unknown_header_field_ignored", INSTRUCTION, "accept", mutate=lambda e: e.update({"x-his-trace": "abc"}))
    return cases


def build_vectors() -> JsonObj:
    vectors = []
    for suite in ("AES-256-GCM", "SM4-GCM"):
        for name, envelope, plaintext, expect in _cases(suite):
            prefix = "aes256gcm" if suite == "AES-256-GCM" else "sm4gcm"
            vectors.append(
                {
                    "name": f"{prefix}_{name}",
                    "suite": suite,
                    "key_hex": KEYS[suite].hex(),
                    "receiver": receiver_of(envelope),
                    "envelope": envelope,
                    "plaintext": plaintext,
                    "expect": expect,
                }
            )
    return {"spec": SPEC, "now": NOW, "vectors": vectors}


def receiver_of(envelope: JsonObj) -> list[str]:
    """Who receives such an envelope (the same rule check_vector uses to pick its receiver)."""
    return ["HIS", "bridge"] if envelope.get("type") == MsgType.RESULT.value else ["bridge", "POS"]


def check_vector(vector: JsonObj, now: int) -> str:
    """What a conforming receiver answers for one vector: "accept" or the error code."""
    suite = vector["suite"]
    ring = KeyRing([SharedKey(RECEIVER_KIDS[suite], suite, bytes.fromhex(vector["key_hex"]))])
    envelope = vector["envelope"]
    try:
        if envelope.get("type") == MsgType.RESULT.value:
            receive_result(envelope, ring, now=now)
        else:
            receive_instruction(envelope, ring, now=now)
    except ProtocolError as exc:
        return exc.code.value
    return "accept"


def dumps(vectors: JsonObj) -> str:
    return json.dumps(vectors, ensure_ascii=False, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    from protocol import vectors_v11

    parser = argparse.ArgumentParser(
        prog="his-vectors",
        description="Print the HIS interface test vectors (his-interface-v1, or 1.1 with --spec 1.1), or verify a "
        "vectors file read on stdin against this implementation.",
    )
    parser.add_argument("--spec", choices=("1", "1.1"), default="1", help="which vectors to print (default 1)")
    parser.add_argument("--write", metavar="FILE", help="write the vectors to FILE instead of standard output")
    parser.add_argument("--verify", action="store_true", help="read a vectors JSON file on stdin and check every vector")
    args = parser.parse_args(argv)
    if not args.verify:
        text = dumps(vectors_v11.build_vectors() if args.spec == "1.1" else build_vectors())
        if args.write:
            with open(args.write, "w", encoding="utf-8", newline="\n") as out:
                out.write(text)
        else:
            sys.stdout.write(text)
        return 0
    data = json.load(sys.stdin)
    failures = 0
    for vector in data["vectors"]:
        got = vectors_v11.check_vector(vector, data) if data.get("spec") == vectors_v11.SPEC else check_vector(vector, data["now"])
        if got != vector["expect"]:
            failures += 1
            print(f"FAIL {vector['name']}: expected {vector['expect']}, got {got}")
    print(f"{len(data['vectors']) - failures}/{len(data['vectors'])} vectors as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
