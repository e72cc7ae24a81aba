"""Hypothesis example budgets that follow the active profile.

A test that caps its examples to keep `make test` quick writes `max_examples=examples(60)`: 60 in
the default profile, scaled up with the profile under `make fuzz` (20,000 a property there).
"""

from hypothesis import settings

DEFAULT_MAX_EXAMPLES = 150  # the "default" profile in tests/conftest.py


def examples(n: int) -> int:
    active = settings().max_examples
    return n if active <= DEFAULT_MAX_EXAMPLES else n * active // DEFAULT_MAX_EXAMPLES
