"""Held results an operator can release: `his-bridge journal held list|clear` (issue 14, rel2 item 2).

A result held for a security reason (here: a genuine device's result whose amount is not the
instruction's) used to stay held forever, `degraded` in /v1/health, with no way out. The operator
now lists it and clears it with a reason; the clearing is audited in the journal's transitions with
the cleared envelope, the result is never served, and health is `ok` again. Real bridge, real link,
real SQLite, the real CLI against the running bridge's journal."""

from __future__ import annotations

import json
import sqlite3

import requests

from bridge import cli
from tests.bridge.conftest import World, wait_until
from tests.bridge.test_security import ForgingHandler, post, result_for


def _held_world(world: World):
    forged: list[bytes] = []

    def forge(envelope):
        message = result_for(envelope, key=world.key, device_id="D1", amount="+99.00", seed=world.seeds["D1"])
        forged.append(message.envelope.to_bytes())
        return [message]

    endpoint = world.endpoint("tcp", ForgingHandler(forge))
    bridge = world.bridge([endpoint.bridge_url])
    config = world.write_config([endpoint.bridge_url])  # the same journal, for the CLI
    wait_until(lambda: bridge.relay.attached("D1"), what="device attached")
    envelope = world.seal("+12.50", "MZ0001")
    assert post(bridge, envelope, wait=0).status_code == 202
    wait_until(lambda: bridge.health()["journal"]["held_results"]["count"] == 1, what="the result held")
    return bridge, config, envelope, forged


def test_operator_lists_and_clears_a_security_hold_audited(world: World, capsys) -> None:
    bridge, config, envelope, forged = _held_world(world)
    health = bridge.health()
    assert health["status"] == "degraded" and health["journal"]["held_results"]["oldest"][0]["code"] == "amount_mismatch"

    assert cli.main(["--config", str(config), "journal", "held", "list"]) == 0
    listed = capsys.readouterr().out
    assert envelope.msg_id in listed and "amount_mismatch" in listed and "D1" in listed

    reason = "IT ticket 4711: POS D1 answered 99.00 for a 12.50 order; refunded by hand"
    assert cli.main(["--config", str(config), "journal", "held", "clear", envelope.msg_id, "--reason", reason]) == 0
    assert "cleared held result" in capsys.readouterr().out

    wait_until(lambda: bridge.health()["journal"]["held_results"]["count"] == 0, what="health without the hold")
    assert bridge.health()["status"] == "ok"
    answer = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10)
    assert answer.status_code == 202  # the bad result is never served; the instruction stays for HIS to settle
    assert (answer.json().get("last_event") or {}).get("code") != "amount_mismatch"
    with sqlite3.connect(world.dir / "journal.sqlite3") as db:
        rows = db.execute("SELECT detail FROM transitions WHERE msg_id = ? AND state = 'held_cleared'",
                          (envelope.msg_id,)).fetchall()
    assert len(rows) == 1
    audit = json.loads(rows[0][0])
    assert (audit["by"], audit["reason"], audit["code"], audit["device_id"]) == ("operator", reason, "amount_mismatch", "D1")
    assert audit["envelope"].encode() in forged  # the evidence is kept

    assert cli.main(["--config", str(config), "journal", "held", "list"]) == 0
    assert "no held results" in capsys.readouterr().out


def test_clear_needs_a_reason_and_a_held_result(world: World, capsys) -> None:
    bridge, config, envelope, _ = _held_world(world)
    assert cli.main(["--config", str(config), "journal", "held", "clear", envelope.msg_id, "--reason", "  "]) == 1
    assert "--reason is required" in capsys.readouterr().err
    assert cli.main(["--config", str(config), "journal", "held", "clear", "HIS-NO-SUCH-1", "--reason", "typo"]) == 1
    assert "no held result" in capsys.readouterr().err
    assert bridge.health()["journal"]["held_results"]["count"] == 1  # nothing was cleared
