"""Child process of bench_ui: cold start (process start -> home drawn) and instruction -> amount
drawn, measured on the real app offscreen around a real TerminalService. See bench_ui for what
"drawn" means and which hook measures it.

    SDL_VIDEODRIVER=offscreen python -m bench.ui_probe --work DIR --report FILE [--n 40] [--profile FILE]

The app runs exactly as pos-app runs it: `App.run()` on the main thread (Kivy's own loop, not the
asyncio driver the tests use). A second thread plays the link: it hands each instruction to
`TerminalService.submit_instruction`, as the link's reader thread does on a device.
"""

from __future__ import annotations

import time

T_PROCESS = time.perf_counter()

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

from terminal.ui import display  # noqa: E402

display.prepare_kivy(kivy_home=tempfile.mkdtemp(prefix="kivy-home-"), offscreen=True)

from terminal.ui.app import PORTRAIT, build_app, configure_window  # noqa: E402

configure_window(PORTRAIT)

from kivy.clock import Clock  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from kivy.graphics.opengl import glFinish  # noqa: E402

from terminal.ui.fonts import prepare_fonts  # noqa: E402
from tests.terminal.helpers import His, make_config, open_service  # noqa: E402

STAGES = ("observed", "refresh", "applied", "draw", "flip", "finished")
WAIT_S = 10.0


class FlipWatch:
    """Stamps the first frame in which `shows()` is true, at three points of that frame:
    "draw"      Window's on_draw is dispatched (our handler runs just before the window renders
                its canvas: layout, Clock.tick_draw and the label textures are done by then);
    "flip"      Window.flip() returned (SDL_GL_SwapWindow: the frame is handed to the display);
    "finished"  glFinish() returned: the rasteriser (llvmpipe here, a GPU on a device) has written
                every pixel of that frame. This is "drawn".
    Window.flip is wrapped on the instance (it shadows WindowSDL.flip), because handlers bound to
    on_flip run before the window's own on_flip performs the swap."""

    def __init__(self) -> None:
        self.shows: Callable[[], bool] | None = None
        self.profiler: object | None = None  # a cProfile.Profile enabled on the main thread for this frame
        self.stamps: dict[str, float] = {}
        self.done = threading.Event()
        self._flip = Window.flip
        Window.flip = self._flipped
        Window.fbind("on_draw", self._draw)

    def expect(self, shows: Callable[[], bool]) -> None:
        self.stamps = {}
        self.done.clear()
        self.shows = shows

    def stamp(self, stage: str) -> None:
        if self.shows is not None:
            self.stamps.setdefault(stage, time.perf_counter())

    def _draw(self, *args: object) -> None:
        if self.shows is not None and self.shows():
            self.stamp("draw")

    def _flipped(self) -> None:
        measured = self.shows is not None and "draw" in self.stamps
        self._flip()
        if measured:
            self.stamps["flip"] = time.perf_counter()
            glFinish()
            self.stamps["finished"] = time.perf_counter()
            if self.profiler is not None:
                self.profiler.disable()  # type: ignore[attr-defined]  # cProfile.Profile, typed object to keep the import lazy
            self.shows = None
            self.done.set()


def on_top(app: object, name: str) -> bool:
    manager = app.root  # type: ignore[attr-defined]  # the kivy App (kivy has no type information)
    return manager is not None and bool(manager.children) and manager.children[0].name == name


def amount_shown(app: object, amount: str) -> bool:
    """The instruction screen is the top (only) screen, and its amount label's texture holds the
    amount (the core label keeps the text it last rendered)."""
    if not on_top(app, "instruction"):
        return False
    label = app.root.get_screen("instruction").ids.amount  # type: ignore[attr-defined]  # the kivy App (kivy has no type information)
    return amount in label.text and label._label.text == label.text and label.texture is not None


class GcPauses:
    """Python's garbage collector stops every thread; record each pause to charge it to a sample."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float, int]] = []
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((self._start, time.perf_counter(), info["generation"]))

    def within(self, start: float, end: float) -> float:
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b, _ in self.pauses)


def wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the main thread's measured frames here")
    args = parser.parse_args()
    service = open_service(args.work / "journal.db", make_config())
    his = His()
    app = build_app(service, fonts=prepare_fonts(), camera_index=None, probe_network=False)
    vm = app.vm
    out: dict = {"samples": [], "submit_ms": [], "error": None}
    watch = FlipWatch()
    pauses = GcPauses()
    watch.expect(lambda: on_top(app, "home"))
    profiler = None
    if args.profile:  # profiles the main thread from the refresh to the measured frame's glFinish
        import cProfile

        profiler = cProfile.Profile()
        watch.profiler = profiler

    # stage stamps along the path (the stamps cost microseconds)
    app.backend.subscribe(lambda: watch.stamp("observed"))
    refresh, apply = vm.refresh, vm.apply

    def timed_refresh() -> None:
        if watch.shows is not None and "refresh" not in watch.stamps:
            watch.stamp("refresh")
            if profiler is not None:
                profiler.enable()
        refresh()

    def timed_apply(view: object) -> None:
        apply(view)
        watch.stamp("applied")

    vm.refresh, vm.apply = timed_refresh, timed_apply

    def link() -> None:  # plays the link's reader thread; the app's loop runs on the main thread
        try:
            if not watch.done.wait(WAIT_S * 3):
                raise TimeoutError("the home screen was never drawn")
            out["cold_start_s"] = watch.stamps["finished"] - T_PROCESS
            time.sleep(0.3)
            for i in range(args.n):
                envelope = his.envelope(f"MZB{i:06d}", f"+{i + 1}.50")
                want = f"{i + 1}.50"
                watch.expect(lambda: amount_shown(app, want))
                start = time.perf_counter()
                service.submit_instruction(envelope)
                out["submit_ms"].append((time.perf_counter() - start) * 1000)
                if not watch.done.wait(WAIT_S):
                    raise TimeoutError(f"the amount {want} was never drawn")
                sample = {stage: round((watch.stamps[stage] - start) * 1000, 2) for stage in STAGES if stage in watch.stamps}
                sample["gc"] = round(pauses.within(start, watch.stamps["finished"]) * 1000, 2)
                out["samples"].append(sample)
                service.cancel()
                wait(lambda: vm.screen == "result", "the result")
                Clock.schedule_once(lambda dt: vm.dismiss_result())
                wait(lambda: vm.screen == "home", "home")
                time.sleep(0.15)  # let the home screen's frames finish, as between two patients
        except BaseException as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            Clock.schedule_once(lambda dt: app.stop())

    threading.Thread(target=link, name="probe-link", daemon=True).start()
    app.run()
    service.close()
    if profiler is not None:
        profiler.dump_stats(str(args.profile))
    s = sorted(out["submit_ms"]) or [0.0]
    out["submit_p50_ms"] = round(s[len(s) // 2], 2)
    args.report.write_text(json.dumps(out))
    if out["error"]:
        raise SystemExit(out["error"])


if __name__ == "__main__":
    main()
