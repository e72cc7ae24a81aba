"""Shared fixtures: synthetic days written in every source's real format."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from reconcile import synth

DAY = datetime.date(2026, 11, 22)


@pytest.fixture(scope="session")
def every_class_day(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One seeded day with a case of every difference class (read-only: copy before changing)."""
    return synth.write_day(tmp_path_factory.mktemp("every-class"), DAY, synth.every_class_day(DAY))


@pytest.fixture(scope="session")
def clean_day(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return synth.write_day(tmp_path_factory.mktemp("clean"), DAY, synth.clean_day(DAY, 60))


@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for hypothesis tests (function-scoped tmp_path does not mix with @given)."""
    return tmp_path_factory.mktemp("scratch")
