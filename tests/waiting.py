"""The one polling wait of the tests, for conditions no event announces (another process's state,
an HTTP answer). Where the code under test offers an event or an observer, wait on that instead
(tests/terminal/helpers.wait_for_view); never sleep a fixed time and then assert.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

POLL_S = 0.01  # how often the condition is asked again; the wait ends as soon as it holds


def wait_until(predicate: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """`predicate()`'s first truthy value, asked until it comes or `timeout` s pass (then AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_S)
