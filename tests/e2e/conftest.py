"""Fixtures for the full-path tests: one channel-sandbox process per session, a SimWorld per test."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from firmware_sim.sandbox.launcher import SandboxProcess
from tests.e2e.world import SimWorld, sandbox_fixture, world_fixture


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    yield from sandbox_fixture(tmp_path_factory)


@pytest.fixture
def world(tmp_path: Path, sandbox: SandboxProcess) -> Iterator[SimWorld]:
    yield from world_fixture(tmp_path, sandbox)
