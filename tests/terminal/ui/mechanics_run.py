"""What keeps "instruction -> amount drawn" short, checked as structure (never as timing): one
screen in the window right after a switch, no stencil on the screen manager, every screen laid
out at the window's size from the start, the bill's list clipping only when it overflows, and the
start-up heap frozen out of the garbage collector. Run in its own process by test_mechanics.py:

    SDL_VIDEODRIVER=offscreen python -m tests.terminal.ui.mechanics_run --report FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import tempfile
from pathlib import Path

from terminal.ui import display

display.prepare_kivy(kivy_home=tempfile.mkdtemp(prefix="kivy-home-"), offscreen=True, clock="default")

from terminal.ui.app import PORTRAIT, configure_window, create_app  # noqa: E402

configure_window(PORTRAIT)

from kivy.core.window import Window  # noqa: E402
from kivy.graphics import StencilPush  # noqa: E402

from terminal.ui import offscreen as off  # noqa: E402
from terminal.ui import theme  # noqa: E402
from terminal.ui.fonts import prepare_fonts  # noqa: E402
from protocol.messages import BillItem  # noqa: E402
from terminal.ui.showcase import StaticBackend, clock, views  # noqa: E402
from terminal.ui.widgets import FitScroll  # noqa: E402


async def scenario(app, backend: StaticBackend, checks: dict) -> None:
    vm = app.vm
    await off.until(lambda: app.home_drawn_at is not None, what="the first frame")
    await off.frames(3)
    manager = app.root
    checks["freeze_count_after_start"] = gc.get_freeze_count()
    checks["manager_canvas"] = len(manager.canvas.before.children) + len(manager.canvas.after.children)
    checks["clear_colour_is_background"] = tuple(Window.clearcolor) == tuple(theme.BG)
    checks["hidden_screens_sized"] = all(tuple(s.size) == tuple(Window.size) for s in manager.screens)

    v = views()
    backend.current = v["instruction_collect"]
    vm.refresh()  # as the Clock would: no frame runs between this and the checks below
    checks["children_right_after_switch"] = [s.name for s in manager.children]

    await off.frames(3)
    scroll = next(w for w in off.walk(manager.get_screen("instruction")) if isinstance(w, FitScroll))

    def clipping() -> bool:
        first = scroll.canvas.before.children[0] if scroll.canvas.before.children else None
        return isinstance(first, StencilPush)

    checks["clips_with_3_items"] = clipping()
    many = tuple(BillItem(f"检查项目 {i}", "1", 1_00) for i in range(40))
    backend.show(dataclasses.replace(v["instruction_collect"], items=many))
    await off.until(lambda: clipping(), timeout=5, what="the long bill to clip")
    checks["clips_with_40_items"] = clipping()
    backend.show(v["instruction_collect"])
    await off.until(lambda: not clipping(), timeout=5, what="the short bill to stop clipping")
    checks["clips_again_with_3_items"] = clipping()
    app.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    backend = StaticBackend()
    app = create_app(backend, fonts=prepare_fonts(), receipts_dir=None, clock=clock)
    checks: dict = {}
    error = off.run_app(app, lambda a: scenario(a, backend, checks))
    args.report.write_text(json.dumps({"error": error, "checks": checks}, ensure_ascii=False), encoding="utf-8")
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main())
