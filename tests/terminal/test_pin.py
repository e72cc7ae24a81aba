"""Supervisor PIN: a salted scrypt hash, constant-time check, strict parsing, lockout rule."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.pin import (LOCKOUT_CAP_S, AttemptCounter, Lockout, PinCheck, PinDesk, PinHashError, after_failure, hash_pin, is_locked,
                          lockout_duration, parse_pin_hash, tries_left, verify_pin)
from tests.terminal.helpers import PIN, PIN_HASH


def test_hash_round_trip_and_format():
    assert PIN_HASH.startswith("scrypt$16384$8$1$")
    stored = parse_pin_hash(PIN_HASH)
    assert stored.encode() == PIN_HASH
    assert verify_pin(PIN, stored)
    assert not verify_pin("246811", stored)
    assert not verify_pin("", stored)
    assert not verify_pin(None, stored)


def test_same_pin_different_salts_give_different_hashes():
    assert hash_pin("135792") != hash_pin("135792")


@pytest.mark.parametrize("text", [
    "pbkdf2$1$2$3$AA==$AA==",
    "scrypt$16384$8$1$AAAAAAAAAAA=",
    "scrypt$1024$8$1$MDEyMzQ1Njc4OWFiY2RlZg==$" + "A" * 44,  # too weak
    "scrypt$16384$1$1$MDEyMzQ1Njc4OWFiY2RlZg==$" + "A" * 44,
    "scrypt$16384$8$99$MDEyMzQ1Njc4OWFiY2RlZg==$" + "A" * 44,
    "scrypt$16385$8$1$MDEyMzQ1Njc4OWFiY2RlZg==$" + "A" * 44,  # not a power of two
    "scrypt$16384$8$1$!!!$" + "A" * 44,
    "scrypt$+16384$8$1$MDEyMzQ1Njc4OWFiY2RlZg==$" + "A" * 44,
    "scrypt$16384$8$1$MDEy$" + "A" * 44,  # salt too short
    12345,
])
def test_bad_hashes_are_refused_with_a_reason(text):
    with pytest.raises(PinHashError):
        parse_pin_hash(text)


@pytest.mark.parametrize("pin", ["123", "1234", "12345", "1234567890123", "12a456", "１２３４５６", " 123456"])
def test_pins_are_6_to_12_ascii_digits(pin):
    with pytest.raises(ValueError):
        hash_pin(pin)


@given(st.lists(st.booleans(), max_size=30), st.integers(1, 6))
def test_lockout_after_n_consecutive_wrong_pins(outcomes, max_tries):
    state, now, wrong_in_a_row = Lockout(), 1000.0, 0
    for right in outcomes:
        now += 1
        if is_locked(state, now):
            continue  # the service refuses to even check while locked
        if right:
            state, wrong_in_a_row = Lockout(), 0
            continue
        wrong_in_a_row += 1
        state = after_failure(state, now, max_tries=max_tries, lockout_s=60)
        if wrong_in_a_row == max_tries:
            assert is_locked(state, now) and not is_locked(state, now + 60)
            wrong_in_a_row = 0
        else:
            assert not is_locked(state, now)
            assert tries_left(state, max_tries) == max_tries - wrong_in_a_row


def test_a_four_digit_pin_is_simply_wrong():
    assert not verify_pin("2468", parse_pin_hash(PIN_HASH))


def test_each_lockout_doubles_the_last_up_to_24_hours():
    state, now, served = Lockout(), 1_000_000.0, []
    for _ in range(12):
        for _ in range(5):
            assert not is_locked(state, now)
            state = after_failure(state, now, max_tries=5, lockout_s=300)
        served.append(state.locked_until - now)
        now = state.locked_until  # served in full
    assert served[:4] == [300, 600, 1200, 2400]
    assert max(served) == LOCKOUT_CAP_S == 24 * 3600 and served[-1] == LOCKOUT_CAP_S


@given(st.integers(0, 10_000), st.integers(10, 24 * 3600))
def test_lockout_duration_never_shrinks_and_is_capped(lockouts, base):
    assert base <= lockout_duration(lockouts, base) <= max(base, LOCKOUT_CAP_S)
    assert lockout_duration(lockouts + 1, base) >= lockout_duration(lockouts, base)


@given(st.integers(0, 100), st.floats(0, 2e9, allow_nan=False), st.integers(0, 100))
def test_lockout_journal_form_round_trips(failures, until, lockouts):
    state = Lockout(failures, until, lockouts)
    assert Lockout.decode(state.encode()) == state
    assert Lockout.decode(f"{failures},{until!r}") == Lockout(failures, until)  # written by earlier versions


def test_an_attempt_is_journaled_before_it_may_be_checked_and_a_right_pin_clears_everything():
    saved: list[Lockout] = []
    counter = AttemptCounter(lambda: Lockout(2, 0.0, 3), saved.append, lambda: 1000.0, max_tries=5, lockout_s=300)
    assert counter.charge() is None and saved[-1] == Lockout(3, 0.0, 3)  # written before the caller hashes
    assert counter.charge() is None
    assert counter.charge() is None  # the 5th is still checked; counting it locks the PIN
    assert saved[-1].locked_until == 1000.0 + 300 * 2**3 and saved[-1].lockouts == 4
    locked = counter.charge()
    assert locked is not None and locked.locked_until == saved[-1].locked_until  # refused, not counted again
    counter.clear()
    assert saved[-1] == Lockout() == counter.state()


class _Store:
    """Where the service keeps lockouts (its journal's meta table); here a dict, with the writes seen."""

    def __init__(self):
        self.saved: dict[str, Lockout] = {}

    def load(self, key):
        return self.saved.get(key, Lockout())

    def save(self, key, state):
        self.saved[key] = state


def _desk(store, now, admin=True):
    stored = parse_pin_hash(PIN_HASH)
    return PinDesk(store.load, store.save, lambda: now[0], hashes={"supervisor": stored, "admin": stored if admin else None},
                   max_tries=3, lockout_s=60)


def test_the_desk_counts_wrong_pins_per_pin_and_locks_the_third():
    store, now = _Store(), [1000.0]
    desk = _desk(store, now)
    assert [(v.check, v.tries_left) for v in (desk.check("supervisor", "111111"), desk.check("supervisor", "222222"))] == \
        [(PinCheck.WRONG, 2), (PinCheck.WRONG, 1)]
    assert desk.check("admin", "111111").tries_left == 2  # the admin PIN has a count of its own
    third = desk.check("supervisor", "333333")
    assert third.check is PinCheck.WRONG_NOW_LOCKED and third.state.locked_until == 1060.0
    refused = desk.check("supervisor", PIN)  # even the right PIN: its hash is not even run
    assert refused.check is PinCheck.LOCKED and store.saved["supervisor"].locked_until == 1060.0


def test_the_desk_clears_the_count_on_a_right_pin_and_on_a_reset():
    store, now = _Store(), [1000.0]
    desk = _desk(store, now)
    desk.check("supervisor", "111111")
    assert desk.check("supervisor", PIN).check is PinCheck.RIGHT and store.saved["supervisor"] == Lockout()
    for wrong in ("111111", "222222", "333333"):
        desk.check("supervisor", wrong)
    assert is_locked(desk.state("supervisor"), now[0])
    desk.reset("supervisor")
    assert desk.state("supervisor") == Lockout() and desk.check("supervisor", PIN).check is PinCheck.RIGHT


def test_a_pin_without_a_hash_is_never_right():
    desk = _desk(_Store(), [1000.0], admin=False)
    assert desk.check("admin", PIN).check is PinCheck.WRONG
