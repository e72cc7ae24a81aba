"""Issue 14: high-water marks exchanged at authenticated link-up. Each side keeps the other's mark,
so a rollback of the WHOLE storage of one side (its journal and its own mark file put back from an
old copy: the local mark check cannot see it) is found by the peer at the next link-up, and the
rolled-back side locks itself; the documented recovery unlocks it."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from pathlib import Path

import pytest
import requests

from bridge.journal_admin import accept_current
from firmware_sim.device import LinkKind, Power
from firmware_sim.faults import parse_fault
from protocol.messages import PayStatus
from terminal.journal_admin import accept_current as pos_accept_current
from terminal.journal_admin import main as pos_admin
from tests.e2e.world import PIN, Rig, SimWorld, new_order, wait_until


def pay_once(rig: Rig, amount: str = "+3.00") -> str:
    code = rig.issue("WECHAT")
    pending = rig.pay(new_order(), amount)
    rig.screen_is("awaiting_scan")
    rig.device.scan(code)
    assert pending.result().pay_status is PayStatus.SUCCESS
    return pending.msg_id


def relink(rig: Rig) -> None:
    rig.device.inject(parse_fault({"fault": "unplug"}))
    rig.device.inject(parse_fault({"fault": "replug"}))
    assert rig.device.wait_link_up(15)


def journal_files(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name.startswith(path.name)]


def snapshot(path: Path, into: Path) -> None:
    into.mkdir()
    for f in journal_files(path):
        shutil.copy2(f, into / f.name)


def put_back(path: Path, snap: Path) -> None:
    for f in journal_files(path):
        f.unlink()
    for f in snap.iterdir():
        shutil.copy2(f, path.parent / f.name)


def restart_bridge(world: SimWorld, rig: Rig, between=lambda: None) -> None:
    rig.bridge.stop(grace_s=0.5)
    between()
    rig.bridge = world.start_bridge(rig.device)
    rig.client = dataclasses.replace(rig.client, bridge_url=rig.bridge.url)


def test_a_bridge_whose_whole_journal_was_rolled_back_is_found_by_the_pos_and_locks(world: SimWorld, tmp_path: Path) -> None:
    rig = world.rig(LinkKind.TCP)
    pay_once(rig)
    path = rig.bridge.config.journal.path
    restart_bridge(world, rig, lambda: snapshot(path, tmp_path / "old"))  # yesterday's copy of the PC's disk
    pay_once(rig)
    relink(rig)  # the POS now holds the bridge's newer mark
    wait_until(lambda: rig.bridge.journal.peer_mark(rig.bridge.relay._peer(rig.device.identity.device_id)) is not None)
    restart_bridge(world, rig, lambda: put_back(path, tmp_path / "old"))  # journal and its mark file, together
    wait_until(lambda: rig.bridge.journal.locked, what="the bridge to find out from the POS")
    health = rig.bridge.health()
    assert health["status"] == "locked" and "rolled back" in health["journal"]["integrity"]["reason"]
    refused = requests.post(f"{rig.bridge.url}/v1/instructions", data=b"{}", timeout=10)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "journal_integrity"
    held = int(health["journal"]["integrity"]["reason"].split("holds high-water mark ")[1].split()[0])
    # The documented recovery when no newer backup exists: accept the journal, at the POS's mark.
    restart_bridge(world, rig, lambda: accept_current(path, at_least=held))
    assert not rig.bridge.journal.locked
    assert rig.device.wait_link_up(15)
    pay_once(rig)


def test_a_pos_whose_whole_storage_was_rolled_back_is_found_by_the_bridge_and_locks(world: SimWorld, tmp_path: Path) -> None:
    rig = world.rig(LinkKind.TCP)
    pay_once(rig)
    journal = rig.device.options.storage / "app" / "journal.db"
    rig.device.inject(parse_fault({"fault": "power_cut"}))
    wait_until(lambda: rig.device.power is Power.OFF)
    snapshot(journal, tmp_path / "old")
    rig.device.inject(parse_fault({"fault": "power_on"}))
    assert rig.device.wait_link_up(15)
    pay_once(rig)
    relink(rig)  # the bridge now holds the POS's newer mark
    rig.device.inject(parse_fault({"fault": "power_cut"}))
    wait_until(lambda: rig.device.power is Power.OFF)
    put_back(journal, tmp_path / "old")
    rig.device.inject(parse_fault({"fault": "power_on"}))
    assert rig.device.wait_link_up(15)
    pending = rig.pay(new_order(), "+1.00", wait_s=5)
    outcome = pending.outcome()
    assert outcome.result is None and outcome.last_event is not None and outcome.last_event["code"] == "journal_integrity"
    view = rig.device.screen()
    assert view.journal_problem is not None
    assert rig.device.screen().screen.value == "idle"  # nothing shown, nothing charged


def bridge_mark_held_by_pos(journal: Path) -> int:
    db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key LIKE 'peer_mark:%'").fetchone()
    finally:
        db.close()
    return 0 if row is None else int(row[0])


def test_marks_are_refreshed_on_a_live_link_so_a_rollback_to_a_copy_taken_after_link_up_is_found(
        world: SimWorld, tmp_path: Path) -> None:
    """Marks only at link-up missed a rollback to a copy taken after the last link-up: the POS held
    the bridge's mark of that moment. Refreshed on the live link, the POS's copy follows the bridge."""
    rig = world.rig(LinkKind.TCP)
    pay_once(rig)
    path = rig.bridge.config.journal.path
    restart_bridge(world, rig, lambda: snapshot(path, tmp_path / "old"))  # the copy; then the link comes up
    assert rig.device.wait_link_up(15)
    pay_once(rig)
    pay_once(rig)  # the bridge's journal moves on while the link stays up
    journal = rig.device.options.storage / "app" / "journal.db"
    moved_to = rig.bridge.journal.durable_mark
    wait_until(lambda: bridge_mark_held_by_pos(journal) >= moved_to, what="the POS to hear the bridge's mark on the live link")
    restart_bridge(world, rig, lambda: put_back(path, tmp_path / "old"))
    wait_until(lambda: rig.bridge.journal.locked, what="the bridge to find out from the POS")
    assert "rolled back" in rig.bridge.health()["journal"]["integrity"]["reason"]


def gateway_mark(world: SimWorld, device_id: str) -> int | None:
    with world.gateway.db.transaction(write=False) as tx:
        row = tx.one("SELECT mark FROM device_journal_marks WHERE device_id = ?", (device_id,))
    return None if row is None else int(row[0])


def power_cycle(rig: Rig, between=lambda: None) -> None:
    rig.device.inject(parse_fault({"fault": "power_cut"}))
    wait_until(lambda: rig.device.power is Power.OFF)
    between()
    rig.device.inject(parse_fault({"fault": "power_on"}))


def test_a_pos_rolled_back_as_a_whole_is_found_by_the_gateway_at_start_and_resyncs_its_orders_from_it(
        world: SimWorld, tmp_path: Path) -> None:
    """Copy the POS's storage, pay, put the old copy back, restart: locked (the gateway holds the
    newer mark); the documented recovery re-syncs the orders from the gateway: the second `+` for
    the order already collected is refused (no double charge) and the order can be refunded."""
    rig = world.rig(LinkKind.TCP)
    device_id = rig.device.identity.device_id
    journal = rig.device.options.storage / "app" / "journal.db"
    pay_once(rig)
    power_cycle(rig, lambda: snapshot(journal, tmp_path / "old"))  # the copy a technician keeps "just in case"
    assert rig.device.wait_link_up(15)
    service = rig.device.service
    assert service is not None
    before = service.journal.high_water_mark  # the copy's mark, or above it
    code = rig.issue("WECHAT")
    order = new_order()
    first = rig.pay(order, "+12.50")
    rig.screen_is("awaiting_scan")
    rig.device.scan(code)
    assert first.result().pay_status is PayStatus.SUCCESS
    # Reported after the pay request was answered: the mark of a journal that holds the attempt.
    wait_until(lambda: (gateway_mark(world, device_id) or 0) > before, what="the POS to report its mark to the gateway")

    power_cycle(rig, lambda: put_back(journal, tmp_path / "old"))  # journal and its mark file, together
    assert rig.device.wait_link_up(15)
    service = rig.device.service
    assert service is not None and service.journal.locked
    # Found at start-up, before the link came up (the bridge, which heard an older mark, may add its own finding).
    assert any("payment gateway holds high-water mark" in p for p in service.journal.integrity.problems)
    assert rig.device.screen().journal_problem is not None
    again = rig.pay(order, "+12.50", wait_s=5).outcome()  # HIS sends it again: nothing moves
    assert again.result is None and again.last_event is not None and again.last_event["code"] == "journal_integrity"
    assert rig.balance_fen(code) == 100_00 - 12_50
    held = gateway_mark(world, device_id)
    assert held is not None and held > service.journal.high_water_mark

    # The documented recovery (docs/terminal.md): with the POS app stopped, ask for a re-sync.
    power_cycle(rig, lambda: pos_admin(["resync", str(journal)]) == 0 or pytest.fail("resync refused"))
    assert rig.device.wait_link_up(15)
    service = rig.device.service
    assert service is not None and not service.journal.locked
    collected = service.journal.collection(order)
    assert collected is not None and collected.paid_fen == 12_50
    assert service.journal.high_water_mark > held  # raised above the gateway's mark: reported, never found behind again
    wait_until(lambda: (gateway_mark(world, device_id) or 0) > held, what="the re-synced journal's mark at the gateway")
    assert not (journal.parent / "journal.db.resync").exists()
    duplicate = rig.pay(order, "+12.50").result()  # the second `+` for the order already collected
    assert duplicate.error_code == "duplicate_order"
    assert rig.balance_fen(code) == 100_00 - 12_50 and len(rig.orders(code)) == 1  # no double charge
    refund = rig.pay(order, "-2.50")
    rig.screen_is("awaiting_supervisor")
    rig.device.confirm_refund(PIN)
    assert refund.result(timeout=60).pay_status is PayStatus.REFUNDED
    assert rig.balance_fen(code) == 100_00 - 12_50 + 2_50

