"""How many processes a run uses when left to decide (--jobs 0): a bill worker for large days, but
not for days so large that its second copy of the funds columns would raise the peak memory."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from reconcile import run
from reconcile.model import Channel
from reconcile.run import RunConfig

DAY = datetime.date(2026, 11, 22)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a worker needs a second core")
def test_the_worker_is_used_for_large_days_but_not_for_huge_journals(every_class_day: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    f = every_class_day
    bills = [(Channel.WECHAT, f["wechat"]), (Channel.ALIPAY, f["alipay"])]
    cfg = RunConfig(day=DAY, his=f["his"], journals=(f["journal"],), out_dir=f["his"].parent, state_db=f["his"].parent / "s.db", jobs=0)
    assert run._jobs(cfg, bills) == 1  # a small day: one process
    monkeypatch.setattr(run, "PARALLEL_FROM_BYTES", 1)  # as if the bills were large
    assert run._jobs(cfg, bills) == 2
    monkeypatch.setattr(run, "PARALLEL_UP_TO_JOURNAL_BYTES", f["journal"].stat().st_size - 1)  # and the journal huge
    assert run._jobs(cfg, bills) == 1
    assert run._jobs(RunConfig(**{**cfg.__dict__, "jobs": 2}), bills) == 2  # --jobs 2 still forces it
