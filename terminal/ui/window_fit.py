"""The POS window on a desktop: the device's shape, scaled down to fit the display.

A portrait smart POS is 720x1280; most desktop displays are less than 1280 pixels high. The layouts
are in fractions of the window's short side (terminal/ui/theme.py), so a smaller window of the same
shape shows exactly the same screen, only smaller: `fitted_size` keeps the shape and never scales
up. The display's usable area (without panels and docks) comes from SDL, through the SDL library
Kivy has already loaded and initialised (`usable_display_size`); where it cannot be asked, the
window keeps the device's size.

Nothing here matters on the device itself, where the app fills the screen.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Room left for the window's title bar and frame, which the usable area does not subtract.
DECORATION_PX = (16, 48)


def fitted_size(size: tuple[int, int], usable: tuple[int, int], decoration: tuple[int, int] = DECORATION_PX) -> tuple[int, int]:
    """`size` scaled by one factor so that it and its decoration fit `usable`; never enlarged."""
    room = (max(1, usable[0] - decoration[0]), max(1, usable[1] - decoration[1]))
    scale = min(1.0, room[0] / size[0], room[1] / size[1])
    return max(1, int(size[0] * scale)), max(1, int(size[1] * scale))


class _Rect(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


def _loaded_sdl() -> str | None:
    """The SDL2 library this process has loaded (Kivy's own copy), or the system's."""
    maps = Path("/proc/self/maps")
    if sys.platform.startswith("linux") and maps.exists():
        for line in maps.read_text(encoding="utf-8", errors="replace").splitlines():
            path = line.split()[-1] if line.split() else ""
            if "/libSDL2-2" in path or path.endswith("/libSDL2-2.0.so.0"):
                return path
    return ctypes.util.find_library("SDL2")


def usable_display_area() -> tuple[int, int, int, int] | None:
    """The usable area of the first display (x, y, width, height); None when SDL cannot say (no
    display, an SDL that is not the initialised one, an offscreen driver)."""
    path = _loaded_sdl()
    if path is None:
        return None
    try:
        sdl = ctypes.CDLL(path)
        rect = _Rect()
        if sdl.SDL_GetDisplayUsableBounds(0, ctypes.byref(rect)) != 0:
            return None
    except (OSError, AttributeError) as exc:
        log.info("cannot ask SDL for the display size (%s); the window keeps the device's size", exc)
        return None
    return (rect.x, rect.y, rect.w, rect.h) if rect.w > 0 and rect.h > 0 else None


def placed(size: tuple[int, int], area: tuple[int, int, int, int], decoration: tuple[int, int] = DECORATION_PX) -> tuple[int, int]:
    """Where a window of `size` goes: centred in the usable `area`, its title bar inside it."""
    x, y, width, height = area
    return x + max(0, (width - size[0]) // 2), y + max(decoration[1] - decoration[0] // 2, (height - size[1]) // 2)


def fit_window(window: Any) -> tuple[int, int]:
    """Shrink the (already open) Kivy window to fit the display, keeping its shape, and centre it
    there; returns its size in the display's coordinates (Kivy's system_size, as SDL's area)."""
    size = (int(window.system_size[0]), int(window.system_size[1]))
    area = usable_display_area()
    if area is None:
        return size
    fitted = fitted_size(size, area[2:])
    if fitted != size:
        log.info("the display's usable area is %dx%d: the %dx%d window is scaled to %dx%d", *area[2:], *size, *fitted)
        window.system_size = fitted
    window.left, window.top = placed(fitted, area)  # SDL centred the unscaled one
    return fitted
