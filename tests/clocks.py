"""The injected clock of the tests: seconds that move only when the test moves them.

    clock = ManualClock(1_790_000_000.0)     # unix seconds, or any monotonic origin
    service = Something(clock=clock)          # reads clock()
    clock.now += 30    or    clock.advance(30)
"""

from __future__ import annotations


class ManualClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
