"""The Java example in docs/his-interface.md works: compiled and run against the published vectors
(version 1: sealing and opening; 1.1: verifying `sig` and making `his_sig` with the JDK alone)."""

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from protocol import signing
from protocol.registry import parse_device_csv
from protocol.strictjson import dumps_compact

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "docs" / "examples" / "java" / "HisEnvelope.java"
VECTORS = json.loads((ROOT / "docs" / "vectors" / "his-interface-v1.json").read_text(encoding="utf-8"))
VECTORS_11 = json.loads((ROOT / "docs" / "vectors" / "his-interface-v1.1.json").read_text(encoding="utf-8"))

pytestmark = pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK on this machine")


def _aad(e: dict) -> str:
    party = e.get("terminal_id") or e.get("device_id")
    return "|".join(str(x) for x in (e["v"], e["type"], e["suite"], e["kid"], e["msg_id"], e["ts"], party, e.get("reply_to") or ""))


def _sig_bytes(text) -> int:
    try:
        return len(base64.b64decode(text or "", validate=True))
    except ValueError:
        return -1


def _compile(tmp_path):
    shutil.copy(SOURCE, tmp_path)
    subprocess.run(["javac", "HisEnvelope.java"], cwd=tmp_path, check=True, capture_output=True, timeout=120)


def test_java_opens_and_seals_the_vectors(tmp_path):
    _compile(tmp_path)
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


def test_java_verifies_device_signatures_and_signs_as_his_with_the_jdk_alone(tmp_path):
    _compile(tmp_path)
    registry = {d.device_id: d.public_key for d in parse_device_csv(VECTORS_11["device_registry"])}
    lines, expected = [], []
    for v in VECTORS_11["vectors"]:
        e = v["envelope"]
        if e["type"] == "result" and e["device_id"] in registry and _sig_bytes(e.get("sig")) == 64:
            public, ct = registry[e["device_id"]], base64.b64decode(e["ct"])
            try:
                signing.verify(public, _aad(e).encode() + ct, base64.b64decode(e["sig"]))
                want = "ok"
            except (signing.SignatureError, ValueError):
                want = "bad_sig"
            if v["expect"] == "accept":
                assert want == "ok"
            lines.append(f"verify|{base64.b64encode(public).decode()}|{e['sig']}|{e['ct']}|{_aad(e)}")
            expected.append(want)
        if e["type"] == "instruction" and "his_sig" in e and v["expect"] == "accept":
            lines.append(f"sign|{VECTORS_11['test_private_keys']['his']}|-|{e['ct']}|{_aad(e)}")
            expected.append(e["his_sig"])  # Ed25519 is deterministic: the same bytes
    assert "bad_sig" in expected and "ok" in expected and len(lines) >= 12
    out = subprocess.run(["java", "-cp", str(tmp_path), "HisEnvelope"], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.split() == expected
