"""The structure behind a fast amount screen (see mechanics_run.py); bench_ui measures the time."""

from __future__ import annotations

from pathlib import Path

from tests.terminal.ui.conftest import finish


def test_one_cheap_frame_for_the_amount(run_script, tmp_path: Path) -> None:
    report_path = tmp_path / "mechanics.json"
    report = finish(run_script("tests.terminal.ui.mechanics_run", "--report", str(report_path)), report_path)
    assert report["error"] is None, report["error"]
    checks = report["checks"]
    assert checks["children_right_after_switch"] == ["instruction"]  # the old screen is gone in the same frame
    assert checks["manager_canvas"] == 0  # no stencil passes around the screens
    assert checks["clear_colour_is_background"] is True  # no full-window background rectangle
    assert checks["hidden_screens_sized"] is True  # laid out once at start, not when first shown
    assert checks["freeze_count_after_start"] > 10_000  # Kivy, fonts and screens are out of the collector's reach
    assert checks["clips_with_3_items"] is False and checks["clips_with_40_items"] is True
    assert checks["clips_again_with_3_items"] is False
