"""The lifecycle table: readable rules, checked by property over every sequence of events."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.messages import PayStatus, ResultCode
from terminal import machine
from terminal.channels.base import PayState, RefundState, ReverseState
from terminal.machine import (AUTOMATIC, MONEY_IN_DOUBT, NOT_FOUND_LIMIT, PROGRESS, TRANSITIONS, Event,
                              IllegalTransition, Kind, State, step)

kinds = st.sampled_from(Kind)
events = st.lists(st.sampled_from(Event), max_size=40)
# Events that carry the channel's word that nothing (more) is taken, or that it was taken.
# ORDER_REFUSED: the gateway's word that it did not call the channel at all.
CHANNEL_SAYS = {Event.PAID, Event.DECLINED, Event.REVERSED, Event.ORDER_REFUSED}


def walk(kind, sequence):
    state, status, path = State.QUEUED, None, []
    for event in sequence:
        if not machine.allowed(kind, state, event):
            continue
        before = state
        state, status = step(kind, state, event)
        path.append((before, event, state, status))
    return path


def test_every_state_is_reachable_and_every_nonfinal_state_can_finish():
    targets = {nxt for nxt, _ in TRANSITIONS.values()} | {State.QUEUED}
    assert targets == set(State)
    sources = {state for state, _ in TRANSITIONS}
    assert sources == set(State) - {State.FINISHED}


def test_finished_is_absorbing():
    for event in Event:
        for kind in Kind:
            with pytest.raises(IllegalTransition):
                step(kind, State.FINISHED, event)


def test_kinds_do_not_mix():
    with pytest.raises(IllegalTransition):
        step(Kind.REFUND, State.QUEUED, Event.SHOW)
    with pytest.raises(IllegalTransition):
        step(Kind.COLLECT, State.QUEUED, Event.ASK_SUPERVISOR)


@given(kinds, events)
def test_success_only_on_the_channels_confirmation(kind, sequence):
    for before, event, after, status in walk(kind, sequence):
        if status is PayStatus.SUCCESS:
            assert event in (Event.PAID, Event.DUPLICATE)
        if status is PayStatus.REFUNDED:
            assert event is Event.REFUNDED
        if after is State.FINISHED:
            assert status is not None
        else:
            assert status is None


@given(kinds, events)
def test_money_in_doubt_is_left_only_on_the_channels_word(kind, sequence):
    """Nothing the cashier does, no deadline and no restart can end an instruction while money may
    have been taken: only PAID, DECLINED (nothing taken) or REVERSED leave that zone."""
    for before, event, after, _ in walk(kind, sequence):
        if before in MONEY_IN_DOUBT and after not in MONEY_IN_DOUBT:
            assert event in CHANNEL_SAYS, (before, event, after)


@given(kinds, events)
def test_refund_money_moves_only_after_the_supervisor(kind, sequence):
    seen_ok = False
    for before, event, after, status in walk(kind, sequence):
        seen_ok |= event is Event.SUPERVISOR_OK
        if after in (State.REFUNDING, State.REFUND_CONFIRMING) or status is PayStatus.REFUNDED:
            assert seen_ok


@given(kinds, events)
def test_no_second_pay_without_a_new_scan(kind, sequence):
    """PAYING (the only state that calls pay) is entered only by a cashier's SCAN."""
    for before, event, after, _ in walk(kind, sequence):
        if after is State.PAYING:
            assert event is Event.SCAN


def test_restart_never_pays_or_refunds_again():
    assert step(Kind.COLLECT, State.PAYING, Event.RESTART)[0] is State.CONFIRMING
    assert step(Kind.REFUND, State.REFUNDING, Event.RESTART)[0] is State.REFUND_CONFIRMING
    for state in State:
        if (state, Event.RESTART) in TRANSITIONS:
            assert state in AUTOMATIC


def test_cancel_rules():
    assert step(Kind.COLLECT, State.AWAITING_SCAN, Event.CANCEL) == (State.FINISHED, PayStatus.CLOSED)
    assert step(Kind.COLLECT, State.DECLINED, Event.CANCEL) == (State.FINISHED, PayStatus.FAILED)
    assert step(Kind.COLLECT, State.USER_PAYING, Event.CANCEL) == (State.REVERSING, None)
    for state in (State.PAYING, State.CONFIRMING, State.REVERSING):
        assert not machine.allowed(Kind.COLLECT, state, Event.CANCEL)


def test_progress_covers_every_state():
    assert set(PROGRESS) == set(State)


# --- decisions on channel answers ---------------------------------------------------------------

def test_after_pay():
    assert machine.after_pay(PayState.SUCCESS) is Event.PAID
    assert machine.after_pay(PayState.USER_PAYING) is Event.USER_PAYING
    assert machine.after_pay(PayState.FAILED) is Event.DECLINED
    assert machine.after_pay(PayState.FAILED, ResultCode.DECLINED) is Event.DECLINED
    assert machine.after_pay(PayState.FAILED, ResultCode.INSUFFICIENT_FUNDS) is Event.DECLINED
    # The order itself is refused (another window has it; above the limit): no new code can help.
    assert machine.after_pay(PayState.FAILED, ResultCode.DUPLICATE_ORDER) is Event.ORDER_REFUSED
    assert machine.after_pay(PayState.FAILED, ResultCode.BAD_AMOUNT) is Event.ORDER_REFUSED
    assert machine.after_pay(PayState.UNKNOWN, ResultCode.DUPLICATE_ORDER) is Event.UNKNOWN
    assert machine.after_pay(PayState.UNKNOWN) is Event.UNKNOWN
    assert machine.after_pay(PayState.NOT_FOUND) is Event.UNKNOWN


@given(st.sampled_from(PayState), st.booleans(), st.integers(0, 5))
def test_after_query_never_guesses(state, past, streak):
    event = machine.after_query(state, past_deadline=past, not_found_streak=streak)
    if state is PayState.SUCCESS:
        assert event is Event.PAID
    elif state in (PayState.FAILED, PayState.CLOSED):
        assert event is Event.DECLINED
    elif past or (state is PayState.NOT_FOUND and streak >= NOT_FOUND_LIMIT):
        assert event is Event.GIVE_UP  # reverse: it both closes and refunds whatever was taken
    else:
        assert event in (Event.USER_PAYING, Event.UNKNOWN)


def test_after_reverse_and_refund():
    assert machine.after_reverse(ReverseState.DONE) is Event.REVERSED
    assert machine.after_reverse(ReverseState.RETRY) is Event.REVERSE_AGAIN
    assert machine.after_reverse(ReverseState.UNKNOWN) is Event.REVERSE_AGAIN
    assert machine.after_reverse(ReverseState.FAILED) is None
    assert machine.after_refused_reverse(PayState.SUCCESS) is Event.PAID
    assert machine.after_refused_reverse(PayState.CLOSED) is Event.REVERSED
    assert machine.after_refused_reverse(PayState.UNKNOWN) is Event.REVERSE_AGAIN
    assert machine.after_refund(RefundState.SUCCESS) is Event.REFUNDED
    assert machine.after_refund(RefundState.PROCESSING) is Event.REFUND_PENDING
    assert machine.after_refund(RefundState.UNKNOWN) is Event.REFUND_PENDING
    assert machine.after_refund(RefundState.FAILED) is Event.REFUND_REFUSED
    assert machine.after_refund_query(RefundState.NOT_FOUND) is Event.REFUND_UNSEEN


# --- issue 17: bounded retries, then a person -----------------------------------------------------

def test_hand_over_and_recheck():
    for state in (State.CONFIRMING, State.USER_PAYING, State.REVERSING):
        assert step(Kind.COLLECT, state, Event.HAND_OVER) == (State.PAYMENT_NEEDS_PERSON, None)
    assert step(Kind.REFUND, State.REFUND_CONFIRMING, Event.HAND_OVER) == (State.REFUND_NEEDS_PERSON, None)
    assert step(Kind.COLLECT, State.PAYMENT_NEEDS_PERSON, Event.RECHECK) == (State.CONFIRMING, None)
    assert step(Kind.REFUND, State.REFUND_NEEDS_PERSON, Event.RECHECK) == (State.REFUND_CONFIRMING, None)
    for state in machine.NEEDS_PERSON:  # nothing but a person's recheck moves them: no cancel, no restart
        assert state not in AUTOMATIC
        for event in set(Event) - {Event.RECHECK}:
            for kind in Kind:
                assert not machine.allowed(kind, state, event)


LIMITS = machine.Limits()


@given(st.sampled_from(PayState), st.booleans(), st.integers(0, 5), st.integers(0, 5))
def test_after_query_hands_over_only_unverifiable_answers(state, past, not_found, unverified):
    event = machine.after_query(state, past_deadline=past, not_found_streak=not_found, unverified_streak=unverified)
    if event is Event.HAND_OVER:
        assert state is PayState.UNVERIFIED and unverified >= LIMITS.unverified
    if state is PayState.UNVERIFIED and unverified < LIMITS.unverified:
        assert event in (Event.GIVE_UP, Event.UNKNOWN)  # one bad reply may be damage on the way: ask again


@given(st.lists(st.sampled_from([s for s in ReverseState if s not in (ReverseState.DONE, ReverseState.FAILED)]), min_size=1, max_size=60))
def test_reverse_is_retried_within_the_budget_then_handed_over(answers):
    """Finding 1: a configuration error made reverse loop forever. Now it never exceeds the budget."""
    tally = machine.Tally()
    for n, answer in enumerate(answers, start=1):
        tally.heard(answer)
        event = machine.after_reverse(answer, reverses=n, unverified_streak=tally.unverified)
        if event is Event.HAND_OVER:
            assert n >= LIMITS.reverses or tally.unverified >= LIMITS.unverified
            return
        assert event is Event.REVERSE_AGAIN
    assert len(answers) < LIMITS.reverses


@given(st.lists(st.sampled_from([RefundState.PROCESSING, RefundState.UNKNOWN, RefundState.UNVERIFIED, RefundState.ABNORMAL,
                                 RefundState.NOT_FOUND, RefundState.UNCONFIRMED]), min_size=1, max_size=80))
def test_refund_queries_are_bounded_and_never_guess(answers):
    """Finding 1 and 4: refunds cycled between refunding and confirming forever, and CHANGE was polled
    forever. Not-final answers never end the refund either way; the budget hands it to a person."""
    tally = machine.Tally()
    for answer in answers:
        tally.heard(answer)
        tally.refund_queries += 1
        tally.abnormal += answer is RefundState.ABNORMAL
        event = machine.after_refund_query(answer, tally)
        assert event not in (Event.REFUNDED, Event.REFUND_REFUSED)
        if event is Event.HAND_OVER:
            break
        if event is Event.REFUND_UNSEEN:
            tally.refund_calls += 1
    else:
        event = None
    bound = LIMITS.refund_queries
    assert tally.refund_queries <= bound and tally.refund_calls <= LIMITS.refund_calls
    if tally.refund_queries == bound:
        assert event is Event.HAND_OVER


def test_wechat_change_is_handed_over_after_a_few_polls():
    tally = machine.Tally()
    events = []
    for _ in range(LIMITS.abnormal):
        tally.heard(RefundState.ABNORMAL)
        tally.refund_queries += 1
        tally.abnormal += 1
        events.append(machine.after_refund_query(RefundState.ABNORMAL, tally))
    assert events == [Event.REFUND_PENDING] * (LIMITS.abnormal - 1) + [Event.HAND_OVER]
    assert machine.hand_over_reason(Kind.REFUND, RefundState.ABNORMAL, 0) is machine.NeedsPerson.REFUND_ABNORMAL


@given(st.floats(0, 10**9), st.floats(0, 100), st.floats(0, 60))
def test_a_wechat_reverse_never_goes_out_sooner_than_15_s_after_micropay(started, elapsed, not_before):
    wait = machine.reverse_wait(started, started + elapsed, not_before)
    assert wait >= 0
    assert (wait == 0) == (elapsed >= not_before) or abs(elapsed - not_before) < 1e-6
    assert elapsed + wait >= not_before - 1e-6


def test_every_channel_outcome_has_exactly_one_class():
    """Issue 17: final, retryable or needs a person, for every state a client can return; the
    machine's decisions agree: a needs-a-person answer never ends an instruction."""
    from terminal.channels.base import Disposition, PayOutcome, RefundOutcome, ReverseOutcome, disposition

    for state in PayState:
        kind = disposition(PayOutcome(state))
        event = machine.after_query(state, past_deadline=False, not_found_streak=0, unverified_streak=9)
        assert (kind is Disposition.FINAL) == (event in (Event.PAID, Event.DECLINED))
        assert (kind is Disposition.NEEDS_PERSON) == (event is Event.HAND_OVER)
    for state in RefundState:
        kind = disposition(RefundOutcome(state))
        tally = machine.Tally(unverified=9, abnormal=9)
        event = machine.after_refund_query(state, tally)
        assert (kind is Disposition.FINAL) == (event in (Event.REFUNDED, Event.REFUND_REFUSED))
        if kind is Disposition.NEEDS_PERSON:
            assert event is Event.HAND_OVER
    for state in ReverseState:
        kind = disposition(ReverseOutcome(state))
        event = machine.after_reverse(state, reverses=0, unverified_streak=9)
        assert (kind is Disposition.FINAL) == (event in (Event.REVERSED, None))
        assert (kind is Disposition.NEEDS_PERSON) == (event is Event.HAND_OVER)
