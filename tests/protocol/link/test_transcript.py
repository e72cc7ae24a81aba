"""docs/link-protocol.md shows a real exchange; it must still be what the code sends."""

from pathlib import Path

from protocol.link.transcript import exchange, render

DOC = Path(__file__).resolve().parents[3] / "docs" / "link-protocol.md"


def test_the_documented_hex_dump_is_what_the_code_sends():
    assert render() in DOC.read_text(encoding="utf-8"), "regenerate section 6 with python -m protocol.link.transcript"


def test_the_exchange_is_complete():
    directions = [d for d, _ in exchange()]
    assert directions == ["bridge -> POS", "POS -> bridge", "bridge -> POS", "bridge -> POS", "POS -> bridge", "POS -> bridge", "bridge -> POS"]
