"""terminal.observers: the screen's own state (revision, notice, result on show) and who hears of it."""

from __future__ import annotations

import logging
import threading

from terminal import texts
from terminal.observers import Observers, ScreenState


def test_every_screen_change_raises_the_revision() -> None:
    screen = ScreenState()
    seen = [screen.revision]
    for step in (screen.changed, screen.moved_on, lambda: screen.set_notice(texts.BUSY), screen.clear_notice, screen.dismiss):
        step()
        seen.append(screen.revision)
    assert seen == sorted(set(seen))  # strictly growing: a UI redraws on every one


def test_a_notice_stays_until_the_instruction_moves_on() -> None:
    screen = ScreenState()
    screen.set_notice(texts.WRONG_PIN)
    screen.changed()  # e.g. the link came up: the cashier still needs to read it
    assert screen.notice == texts.WRONG_PIN
    screen.moved_on()
    assert screen.notice is None


def test_a_finished_instruction_is_shown_until_dismissed() -> None:
    screen = ScreenState()
    screen.set_notice(texts.BUSY)
    screen.finished(4, show=True)
    assert (screen.last_seq, screen.show_result) == (4, True)
    screen.dismiss()
    assert (screen.last_seq, screen.show_result, screen.notice) == (4, False, None)


def test_a_background_refund_does_not_take_over_the_result_screen() -> None:
    screen = ScreenState()
    screen.finished(4, show=True)
    screen.dismiss()
    screen.finished(5, show=False)
    assert (screen.last_seq, screen.show_result) == (4, False)


def test_observers_hear_the_same_view_in_the_order_they_came() -> None:
    observers: Observers[int] = Observers()
    heard: list[tuple[str, int]] = []
    observers.add(lambda v: heard.append(("a", v)))
    observers.add(lambda v: heard.append(("b", v)))
    built: list[int] = []

    def build() -> int:
        built.append(1)
        return 42

    observers.tell(build)
    assert heard == [("a", 42), ("b", 42)] and built == [1]  # one view, built once


def test_a_removed_observer_hears_nothing_more_and_removing_twice_is_harmless() -> None:
    observers: Observers[int] = Observers()
    heard: list[int] = []
    remove = observers.add(heard.append)
    observers.tell(lambda: 1)
    remove()
    remove()
    observers.tell(lambda: 2)
    assert heard == [1]


def test_a_failing_observer_is_logged_and_the_others_still_hear(caplog) -> None:
    observers: Observers[int] = Observers()
    heard: list[int] = []

    def broken(view: int) -> None:
        raise RuntimeError("UI bug")

    observers.add(broken)
    observers.add(heard.append)
    with caplog.at_level(logging.ERROR, logger="terminal.observers"):
        observers.tell(lambda: 7)
    assert heard == [7]
    assert "observer" in caplog.text and "UI bug" in caplog.text


def test_an_observer_may_call_back_and_add_another_from_another_thread() -> None:
    observers: Observers[int] = Observers()
    heard: list[int] = []
    late: list[int] = []
    done = threading.Event()

    def reentrant(view: int) -> None:
        heard.append(view)
        if view == 1:
            observers.tell(lambda: 2)  # re-entrant: the service's view() may notify again

            def from_thread() -> None:
                observers.add(late.append)
                done.set()
            threading.Thread(target=from_thread).start()

    observers.add(reentrant)
    observers.tell(lambda: 1)
    assert done.wait(10)
    observers.tell(lambda: 3)
    assert heard == [1, 2, 3] and late == [3]
