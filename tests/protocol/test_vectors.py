"""The published test vectors: reproducible, complete, and true of this implementation."""

import base64
import json
from pathlib import Path

import pytest
from Crypto.Cipher import AES

from protocol.vectors import build_vectors, check_vector, dumps

FILE = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "his-interface-v1.json"
PUBLISHED = json.loads(FILE.read_text(encoding="utf-8"))


def test_the_published_file_is_what_the_generator_makes():
    assert FILE.read_text(encoding="utf-8") == dumps(build_vectors()), "run `make vectors` and commit the file"


def test_shape():
    assert set(PUBLISHED) == {"spec", "now", "vectors"} and PUBLISHED["spec"] == "his-interface-v1"
    for v in PUBLISHED["vectors"]:
        assert set(v) == {"name", "suite", "key_hex", "receiver", "envelope", "plaintext", "expect"}
        assert v["receiver"] == (["HIS", "bridge"] if v["envelope"].get("type") == "result" else ["bridge", "POS"])
    names = [v["name"] for v in PUBLISHED["vectors"]]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("vector", PUBLISHED["vectors"], ids=lambda v: v["name"])
def test_every_vector_gets_its_expected_answer(vector):
    assert check_vector(vector, PUBLISHED["now"]) == vector["expect"]


def test_coverage_of_the_required_cases():
    by_suite = {}
    for v in PUBLISHED["vectors"]:
        by_suite.setdefault(v["suite"], set()).add((v["envelope"].get("type"), v["expect"]))
    required = {
        ("instruction", "accept"), ("result", "accept"), ("instruction", "auth_failed"), ("result", "auth_failed"),
        ("instruction", "bad_amount"), ("instruction", "clock_skew"), ("instruction", "bad_envelope"),
        ("instruction", "bad_order_no"), ("instruction", "unknown_kid"), ("instruction", "unsupported_suite"),
    }
    assert set(by_suite) == {"AES-256-GCM", "SM4-GCM"}
    for cases in by_suite.values():
        assert required <= cases
    names = " ".join(v["name"] for v in PUBLISHED["vectors"])
    for needed in ("tampered_header", "tampered_ciphertext", "wrong_key", "clock_skew", "malformed_", "negative_zero", "exponent"):
        assert needed in names


@pytest.mark.parametrize(
    "vector",
    [v for v in PUBLISHED["vectors"] if v["suite"] == "AES-256-GCM" and v["expect"] == "accept"],
    ids=lambda v: v["name"],
)
def test_accepted_aes_vectors_open_with_an_independent_implementation(vector):
    # What a vendor does in Java or .NET: build the AAD from the header, decrypt, compare.
    e = vector["envelope"]
    party = e.get("terminal_id") or e.get("device_id")
    aad = "|".join(str(x) for x in (e["v"], e["type"], e["suite"], e["kid"], e["msg_id"], e["ts"], party, e.get("reply_to") or ""))
    raw = base64.b64decode(e["ct"])
    cipher = AES.new(bytes.fromhex(vector["key_hex"]), AES.MODE_GCM, nonce=base64.b64decode(e["nonce"]))
    cipher.update(aad.encode())
    plaintext = cipher.decrypt_and_verify(raw[:-16], raw[-16:])
    assert json.loads(plaintext) == vector["plaintext"]
