"""UI benchmark: instruction arriving at the service boundary -> amount drawn, and cold start ->
home screen drawn. Each measurement runs the real app offscreen in a child process
(bench/ui_probe.py) around a real TerminalService (no channel calls are needed for these two).

Targets: instruction -> amount drawn <= 100 ms (p95); cold start -> home <= 3 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from terminal.ui.display import offscreen_env

ROOT = Path(__file__).resolve().parents[1]


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        env.update(offscreen_env(str(Path(tmp) / "kivy")))
        report = Path(tmp) / "probe.json"
        n = 10 if quick else 40
        subprocess.run([sys.executable, "-m", "bench.ui_probe", "--work", tmp, "--report", str(report), "--n", str(n)],
                       cwd=ROOT, env=env, check=True, timeout=300, capture_output=True)
        probe = json.loads(report.read_text())
    lat = sorted(probe["instruction_to_amount_ms"])
    p50, p95 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.95))]
    figures = {"instruction_to_amount_drawn_p50_ms": round(p50, 1), "instruction_to_amount_drawn_p95_ms": round(p95, 1),
               "cold_start_to_home_s": round(probe["cold_start_s"], 2), "samples": len(lat)}
    return {
        "figures": figures,
        "targets": {"instruction_to_amount_drawn_p95_ms": "<= 100", "cold_start_to_home_s": "<= 3"},
        "baseline": {"frame_interval_ms": round(1000 / 60, 1), "submit_instruction_alone_p50_ms": probe["submit_p50_ms"]},
        "met": {"instruction_to_amount_drawn_p95_ms": p95 <= 100, "cold_start_to_home_s": probe["cold_start_s"] <= 3},
    }
