"""Issue 14: the POS's start-up check against the gateway's mark when the gateway does not answer
(a real connection to a closed loopback port): an ordinary start goes on (the bridge's mark still
guards it); a start that was asked to re-sync stays locked and says why."""

from __future__ import annotations

import socket
from pathlib import Path

from terminal.gateway_client import GatewayConnection
from terminal.gateway_marks import GatewayMarks
from terminal.journal import Journal
from terminal.resync import request_path


class Service:
    """What GatewayMarks needs of the terminal service: its journal and a way to lock it."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.problems: list[str] = []

    def journal_rolled_back(self, problem: str) -> None:
        self.problems.append(problem)
        self.journal.rolled_back(problem)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marks() -> GatewayMarks:
    return GatewayMarks(GatewayConnection(f"http://127.0.0.1:{closed_port()}", device_id="POS-1", seed=bytes(32)))


def test_an_ordinary_start_goes_on_when_the_gateway_does_not_answer(tmp_path: Path) -> None:
    service = Service(Journal(tmp_path / "journal.db"))
    marks().at_start(service)  # type: ignore[arg-type]  # a stand-in with the two things at_start uses
    assert service.problems == [] and not service.journal.locked


def test_a_requested_re_sync_stays_locked_until_the_gateway_answers(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    request_path(journal.path).write_text("re-sync requested\n", encoding="ascii")
    service = Service(journal)
    marks().at_start(service)  # type: ignore[arg-type]  # a stand-in with the two things at_start uses
    assert journal.locked and "did not answer" in journal.integrity.reason
    assert request_path(journal.path).exists()  # asked again at the next start
