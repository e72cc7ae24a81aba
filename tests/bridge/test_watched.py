"""bridge/watched.py: a file the running bridge re-reads when it changes, on an injected clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.watched import CHECK_INTERVAL_S, WatchedFile
from tests.clocks import ManualClock


class Unreadable(ValueError):
    pass


def read_number(path: Path) -> int:
    """As the bridge's readers do, a missing or unreadable file is one of the reader's own errors."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise Unreadable(f"cannot read {path.name}: {exc.strerror}") from None
    if not text.isdigit():
        raise Unreadable(f"{path.name} holds {text!r}, not a number")
    return int(text)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, ManualClock, list[str], WatchedFile[int]]:
    path = tmp_path / "n.txt"
    path.write_text("1", encoding="utf-8")
    clock = ManualClock(1000.0)
    errors: list[str] = []
    watched = WatchedFile(path, read_number, errors.append, errors=(Unreadable,), what="number file", clock=clock)
    return path, clock, errors, watched


def test_the_contents_at_start_are_in_force(setup: tuple[Path, ManualClock, list[str], WatchedFile[int]]) -> None:
    _, _, errors, watched = setup
    assert watched.get() == 1 and errors == []


def test_a_change_is_not_looked_at_before_the_interval_has_passed(setup: tuple[Path, ManualClock, list[str], WatchedFile[int]]) -> None:
    path, clock, _, watched = setup
    path.write_text("22", encoding="utf-8")
    clock.advance(CHECK_INTERVAL_S / 2)
    assert watched.get() == 1


def test_a_change_is_in_force_once_the_interval_has_passed(setup: tuple[Path, ManualClock, list[str], WatchedFile[int]]) -> None:
    path, clock, _, watched = setup
    path.write_text("22", encoding="utf-8")
    clock.advance(CHECK_INTERVAL_S)
    assert watched.get() == 22


def test_a_change_that_does_not_parse_is_reported_and_the_previous_contents_stay(
        setup: tuple[Path, ManualClock, list[str], WatchedFile[int]]) -> None:
    path, clock, errors, watched = setup
    path.write_text("half-saved", encoding="utf-8")
    clock.advance(CHECK_INTERVAL_S)
    assert watched.get() == 1
    assert len(errors) == 1 and "number file change ignored" in errors[0] and "half-saved" in errors[0]


def test_a_bad_change_is_reported_once_not_on_every_look(setup: tuple[Path, ManualClock, list[str], WatchedFile[int]]) -> None:
    path, clock, errors, watched = setup
    path.write_text("half-saved", encoding="utf-8")
    for _ in range(3):
        clock.advance(CHECK_INTERVAL_S)
        watched.get()
    assert len(errors) == 1


def test_fixing_a_bad_change_puts_the_fixed_contents_in_force(setup: tuple[Path, ManualClock, list[str], WatchedFile[int]]) -> None:
    path, clock, _, watched = setup
    path.write_text("half-saved", encoding="utf-8")
    clock.advance(CHECK_INTERVAL_S)
    watched.get()
    path.write_text("333", encoding="utf-8")
    clock.advance(CHECK_INTERVAL_S)
    assert watched.get() == 333


def test_a_deleted_file_keeps_the_last_good_contents(setup: tuple[Path, ManualClock, list[str], WatchedFile[int]]) -> None:
    path, clock, errors, watched = setup
    path.unlink()
    clock.advance(CHECK_INTERVAL_S)
    assert watched.get() == 1
    assert len(errors) == 1 and "cannot read n.txt" in errors[0]
