"""docs/his-interface.md quotes vectors and codes: keep it true to the code."""

import json
import re
from pathlib import Path

from protocol.errors import ErrorCode
from protocol.messages import ResultCode
from protocol.vectors import build_vectors
from protocol import vectors_v11

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "his-interface.md").read_text(encoding="utf-8")
VECTORS = {v["name"]: v for v in build_vectors()["vectors"]}
VECTORS_11 = {v["name"]: v for v in vectors_v11.build_vectors()["vectors"]}


def test_every_error_code_and_result_code_is_documented():
    for code in ErrorCode:
        assert f"`{code.value}`" in DOC, code
    for code in ResultCode:
        assert f"`{code.value}`" in DOC, code


def test_vector_names_quoted_in_the_doc_exist_with_the_stated_answer():
    for name, code in re.findall(r"`(aes256gcm_\w+)` \| [^|]+ \| `\d{3} (\w+)`", DOC):
        assert VECTORS[name]["expect"] == code, name


def test_worked_example_envelopes_are_the_vectors():
    for name in ("aes256gcm_instruction_collect", "sm4gcm_instruction_refund"):
        assert json.dumps(VECTORS[name]["envelope"], ensure_ascii=False) in DOC, name
    # 1.1: the worked result is signed; its ciphertext is the version-1 vector's, `sig` is added.
    signed = VECTORS_11["aes256gcm_result_signed"]["envelope"]
    assert json.dumps(signed, ensure_ascii=False) in DOC
    assert signed["ct"] == VECTORS["aes256gcm_result_success"]["envelope"]["ct"]
    assert VECTORS_11["aes256gcm_instruction_his_signed_required"]["envelope"]["his_sig"] in DOC
    registry = vectors_v11.build_vectors()["device_registry"].splitlines()
    assert registry[1] in DOC  # the device registry example with its public key


def test_part_c_and_field_rule_vectors_quoted_in_the_doc_exist():
    for name in re.findall(r"`(aes256gcm_instruction_\w+)`", DOC):
        assert name in VECTORS_11, name
    for short in re.findall(r"`_(\w+)`", DOC):
        if f"aes256gcm_instruction_{short}" not in VECTORS_11:
            continue
        assert f"sm4gcm_instruction_{short}" in VECTORS_11
    assert VECTORS_11["aes256gcm_cancel"]["expect"] == "accept"
    assert "`1|cancel|AES-256-GCM|k2026a|HIS-0001-000050|1795000000|T0001|HIS-0001-000042`" in DOC


def test_compact_json_writes_non_ascii_raw_as_the_doc_says():
    from protocol.strictjson import dumps_compact

    assert bytes.fromhex("e5bca02ae6988e") in dumps_compact({"patient": "张*明"})
    assert "`e5 bc a0 2a e6 98 8e`" in DOC


def test_every_vector_names_its_receiver_as_the_doc_says():
    for vector in [*VECTORS.values(), *VECTORS_11.values()]:
        kind = vector["envelope"].get("type")
        assert vector["receiver"] == (["HIS", "bridge"] if kind == "result" else ["bridge", "POS"])
