"""Issue 14: a POS that could not journal an instruction (its disk was full) takes it as soon as it
has room again, while the link stays up: the bridge sends again what the POS could not take whenever
the POS's marks come again on the live link (docs/link-protocol.md §7), not only at the next link-up.
Before, the instruction stayed `queued` for ever on a link that never dropped (`make faults`,
full_disk_pos, found it). A real full disk: the POS's storage on a small tmpfs (needs root)."""

from __future__ import annotations

import random

import pytest

from protocol.messages import PayStatus
from tests.e2e.campaign import Campaign
from tests.e2e.full_disk import mount_works
from tests.e2e.world import SimWorld, new_order, wait_until


@pytest.mark.skipif(not mount_works(), reason="a real full disk needs a small tmpfs: mounting it needs root")
def test_an_instruction_the_pos_could_not_journal_is_taken_once_its_disk_has_room_without_a_new_link_up(world: SimWorld) -> None:
    campaign = Campaign(world, random.Random(1))
    campaign.start(full_disk=True)
    rig, disk = campaign.rig, campaign.disks["pos"]
    assert rig is not None
    port = rig.bridge.ports[0]
    session_since = port.since  # set at every link-up and link-down
    code = rig.issue("WECHAT")
    disk.fill(checkpoint=disk.path / "journal.db")
    pending = rig.pay(new_order(), "+3.20")
    service = rig.device.service
    assert service is not None
    wait_until(lambda: service.journal.storage == "disk_full", timeout=20, what="the POS to fail to journal the instruction")
    disk.free()
    rig.screen_is("awaiting_scan", timeout=20)  # sent again on the live link once the POS can journal
    rig.device.scan(code)
    assert pending.result().pay_status is PayStatus.SUCCESS
    assert rig.balance_fen(code) == 100_00 - 3_20
    assert port.since == session_since and port.peer is not None  # the same link session all along
