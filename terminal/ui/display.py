"""Is there a screen to draw on, and the environment Kivy needs before it is first imported.

Kivy opens its window (and parses sys.argv, and writes ~/.kivy) as a side effect of importing
`kivy.core.window`, so every decision here must happen before that import. Nothing in this module
imports Kivy.

Offscreen rendering (tests, screenshots, benchmarks, CI): SDL2's "offscreen" video driver with
Mesa's llvmpipe renders real pixels with no X server and no GPU; `offscreen_env()` gives the exact
variables. Xvfb (`xvfb-run -a`) works too and is the fallback when the SDL2 build lacks the driver.
"""

from __future__ import annotations

import os
import sys
import tempfile

HEADLESS_HINT = (
    "pos-app needs a display, and this machine has none (DISPLAY and WAYLAND_DISPLAY are not set).\n"
    "  - To run the whole system without screens: make run HEADLESS=1\n"
    "  - To see the screens here anyway: xvfb-run -a pos-app ... (a virtual display), or\n"
    "    SDL_VIDEODRIVER=offscreen pos-app ... --screenshot-dir DIR (renders to image files)"
)


def has_display(environ: dict[str, str] | None = None, platform: str = sys.platform) -> bool:
    env = os.environ if environ is None else environ
    if env.get("SDL_VIDEODRIVER") in ("offscreen", "dummy", "kmsdrm", "wayland", "x11", "windows", "cocoa"):
        return True  # the caller chose a driver on purpose (offscreen rendering or a framebuffer)
    if platform.startswith("linux") or "bsd" in platform:
        if "ANDROID_ARGUMENT" in env or "ANDROID_PRIVATE" in env:
            return True  # python-for-android: the activity owns the surface
        return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    return True  # Windows and macOS always have a desktop when a user runs the app


def offscreen_env(kivy_home: str | None = None) -> dict[str, str]:
    """The variables for rendering without a display (merge into os.environ or a child's env)."""
    return {
        "SDL_VIDEODRIVER": "offscreen",
        "KIVY_NO_ARGS": "1",
        "KIVY_NO_CONSOLELOG": "1",
        "KIVY_HOME": kivy_home or tempfile.mkdtemp(prefix="kivy-home-"),
        "KIVY_LOG_MODE": "PYTHON",
        # Density 1: the screenshots are exactly the window size in pixels.
        "KIVY_METRICS_DENSITY": "1",
    }


def prepare_kivy(*, kivy_home: str | None = None, offscreen: bool = False, clock: str = "interrupt") -> None:
    """Set what Kivy reads at import: no argv parsing (our argparse owns the command line), a
    private KIVY_HOME unless the user set one (so a POS never depends on ~/.kivy), and the clock.

    clock="interrupt" (the app): an instruction arriving on the link thread schedules the screen
    update and the main loop wakes at once, instead of sleeping out the rest of its 16.7 ms frame.
    clock="default" for `App.async_run` (the offscreen test driver): Kivy 2.3's interruptible clock
    lets asyncio's TimeoutError escape its frame wait and ends the loop."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    os.environ["KIVY_CLOCK"] = clock
    if kivy_home:
        os.environ["KIVY_HOME"] = kivy_home
    if offscreen:
        for key, value in offscreen_env(os.environ.get("KIVY_HOME") or kivy_home).items():
            os.environ.setdefault(key, value)
