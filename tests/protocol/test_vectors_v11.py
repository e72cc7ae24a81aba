"""The his-interface 1.1 vectors: reproducible, true of this implementation, and checkable by others."""

import base64
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.registry import parse_device_csv
from protocol.vectors import main
from protocol.vectors_v11 import build_vectors, check_vector
from protocol.vectors import dumps

FILE = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "his-interface-v1.1.json"
PUBLISHED = json.loads(FILE.read_text(encoding="utf-8"))


def _aad(e: dict) -> bytes:
    party = e.get("terminal_id") or e.get("device_id")
    return "|".join(str(x) for x in (e["v"], e["type"], e["suite"], e["kid"], e["msg_id"], e["ts"], party,
                                      e.get("reply_to") or "")).encode()


def test_the_published_file_is_what_the_generator_makes():
    assert FILE.read_text(encoding="utf-8") == dumps(build_vectors()), "run `make vectors` and commit the file"


@pytest.mark.parametrize("vector", PUBLISHED["vectors"], ids=lambda v: v["name"])
def test_every_vector_gets_its_expected_answer(vector):
    assert check_vector(vector, PUBLISHED) == vector["expect"]


def test_coverage_of_the_signature_cases():
    names = {v["name"].split("_", 1)[1]: v["expect"] for v in PUBLISHED["vectors"] if v["suite"] == "AES-256-GCM"}
    for needed, expect in [("result_signed", "accept"), ("result_unsigned", "auth_failed"),
                           ("result_signed_by_another_registered_device", "auth_failed"),
                           ("result_sig_of_another_result", "auth_failed"), ("result_device_not_in_registry", "auth_failed"),
                           ("refund_without_his_sig_required", "auth_failed"), ("instruction_his_signed_required", "accept"),
                           ("clock_fractional_now_past_edge", "accept"), ("clock_fractional_now_future_301", "clock_skew")]:
        assert names[needed] == expect
    assert {v["suite"] for v in PUBLISHED["vectors"]} == {"AES-256-GCM", "SM4-GCM"}
    header = PUBLISHED["device_registry"].splitlines()[0]
    assert header == "device_id,model,serial_no,public_key"


def test_signatures_verify_with_an_independent_ed25519_and_the_test_keys_reproduce_them():
    """What a vendor does: the registry's base64 key, Ed25519 over AAD || CT (OpenSSL here, not ours)."""
    keys = {d.device_id: d.public_key for d in parse_device_csv(PUBLISHED["device_registry"])}
    his = base64.b64decode(PUBLISHED["his_public_key"])
    seeds = {name: bytes.fromhex(h) for name, h in PUBLISHED["test_private_keys"].items()}
    checked = 0
    for v in PUBLISHED["vectors"]:
        e = v["envelope"]
        field = "sig" if e["type"] == "result" else "his_sig"
        if v["expect"] != "accept" or field not in e:
            continue
        public = keys[e["device_id"]] if field == "sig" else his
        message = _aad(e) + base64.b64decode(e["ct"])
        signature = base64.b64decode(e[field])
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
        signer = e["device_id"] if field == "sig" else "his"
        assert Ed25519PrivateKey.from_private_bytes(seeds[signer]).sign(message) == signature  # deterministic
        checked += 1
        with pytest.raises(InvalidSignature):
            Ed25519PublicKey.from_public_bytes(public).verify(signature, message + b"x")
    assert checked >= 8


def test_his_vectors_verify_reads_either_file(capsys, monkeypatch):
    import io

    for name in ("his-interface-v1.json", "his-interface-v1.1.json"):
        monkeypatch.setattr("sys.stdin", io.StringIO((FILE.parent / name).read_text(encoding="utf-8")))
        assert main(["--verify"]) == 0
        assert "vectors as expected" in capsys.readouterr().out
