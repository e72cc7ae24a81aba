"""The Java example in docs/his-interface.md works: compiled and run against the published vectors."""

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from protocol.strictjson import dumps_compact

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "docs" / "examples" / "java" / "HisEnvelope.java"
VECTORS = json.loads((ROOT / "docs" / "vectors" / "his-interface-v1.json").read_text(encoding="utf-8"))

pytestmark = pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK on this machine")


def _aad(e: dict) -> str:
    party = e.get("terminal_id") or e.get("device_id")
    return "|".join(str(x) for x in (e["v"], e["type"], e["suite"], e["kid"], e["msg_id"], e["ts"], party, e.get("reply_to") or ""))


def test_java_opens_and_seals_the_vectors(tmp_path):
    shutil.copy(SOURCE, tmp_path)
    subprocess.run(["javac", "HisEnvelope.java"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    cases = [v for v in VECTORS["vectors"] if v["suite"] == "AES-256-GCM" and v["expect"] in ("accept", "auth_failed") and "nonce" in v["envelope"]]
    lines, expected = [], []
    for v in cases:
        e = v["envelope"]
        lines.append(f"open|{v['key_hex']}|{e['nonce']}|{e['ct']}|{_aad(e)}")
        expected.append("auth_failed" if v["expect"] == "auth_failed" else v["plaintext"])
        if v["expect"] == "accept":
            lines.append(f"seal|{v['key_hex']}|{e['nonce']}|{base64.b64encode(dumps_compact(v['plaintext'])).decode()}|{_aad(e)}")
            expected.append(("ct", e["ct"]))
    out = subprocess.run(["java", "-cp", str(tmp_path), "HisEnvelope"], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True, timeout=120)
    answers = out.stdout.split()
    assert len(answers) == len(expected)
    for got, want in zip(answers, expected):
        if want == "auth_failed":
            assert got == "auth_failed"
        elif isinstance(want, tuple):
            assert got == want[1], "Java seals byte-for-byte what the vectors publish"
        else:
            assert json.loads(base64.b64decode(got)) == want
