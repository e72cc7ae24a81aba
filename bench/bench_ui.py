"""UI benchmark: an instruction arriving at the service boundary -> its amount drawn on screen, and
cold start -> home screen drawn. The real app runs offscreen in a child process (bench/ui_probe.py)
exactly as pos-app runs it (`App.run()` on the main thread), around a real TerminalService; a second
thread plays the link's reader and calls `TerminalService.submit_instruction(envelope)`.

What "drawn" means, and the hook that measures it (ui_probe.FlipWatch):
    t0        just before submit_instruction (decrypt, verify, journal with fsync, activate);
    drawn     the first frame in which the instruction screen is the top screen and its amount
              label's texture holds the amount has been swapped (Window.flip -> SDL_GL_SwapWindow)
              AND glFinish() has returned, i.e. the rasteriser has written every pixel of it.
The check runs in a handler of Window.on_draw, which Kivy dispatches after Clock.tick_draw (layout,
label textures) and just before the window renders its canvas, so the frame it approves is the one
being rendered. The swap is timed by wrapping Window.flip, because handlers bound to on_flip run
before the swap itself. No pixels are read back: a full-window glReadPixels is not part of what the
cashier waits for. On a real display the frame then waits for the next vertical refresh (up to
16.7 ms at 60 Hz), which no offscreen measurement can include.

Every sample also records the stages between (observer called, refresh started, view applied, frame
drawn, swapped) and the garbage collector's pauses, so a slow sample says where its time went; the
first instruction after start is reported apart (first-use costs: shader variants, glyph caches).

Targets: instruction -> amount drawn <= 100 ms (p95); cold start -> home drawn <= 3 s.
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


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1)


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        env.update(offscreen_env(str(Path(tmp) / "kivy")))
        report = Path(tmp) / "probe.json"
        n = 10 if quick else 60
        load_before = os.getloadavg()[0]
        subprocess.run([sys.executable, "-m", "bench.ui_probe", "--work", tmp, "--report", str(report), "--n", str(n)],
                       cwd=ROOT, env=env, check=True, timeout=300, capture_output=True)
        probe = json.loads(report.read_text())
    samples = probe["samples"]
    first, rest = samples[0], samples[1:]
    total = [s["finished"] for s in rest]
    service = [s["observed"] for s in rest]
    ui = [s["finished"] - s["observed"] for s in rest]
    raster = [s["finished"] - s["flip"] for s in rest]
    p95 = _pct(total, 0.95)
    figures = {
        "instruction_to_amount_drawn_p50_ms": _pct(total, 0.5),
        "instruction_to_amount_drawn_p95_ms": p95,
        "instruction_to_amount_drawn_max_ms": round(max(total), 1),
        "first_instruction_after_start_ms": first["finished"],
        "first_instruction_of_which_service_ms": first["observed"],
        "of_which_service_submit_to_observer_p50_ms": _pct(service, 0.5),
        "of_which_service_submit_to_observer_p95_ms": _pct(service, 0.95),
        "of_which_ui_observer_to_drawn_p50_ms": _pct(ui, 0.5),
        "of_which_ui_observer_to_drawn_p95_ms": _pct(ui, 0.95),
        "of_which_swap_to_rasterised_p50_ms": _pct(raster, 0.5),
        "gc_pause_in_samples_max_ms": max(s.get("gc", 0.0) for s in samples),
        "cold_start_to_home_drawn_s": round(probe["cold_start_s"], 2),
        "samples": len(rest),
        "load_average_1min_at_start": round(load_before, 2),
    }
    return {
        "figures": figures,
        "targets": {"instruction_to_amount_drawn_p95_ms": "<= 100", "cold_start_to_home_drawn_s": "<= 3"},
        "baseline": {"frame_interval_ms": round(1000 / 60, 1), "submit_instruction_alone_p50_ms": probe["submit_p50_ms"]},
        "met": {"instruction_to_amount_drawn_p95_ms": p95 <= 100, "cold_start_to_home_drawn_s": probe["cold_start_s"] <= 3},
    }
