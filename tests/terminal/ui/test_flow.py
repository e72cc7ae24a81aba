"""End to end on the real app and the real terminal service with the channel sandbox (see
flow_run.py for the steps and what each checks)."""

from __future__ import annotations

from pathlib import Path

from tests.terminal.ui.conftest import finish


def test_cashier_flows_on_the_real_service(run_script, tmp_path: Path) -> None:
    report_path = tmp_path / "flow.json"
    process = run_script("tests.terminal.ui.flow_run", "--work", str(tmp_path), "--report", str(report_path))
    report = finish(process, report_path)
    assert report["error"] is None, f"after steps {report['steps']}: {report['error']}"
    assert report["steps"] == ["instruction shown", "refused code and slow typing", "scan, paying, result", "receipt printed",
                               "receipt reprinted from home",
                               "refund with wrong then right PIN", "cancel", "english and history",
                               "power cycle: the screens follow the new service"]
