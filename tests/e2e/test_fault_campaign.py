"""The fixed-seed slice of the standing fault campaign (`make faults` runs it at scale): every fault
type once, in order, against the whole path; a violation fails the test with the campaign's table."""

from __future__ import annotations

import random

from tests.e2e.campaign import FAULTS, Campaign, table
from tests.e2e.world import SimWorld

SEED = 14


def test_every_fault_type_once_leaves_one_verified_result_and_the_money_right(world: SimWorld) -> None:
    campaign = Campaign(world, random.Random(SEED))
    campaign.start()
    lines: list[str] = []
    outcomes = campaign.run(len(FAULTS), round_robin=True, report=lines.append)
    assert {o.fault for o in outcomes} == set(FAULTS)
    assert all(o.ok for o in outcomes), "\n".join(lines) + "\n" + table(outcomes)
