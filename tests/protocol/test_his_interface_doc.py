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
