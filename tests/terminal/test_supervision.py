"""terminal.supervision: who starts, restarts and joins the service's threads, and when it is dead.

Real threads on a real condition; every wait is on an event the code under test sets, never a sleep.
"""

from __future__ import annotations

import threading
from typing import Callable

import pytest

from terminal.journal import PowerLostAtCommit
from terminal.supervision import Supervision

WAIT_S = 10.0  # upper bound for an event that must come; reached only when the code is broken


class Recorder:
    """A work function: records which seq ran on which thread; `block` holds it until released."""

    def __init__(self, body: Callable[[int], None] | None = None) -> None:
        self.ran: list[tuple[int, str]] = []
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.block = False
        self._body = body

    def __call__(self, seq: int) -> None:
        self.ran.append((seq, threading.current_thread().name))
        self.entered.release()
        if self.block:
            assert self.release.wait(WAIT_S)
        if self._body is not None:
            self._body(seq)


def make(work: Callable[[int], None], needs_work: Callable[[int], bool] = lambda seq: False,
         storage_dead: Callable[[], bool] = lambda: False) -> tuple[Supervision, threading.Condition]:
    cond = threading.Condition(threading.RLock())
    return Supervision(cond, work=work, needs_work=needs_work, storage_dead=storage_dead), cond


def test_kick_runs_the_instruction_on_its_own_named_thread() -> None:
    work = Recorder()
    sup, cond = make(work)
    with cond:
        sup.kick(7)
    assert work.entered.acquire(timeout=WAIT_S)
    sup.close()
    assert work.ran == [(7, "terminal-worker-7")]


def test_a_second_kick_while_the_worker_runs_starts_nothing() -> None:
    work = Recorder()
    work.block = True
    sup, cond = make(work)
    with cond:
        sup.kick(3)
    assert work.entered.acquire(timeout=WAIT_S)
    with cond:
        sup.kick(3)
    work.release.set()
    sup.close()  # joins every worker it started
    assert [seq for seq, _ in work.ran] == [3]


def test_a_worker_that_ends_while_its_instruction_still_needs_work_is_started_again() -> None:
    pending = [True]  # a change landed after the first worker's last look

    def needs_work(seq: int) -> bool:
        again, pending[0] = pending[0], False
        return again

    work = Recorder()
    sup, cond = make(work, needs_work)
    with cond:
        sup.kick(5)
    assert work.entered.acquire(timeout=WAIT_S)
    assert work.entered.acquire(timeout=WAIT_S)  # the restart
    sup.close()
    assert [seq for seq, _ in work.ran] == [5, 5]


def test_power_lost_in_a_worker_makes_the_service_dead_and_wakes_waiters() -> None:
    woke = threading.Event()

    def waiter() -> None:
        with cond:
            while not sup.stopping:
                cond.wait(WAIT_S)
        woke.set()

    def lose_power(seq: int) -> None:
        raise PowerLostAtCommit("cut")

    sup, cond = make(Recorder(lose_power), needs_work=lambda seq: True)
    listener = threading.Thread(target=waiter)
    listener.start()
    with cond:
        sup.kick(1)
    assert woke.wait(WAIT_S)
    listener.join(WAIT_S)
    assert sup.dead
    with pytest.raises(PowerLostAtCommit):
        sup.check_alive()


def test_nothing_starts_once_dead() -> None:
    work = Recorder()
    sup, cond = make(work, storage_dead=lambda: True)
    with pytest.raises(PowerLostAtCommit):
        sup.check_alive()  # the journal lost power under us: the service is dead with it
    assert sup.dead
    with cond:
        sup.kick(9)
    sup.close()  # joins every worker it started
    assert work.ran == []


def test_check_alive_passes_while_alive() -> None:
    sup, _ = make(Recorder())
    sup.check_alive()
    assert not sup.dead and not sup.closing and not sup.stopping


class Helper:
    def __init__(self) -> None:
        self.events: list[str] = []

    def start(self) -> "Helper":
        self.events.append("start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.events.append("stop")


def test_close_stops_the_background_and_joins_workers_that_were_waiting() -> None:
    def wait_for_stop(seq: int) -> None:
        with cond:
            while not sup.stopping:
                cond.wait(WAIT_S)

    work = Recorder(wait_for_stop)
    sup, cond = make(work, needs_work=lambda seq: True)
    helper = Helper()
    sup.add_background(helper)
    sup.start_background()
    with cond:
        sup.kick(1)
        sup.kick(2)
    assert work.entered.acquire(timeout=WAIT_S) and work.entered.acquire(timeout=WAIT_S)
    sup.close(WAIT_S)
    assert helper.events == ["start", "stop"]
    with cond:
        sup.kick(3)
    sup.close(WAIT_S)
    # joined, not restarted although they still "need work", and nothing new started
    assert sorted(seq for seq, _ in work.ran) == [1, 2]
