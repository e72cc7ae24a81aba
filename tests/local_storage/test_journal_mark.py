"""local_storage/journal_mark.py, the high-water mark file of both journals: the newest mark is
always readable, and the slot is fsynced at most once a second and on close."""

from __future__ import annotations

import os

import pytest

from local_storage import journal_mark
from tests.clocks import ManualClock


@pytest.fixture
def module():
    return journal_mark


@pytest.fixture
def fsyncs(monkeypatch):
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    return calls


def test_a_burst_of_commits_costs_one_fsync_and_the_newest_mark_reads_back(module, tmp_path, fsyncs):
    clock = ManualClock(100.0)
    mark = module.MarkFile(tmp_path / "j.hwm", clock=clock)
    for n in range(1, 101):
        mark.write(n)
        clock.now += 0.001
    assert len(fsyncs) == 1
    assert module.MarkFile(tmp_path / "j.hwm").read().mark == 100


def test_a_write_after_the_interval_is_fsynced(module, tmp_path, fsyncs):
    clock = ManualClock(100.0)
    mark = module.MarkFile(tmp_path / "j.hwm", clock=clock)
    mark.write(1)
    clock.now += module.SYNC_INTERVAL_S
    mark.write(2)
    assert len(fsyncs) == 2


def test_close_fsyncs_what_is_pending(module, tmp_path, fsyncs):
    clock = ManualClock(100.0)
    mark = module.MarkFile(tmp_path / "j.hwm", clock=clock)
    mark.write(1)
    mark.write(2)
    mark.close()
    assert len(fsyncs) == 2
    assert module.MarkFile(tmp_path / "j.hwm").read().mark == 2


def test_durable_true_fsyncs_at_once(module, tmp_path, fsyncs):
    mark = module.MarkFile(tmp_path / "j.hwm", clock=ManualClock(100.0))
    mark.write(1)
    mark.write(2, durable=True)
    assert len(fsyncs) == 2
