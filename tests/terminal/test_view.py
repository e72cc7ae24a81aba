"""terminal/view.py alone: the one screen enum and route(), which picks what the POS shows from the
service's view (terminal.machine.State through the one table) and what the cashier opened by hand."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.amount import Direction
from protocol.messages import PayStatus
from terminal import texts
from terminal.gateway_watch import GatewayState
from terminal.machine import State
from terminal.view import _SCREEN, ResultView, Screen, ScreenView, route

DONE = ResultView("M1", "MZ1", Direction.COLLECT, 1250, PayStatus.SUCCESS, None, "", None, texts.RESULT_SUCCESS, 1.0)


def view(screen: Screen, **fields: object) -> ScreenView:
    base = ScreenView(1, screen, None, "M1", "MZ1", "T1", Direction.COLLECT, 1250, None, (), None, texts.IDLE, None, None,
                      None, False, False, None, None, 0, None, True)
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]  # field values of several types by name


@pytest.mark.parametrize("screen, manual, expected", [
    (Screen.IDLE, None, Screen.IDLE),
    (Screen.IDLE, Screen.HISTORY, Screen.HISTORY),
    (Screen.AWAITING_SCAN, Screen.HISTORY, Screen.AWAITING_SCAN),  # money first: an instruction wins over history
    (Screen.AWAITING_SCAN, Screen.CAMERA_SCAN, Screen.CAMERA_SCAN),
    (Screen.DECLINED, Screen.CAMERA_SCAN, Screen.CAMERA_SCAN),
    (Screen.AWAITING_SUPERVISOR, Screen.REFUND_PIN, Screen.REFUND_PIN),
    (Screen.AWAITING_SUPERVISOR, Screen.ADMIN_PIN, Screen.ADMIN_PIN),  # clearing the supervisor PIN's lockout
    (Screen.AWAITING_SUPERVISOR, Screen.SETTINGS, Screen.AWAITING_SUPERVISOR),
    (Screen.PAYING, Screen.CAMERA_SCAN, Screen.PAYING),
    (Screen.REFUNDING, None, Screen.REFUNDING),
])
def test_route(screen: Screen, manual: Screen | None, expected: Screen) -> None:
    assert route(view(screen), manual, False) is expected


def test_a_result_shows_until_dismissed() -> None:
    assert route(view(Screen.RESULT, last_result=DONE), None, False) is Screen.RESULT
    assert route(view(Screen.RESULT, last_result=DONE), None, True) is Screen.IDLE
    assert route(view(Screen.IDLE, last_result=DONE), None, False) is Screen.RESULT


def test_every_state_of_the_money_machine_has_its_screen_in_one_table() -> None:
    assert set(_SCREEN) == set(State) - {State.FINISHED}  # a finished one shows as its result
    assert all(isinstance(screen, Screen) for screen in _SCREEN.values())


def test_a_case_for_a_person_does_not_hold_the_screen() -> None:
    """Issue 17 on the POS: nothing moves until a person acts, so the home screen (and its count of
    open cases, which opens their list) shows instead of the parked instruction."""
    parked = view(Screen.REFUNDING, state=State.REFUND_NEEDS_PERSON, direction=Direction.REFUND, needs_person_elsewhere=2)
    assert route(parked, None, False) is Screen.IDLE and parked.needs_person_count == 3
    assert route(parked, Screen.NEEDS_PERSON, False) is Screen.NEEDS_PERSON
    paying = view(Screen.PAYING, state=State.USER_PAYING, needs_person_elsewhere=1)
    assert route(paying, Screen.NEEDS_PERSON, False) is Screen.PAYING  # money first


@pytest.mark.parametrize("fields, expected", [
    ({"journal_problem": texts.JOURNAL_LOCKED}, Screen.JOURNAL_PROBLEM),
    ({"journal_problem": texts.STORAGE_UNAVAILABLE, "gateway": GatewayState.DISABLED}, Screen.JOURNAL_PROBLEM),
    ({"gateway": GatewayState.DISABLED}, Screen.DEVICE_DISABLED),
    ({"gateway": GatewayState.UNREACHABLE}, Screen.GATEWAY_UNREACHABLE),
    ({"gateway": GatewayState.REACHABLE}, Screen.IDLE),
    ({"gateway": GatewayState.UNKNOWN}, Screen.IDLE),
])
def test_a_device_that_cannot_take_payments_says_why_instead_of_waiting(fields: dict, expected: Screen) -> None:
    idle = view(Screen.IDLE, order_no=None, direction=None, amount_fen=None, **fields)
    assert route(idle, None, False) is expected
    assert route(idle, Screen.HISTORY, False) is Screen.HISTORY  # today's list still opens
    collecting = view(Screen.AWAITING_SCAN, **fields)
    assert route(collecting, None, False) is Screen.AWAITING_SCAN  # an instruction already shown stays
