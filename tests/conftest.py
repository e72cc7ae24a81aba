"""Shared test settings: hypothesis profiles.

`make test` uses the default profile (quick, deterministic enough for CI); `make fuzz` selects
the `fuzz` profile for long campaigns.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=150, deadline=None)
settings.register_profile("fuzz", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")
