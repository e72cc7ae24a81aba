"""Finding 4 of issue 12, as an attacker at the counter would try it: parallel PIN guesses, a short
PIN, a lockout that forgets, and hashing that eats the POS's memory."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time

import pytest

from terminal import pin as pin_module
from terminal.pin import hash_pin, parse_pin_hash
from terminal.service import PinStatus
from terminal.view import Screen
from tests.terminal.helpers import PIN, His, make_config, open_service
from tests.terminal.test_service import seed_collection
from tests.clocks import ManualClock

ADMIN_PIN = "97531864"
ADMIN_HASH = hash_pin(ADMIN_PIN, salt=b"admin-salt-16byt")


def _awaiting_refund(svc, msg_id: str = "HIS-R") -> None:
    seed_collection(svc.journal, "MZ9", 1250)
    # The lockout tests move the clock by up to half an hour: a refund HIS lets wait a day (1.1 C expires_at).
    svc.submit_instruction(His().envelope("MZ9", "-5.00", msg_id=msg_id, expires_at=int(time.time()) + 86_000))
    assert svc.view().screen is Screen.AWAITING_SUPERVISOR


def test_thirty_parallel_wrong_pins_then_the_right_one_30_ms_later_does_not_pay(tmp_path, monkeypatch):
    """The attack of finding 4: 30 wrong PINs at once, and the right one while they are still being
    hashed (30 ms later on the attacker's POS; a hash takes ~50 ms). Instead of a wall-clock 30 ms,
    the test holds every wrong PIN's (real) hash until the right one has been answered, and sends the
    right one once all 30 guesses have been taken in: hashing or already answered."""
    svc = open_service(tmp_path / "j.db", make_config(max_wrong_tries=5, lockout_s=300))
    real_verify = pin_module.verify_pin
    taken_in, release, lock = [0], threading.Event(), threading.Condition()

    def slow_verify(pin, stored):  # the real check, held back for wrong PINs while the right one comes
        with lock:
            taken_in[0] += 1
            lock.notify_all()
        if pin != PIN:
            release.wait(30)
        return real_verify(pin, stored)

    monkeypatch.setattr(pin_module, "verify_pin", slow_verify)
    try:
        _awaiting_refund(svc)
        barrier = threading.Barrier(30)
        replies = []

        def guess(pin: str) -> None:
            barrier.wait()
            reply = svc.confirm_refund(pin)
            with lock:
                replies.append(reply)
                lock.notify_all()

        wrong = [threading.Thread(target=guess, args=(f"{100000 + i}",)) for i in range(30)]
        for thread in wrong:
            thread.start()
        with lock:
            assert lock.wait_for(lambda: taken_in[0] + len(replies) >= 30, timeout=30)
        right = svc.confirm_refund(PIN)
        release.set()
        for thread in wrong:
            thread.join(60)
        assert right.status is PinStatus.LOCKED
        assert svc.view().screen is Screen.AWAITING_SUPERVISOR  # the refund did not start
        assert sum(r.status is PinStatus.WRONG for r in replies) <= 4  # only the allowed tries were judged
        assert svc.view().pin_locked_until is not None
    finally:
        release.set()
        svc.close()


def _wrong(svc, n: int) -> PinStatus:
    assert n > 0
    for i in range(n):
        status: PinStatus = svc.confirm_refund(f"{900000 + i}").status
    return status


def test_the_lockout_escalates_and_a_restart_does_not_forget_it(tmp_path):
    clock = ManualClock(time.time())
    config = make_config(max_wrong_tries=5, lockout_s=300)
    svc = open_service(tmp_path / "j.db", config, clock=clock)
    _awaiting_refund(svc)
    assert _wrong(svc, 5) is PinStatus.LOCKED
    assert svc.view().pin_locked_until == pytest.approx(clock.now + 300)
    clock.now += 301  # served
    assert _wrong(svc, 4) is PinStatus.WRONG
    svc.close()
    svc = open_service(tmp_path / "j.db", config, clock=clock, seed=2)  # switched off and on
    try:
        assert svc.view().pin_tries_left == 1
        reply = svc.confirm_refund("999999")
        assert reply.status is PinStatus.LOCKED and reply.locked_until == pytest.approx(clock.now + 600)
        clock.now += 601
        assert _wrong(svc, 5) is PinStatus.LOCKED
        assert svc.view().pin_locked_until == pytest.approx(clock.now + 1200)
        clock.now += 1201
        assert svc.confirm_refund(PIN).status is PinStatus.ACCEPTED  # a right PIN clears the escalation
    finally:
        svc.close()


def test_an_administrator_resets_the_lockout_on_the_device(tmp_path):
    clock = ManualClock(time.time())
    config = dataclasses.replace(make_config(max_wrong_tries=5, lockout_s=300), admin_pin_hash=parse_pin_hash(ADMIN_HASH))
    svc = open_service(tmp_path / "j.db", config, clock=clock)
    try:
        _awaiting_refund(svc)
        assert _wrong(svc, 5) is PinStatus.LOCKED
        assert svc.reset_pin_lockout(PIN).status is PinStatus.WRONG  # the supervisor's PIN is not the admin's
        assert svc.confirm_refund(PIN).status is PinStatus.LOCKED
        assert svc.reset_pin_lockout(ADMIN_PIN).status is PinStatus.ACCEPTED
        assert svc.view().pin_locked_until is None and svc.view().pin_tries_left == 5
        assert svc.confirm_refund(PIN).status is PinStatus.ACCEPTED
    finally:
        svc.close()


def test_without_an_admin_pin_the_lockout_cannot_be_reset_on_the_device(tmp_path):
    svc = open_service(tmp_path / "j.db", make_config(max_wrong_tries=5, lockout_s=300))
    try:
        _awaiting_refund(svc)
        assert _wrong(svc, 5) is PinStatus.LOCKED
        assert svc.reset_pin_lockout(PIN).status is PinStatus.NOT_AWAITING
        assert svc.view().pin_locked_until is not None
    finally:
        svc.close()


def test_at_most_one_pin_hash_runs_at_a_time(tmp_path, monkeypatch):
    running, peak, lock = [0], [0], threading.Lock()
    real = hashlib.scrypt

    def counting(*args, **kwargs):  # the real scrypt, counted
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    config = dataclasses.replace(make_config(max_wrong_tries=12, lockout_s=300), admin_pin_hash=parse_pin_hash(ADMIN_HASH))
    svc = open_service(tmp_path / "j.db", config)
    try:
        _awaiting_refund(svc)
        monkeypatch.setattr(pin_module.hashlib, "scrypt", counting)
        barrier = threading.Barrier(12)

        def attempt(i: int) -> None:
            barrier.wait()
            (svc.confirm_refund if i % 2 else svc.check_admin_pin)(f"{500000 + i}")

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert peak[0] == 1
    finally:
        svc.close()
