"""Issue 14, finding 4: the bridge never starts silently on a lost or rotted journal.

A journal truncated to nothing, one that lost its WAL (a backup that copied only the .sqlite3 file, a
power cut on a lying disk) and a stored result with one flipped byte all used to start a bridge that
answered 404 for results the interface promises for 24 h, or served the damaged result as 200 for
ever. Now the bridge starts locked: health works and says why, instructions and results get
503 journal_integrity, the device port stays closed (money work waits), and `his-bridge journal
restore` from an online backup unlocks it with every old result intact.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import requests

from bridge.cli import main as bridge_cli
from tests.bridge.conftest import World, wait_until


def _pay_one(world: World, bridge, order: str = "MZ-INT") -> tuple[str, bytes]:
    wait_until(lambda: bridge.health()["devices"][0]["link"] == "up", what="device link up")
    envelope = world.seal("+12.50", order)
    answer = requests.post(bridge.url + "/v1/instructions?wait=10", data=envelope.to_bytes(), timeout=30)
    assert answer.status_code == 200, answer.text
    return envelope.msg_id, answer.content


def _journal(world: World) -> Path:
    return world.dir / "journal.sqlite3"


def _assert_locked(world: World, bridge, msg_id: str) -> dict:
    health = bridge.health()
    assert health["status"] == "locked", health
    integrity = health["journal"]["integrity"]
    assert integrity["ok"] is False and integrity["reason"], integrity
    got = requests.get(f"{bridge.url}/v1/results/{msg_id}", timeout=10)
    assert (got.status_code, got.json()["error"]["code"]) == (503, "journal_integrity")
    new = requests.post(bridge.url + "/v1/instructions?wait=0", data=world.seal("+1.00", "MZ-NEW").to_bytes(), timeout=10)
    assert (new.status_code, new.json()["error"]["code"]) == (503, "journal_integrity")
    assert health["devices"][0]["link"] != "up"  # money work waits: the device port is not opened
    return integrity


def test_a_journal_truncated_to_nothing_starts_locked(world: World) -> None:
    endpoint = world.endpoint("tcp", world.responder())
    bridge = world.bridge([endpoint.bridge_url])
    msg_id, _ = _pay_one(world, bridge)
    bridge.stop()
    _journal(world).write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        Path(str(_journal(world)) + suffix).unlink(missing_ok=True)
    again = world.bridge([endpoint.bridge_url])
    integrity = _assert_locked(world, again, msg_id)
    assert "rolled back" in integrity["reason"] or "lost" in integrity["reason"]


def test_a_journal_that_lost_its_wal_starts_locked(world: World) -> None:
    endpoint = world.endpoint("tcp", world.responder())
    bridge = world.bridge([endpoint.bridge_url])
    _pay_one(world, bridge, "MZ-EARLY")
    stale = world.dir / "stale-copy.sqlite3"
    shutil.copyfile(_journal(world), stale)  # only the main file: what sat in the WAL is missing from it
    msg_id, _ = _pay_one(world, bridge, "MZ-LATE")
    bridge.stop()
    shutil.copyfile(stale, _journal(world))
    Path(str(_journal(world)) + "-wal").unlink(missing_ok=True)
    again = world.bridge([endpoint.bridge_url])
    _assert_locked(world, again, msg_id)


def test_a_rotted_stored_result_is_never_served(world: World) -> None:
    endpoint = world.endpoint("tcp", world.responder())
    bridge = world.bridge([endpoint.bridge_url])
    msg_id, body = _pay_one(world, bridge)
    bridge.stop()
    rotted = bytearray(body)
    rotted[len(rotted) // 2] ^= 0x01  # one bit: PRAGMA integrity_check cannot see this
    with sqlite3.connect(_journal(world)) as db:
        db.execute("UPDATE instructions SET result_envelope = ? WHERE msg_id = ?", (bytes(rotted), msg_id))
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    again = world.bridge([endpoint.bridge_url])
    integrity = _assert_locked(world, again, msg_id)
    assert msg_id in integrity["reason"]


def test_check_backup_and_restore_unlock_it_with_every_result_intact(world: World, capsys) -> None:
    endpoint = world.endpoint("tcp", world.responder())
    config = world.write_config([endpoint.bridge_url])
    bridge = world.bridge([endpoint.bridge_url])
    msg_id, body = _pay_one(world, bridge)
    backup = world.dir / "backups" / "journal-backup.sqlite3"
    assert bridge_cli(["--config", str(config), "journal", "backup", str(backup)]) == 0  # online, while it runs
    bridge.stop()
    _journal(world).write_bytes(b"")
    Path(str(_journal(world)) + "-wal").unlink(missing_ok=True)
    capsys.readouterr()
    assert bridge_cli(["--config", str(config), "journal", "check"]) == 1
    out = capsys.readouterr().out
    assert "journal_integrity" in out and "his-bridge journal restore" in out
    assert bridge_cli(["--config", str(config), "journal", "restore", str(backup)]) == 0
    assert bridge_cli(["--config", str(config), "journal", "check"]) == 0
    again = world.bridge([endpoint.bridge_url])
    assert again.health()["journal"]["integrity"]["ok"] is True
    got = requests.get(f"{again.url}/v1/results/{msg_id}", timeout=10)
    assert (got.status_code, got.content) == (200, body)
