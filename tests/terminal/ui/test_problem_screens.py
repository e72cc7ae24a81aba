"""The screens of a POS that cannot simply take a payment (PIN lockout cleared by the admin, device
disabled by the gateway, gateway unreachable, journal locked, cases for a person), on the real app
and real terminal services, pressed by a finger: see problems_run.py for the steps."""

from __future__ import annotations

from pathlib import Path

from tests.terminal.ui.conftest import finish


def test_problem_screens_on_the_real_service(run_script, tmp_path: Path) -> None:
    report_path = tmp_path / "problems.json"
    process = run_script("tests.terminal.ui.problems_run", "--work", str(tmp_path), "--report", str(report_path))
    report = finish(process, report_path)
    assert report["error"] is None, f"after steps {report['steps']}: {report['error']}"
    assert report["steps"] == ["PIN lockout cleared by the admin", "device disabled by the gateway", "gateway unreachable",
                               "journal locked", "needs a person: counted, listed, rechecked"]
