"""A finger on the glass, for the tests: taps through the Window, and what would take them.

A tap is a touch (down, a one-pixel move, up) fed to Kivy's event loop by an input provider, like
the touch screen's or the mouse's, at the widget's window coordinates: the loop sends it through
the post-processing modules and the Window to whatever widget is on top there. Nothing here calls a
button's callback: a button covered by another widget does not answer, and `tap()` says what took
the touch instead (`covering()`: Kivy hands a touch that lands on a disabled widget to nobody).

Runs on the Kivy main thread inside the app's event loop (`App.async_run`); waits are over real
frames (terminal.ui.offscreen.until).
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Callable

from kivy.core.window import Window
from kivy.input.motionevent import MotionEvent
from kivy.input.provider import MotionEventProvider
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from terminal.ui.offscreen import until, visible, walk


class Finger(MotionEvent):
    """One fingertip on the glass, at window pixel coordinates."""

    def __init__(self, x: float, y: float) -> None:
        self._window_size = Window.size
        super().__init__("finger", next(_finger_ids), self._normalise(x, y), is_touch=True, type_id="touch")

    def _normalise(self, x: float, y: float) -> dict[str, float]:
        width, height = self._window_size
        return {"x": x / (width - 1.0), "y": y / (height - 1.0)}

    def depack(self, args: dict[str, float]) -> None:
        self.sx, self.sy = args["x"], args["y"]
        self.profile = ["pos"]
        super().depack(args)


_finger_ids = itertools.count(1)


class FingerProvider(MotionEventProvider):
    """An input provider like the touch screen's (or the mouse's): the event loop collects its
    events once a frame and sends them through the post-processing modules and the Window to
    whatever widget is on top at that point, exactly as it does a real finger's."""

    def __init__(self) -> None:
        super().__init__("finger", None)
        self.queue: deque[tuple[str, Finger]] = deque()

    def update(self, dispatch_fn: Callable[..., None]) -> None:
        while self.queue:
            dispatch_fn(*self.queue.popleft())


_provider: FingerProvider | None = None


def _finger_provider() -> FingerProvider:
    global _provider
    from kivy.base import EventLoop

    if _provider is None:
        _provider = FingerProvider()
    EventLoop.add_input_provider(_provider)  # once per event loop; a no-op when already there
    return _provider


def window_centre(widget: Widget) -> tuple[float, float]:
    return widget.to_window(*widget.center)


async def tap_at(x: float, y: float, *, timeout: float = 5.0) -> Finger:
    """Put a finger down at window (x, y), move it by a pixel as a real fingertip does, and lift it;
    return when the Window has handled all three (a ScrollView under the finger hands the tap to its
    content a little later: wait for that too)."""
    provider = _finger_provider()
    finger = Finger(x, y)
    for kind, position in (("begin", None), ("update", (x + 1, y)), ("end", None)):
        if position is not None:
            finger.move(finger._normalise(*position))
        provider.queue.append((kind, finger))
        await until(lambda: not provider.queue, timeout, f"the window to take the touch {kind} at ({x:.0f},{y:.0f})")
    await until(lambda: not finger.grab_list, timeout, "the widgets that took the touch to let it go")
    return finger


def find_button(root: Widget, text: str) -> Widget:
    """The visible, enabled button showing `text` (exactly one must match)."""
    from kivy.uix.behaviors import ButtonBehavior

    found = [b for b in walk(root) if isinstance(b, ButtonBehavior) and getattr(b, "text", None) == text
             and visible(b) and not b.disabled]
    if len(found) != 1:
        raise AssertionError(f"expected one button {text!r}, found {len(found)}")
    return found[0]


class TapMissed(AssertionError):
    """A tap at a button's own position did not reach it (something else took the touch)."""


async def tap(widget: Widget) -> None:
    """Tap the middle of `widget` through the Window; fail if the widget did not get the release."""
    released: list[object] = []

    def on_release(*args: object) -> None:
        released.append(args)

    has_release = "on_release" in widget.events() if hasattr(widget, "events") else False
    if has_release:
        widget.fbind("on_release", on_release)
    x, y = window_centre(widget)
    try:
        await tap_at(x, y)
    finally:
        if has_release:
            widget.funbind("on_release", on_release)
    if has_release and not released:
        over = [f"{type(w).__name__} {getattr(w, 'text', '')!r}" for w in covering(widget)]
        raise TapMissed(f"a tap at ({x:.0f},{y:.0f}) on {type(widget).__name__} {getattr(widget, 'text', '')!r} "
                        f"did not reach it" + (f"; on top of it: {', '.join(over)}" if over else ""))


async def press(root: Widget, text: str) -> None:
    """Tap the visible, enabled button showing `text` with a finger, at its own position."""
    await tap(find_button(root, text))


# --- what would take a touch before a widget ------------------------------------------------------

def _path(widget: Widget) -> list[Widget]:
    """The widget's ancestors from the window's root widget down to it."""
    from kivy.core.window import WindowBase

    chain = [widget]
    while (parent := chain[-1].parent) is not None and parent is not chain[-1] and not isinstance(parent, WindowBase):
        chain.append(parent)
    return chain[::-1]


def offered_first(a: Widget, b: Widget) -> bool:
    """Does a touch where both are reach `a` before `b`? Kivy offers a touch to a parent's children
    from the last added (drawn on top) to the first; neither may contain the other."""
    pa, pb = _path(a), _path(b)
    i = 0
    while i < min(len(pa), len(pb)) and pa[i] is pb[i]:
        i += 1
    if i == 0 or i == len(pa) or i == len(pb):
        return False  # different trees, or one contains the other
    siblings = pa[i - 1].children
    return siblings.index(pa[i]) < siblings.index(pb[i])


def window_rect(widget: Widget) -> tuple[float, float, float, float]:
    x0, y0 = widget.to_window(widget.x, widget.y)
    x1, y1 = widget.to_window(widget.right, widget.top)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _takes_touches(widget: Widget) -> bool:
    from kivy.uix.behaviors import ButtonBehavior, FocusBehavior

    return isinstance(widget, (ButtonBehavior, FocusBehavior, ScrollView))


def covering(target: Widget) -> list[Widget]:
    """Widgets that would be offered a touch on `target` before it and would swallow it unseen: a
    disabled widget (Kivy's Widget takes every touch that lands on a disabled widget), or an
    invisible one that takes touches. Only the outermost of a disabled group is named."""
    rect = window_rect(target)
    root = _path(target)[0]
    found = []
    for w in walk(root):
        if w is target or _overlap(window_rect(w), rect) < 1.0 or not offered_first(w, target):
            continue
        parent_disabled = w.parent is not None and w.parent is not w and getattr(w.parent, "disabled", False)
        if (w.disabled and not parent_disabled) or (not w.disabled and not visible(w) and _takes_touches(w)):
            found.append(w)
    return found


def tappable(root: Widget) -> list[Widget]:
    """Every visible, enabled button under `root`, in walk order."""
    from kivy.uix.behaviors import ButtonBehavior

    return [w for w in walk(root) if isinstance(w, ButtonBehavior) and visible(w) and not w.disabled]
