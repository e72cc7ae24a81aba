"""The fixed-seed slice of the standing fault campaign (`make faults` runs it at scale): every fault
type once, in order, against the whole path; a violation fails the test with the campaign's table."""

from __future__ import annotations

import random

from tests.e2e.campaign import FAULTS, FULL_DISK, Campaign, table
from tests.e2e.full_disk import mount_works
from tests.e2e.world import SimWorld

SEED = 14


def test_every_fault_type_once_leaves_one_verified_result_and_the_money_right(world: SimWorld) -> None:
    campaign = Campaign(world, random.Random(SEED))
    full_disk = mount_works()  # a real full disk needs a small tmpfs: root
    kinds = FAULTS if full_disk else tuple(k for k in FAULTS if k not in FULL_DISK)
    campaign.start(full_disk=full_disk)
    lines: list[str] = []
    outcomes = campaign.run(len(kinds), kinds=kinds, round_robin=True, report=lines.append)
    assert {o.fault for o in outcomes} == set(kinds)
    assert all(o.ok for o in outcomes), "\n".join(lines) + "\n" + table(outcomes)
