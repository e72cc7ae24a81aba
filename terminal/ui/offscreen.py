"""Driving the app without a person: grab frames, find widgets, type like a scanner, and check the
layout (taps: terminal/ui/finger.py). Used by the UI tests, the benchmark and the screenshot run (docs/screenshots/).

Everything here runs on the Kivy main thread inside the app's event loop (`App.async_run`), so
waits are `await until(...)` over real frames, never fixed sleeps.

"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

from kivy.core.window import Window
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget
from PIL import Image

from terminal.ui.app import ENTER_KEYS


class Timeout(AssertionError):
    pass


class AppDied(AssertionError):
    pass


_app_task: "asyncio.Future[object] | None" = None


def _check_app() -> None:
    if _app_task is not None and _app_task.done():
        exc = _app_task.exception()
        raise AppDied(f"the app's loop ended: {type(exc).__name__}: {exc}" if exc else "the app's loop ended")


async def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        _check_app()
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def run_app(app: Any, scenario: Callable[[Any], Awaitable[None]]) -> str | None:
    """Run the app's event loop and `scenario(app)` beside it; stop the app when the scenario ends.
    Returns None, or the first error (the app's own, when its loop died first)."""
    global _app_task
    error: str | None = None

    async def main() -> None:
        global _app_task
        nonlocal error
        task = asyncio.ensure_future(app.async_run(async_lib="asyncio"))
        _app_task = task
        try:
            await scenario(app)
        except BaseException as exc:  # reported to the caller, who fails the test with it
            import traceback

            traceback.print_exc()  # into the child's log, for whoever reads it
            error = f"{type(exc).__name__}: {exc}"
            if task.done() and task.exception() is not None:
                error += f"; the app's loop: {type(task.exception()).__name__}: {task.exception()}"
        finally:
            app.stop()
        try:
            await task
        except BaseException as exc:
            import traceback

            traceback.print_exc()
            error = error or f"{type(exc).__name__}: {exc}"

    asyncio.run(main())
    _app_task = None
    return error


async def frames(n: int = 2) -> None:
    """Let Kivy run its clock and draw `n` frames (layouts settle over a frame or two)."""
    for _ in range(n):
        _check_app()
        await asyncio.sleep(1 / 60)


def grab(path: Path | None = None) -> Image.Image:
    """Draw the window now and read its pixels back (what the cashier sees)."""
    from kivy.graphics.opengl import GL_RGB, GL_UNSIGNED_BYTE, glReadPixels

    Window.dispatch("on_draw")
    width, height = Window.size
    data = glReadPixels(0, 0, width, height, GL_RGB, GL_UNSIGNED_BYTE)
    image = Image.frombytes("RGB", (width, height), data).transpose(Image.FLIP_TOP_BOTTOM)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG", optimize=True)
    return image


def walk(widget: Widget) -> Iterator[Widget]:
    yield widget
    for child in widget.children:
        yield from walk(child)


def visible(widget: Widget) -> bool:
    from kivy.core.window import WindowBase

    node: Widget | None = widget
    while node is not None and node is not node.parent and not isinstance(node, WindowBase):
        if node.opacity == 0 or node.width <= 0 or node.height <= 0:
            return False
        node = node.parent
    return True


def labels(root: Widget) -> list[Label]:
    return [w for w in walk(root) if isinstance(w, Label) and w.text and visible(w)]


def find_text(root: Widget, needle: str) -> list[Label]:
    return [w for w in labels(root) if needle in w.text]


def _inside_scroll(widget: Widget) -> bool:
    node = widget.parent
    while node is not None and node is not node.parent:
        if isinstance(node, ScrollView):
            return True
        node = node.parent
    return False


def _laid_out(label: Label) -> object:
    """The label's text laid out again in its width (Kivy reports a texture of exactly text_size when
    both are set, hiding clipped lines, so measure again)."""
    from kivy.core.text import Label as CoreLabel

    options = dict(label._label.options)
    options["text_size"] = (label.text_size[0], None)
    core = CoreLabel(**options)
    core.text = label.text
    core.refresh()
    return core


def _needed_size(label: Label) -> tuple[float, float]:
    """How big the label's text really is when laid out in its width."""
    core = _laid_out(label)
    text_width = label.text_size[0]
    return core.content_width if text_width is None else min(core.content_width, text_width), core.content_height


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def wrap_problems(label: Label) -> list[str]:
    """Lines that read badly: a line holding one character of a longer paragraph (a lone "1" or
    "消"), and a number or word cut in two by a wrap (a transaction number must stay whole)."""
    if label.text_size[0] is None:
        return []
    lines = [("".join(w.text for w in line.words), bool(line.line_wrap)) for line in _laid_out(label)._cached_lines]
    problems = []
    source, position = label.text, 0
    for i, (text, wrapped) in enumerate(lines):
        if len(text.strip()) == 1 and len(lines) > 1 and (wrapped or (i + 1 < len(lines) and lines[i + 1][1])):
            problems.append(f"{type(label).__name__} {label.text!r}: {text.strip()!r} alone on a line")
        found = source.find(text.strip(), position) if text.strip() else -1
        if found < 0:
            continue
        start, position = found, found + len(text.strip())
        cut_here = i > 0 and wrapped and start > 0 and not source[start - 1].isspace()
        if cut_here and _is_ascii_alnum(source[start - 1]) and _is_ascii_alnum(source[start]):
            problems.append(f"{type(label).__name__} {label.text!r}: a word cut by the wrap "
                            f"({source[max(0, start - 6):start]!r} | {source[start:start + 6]!r})")
    return problems


def layout_problems(root: Widget, tolerance: float = 1.0) -> list[str]:
    """Widgets drawn outside the window, labels whose text does not fit their box, and wraps that
    leave a character alone on a line or cut a number in two."""
    width, height = Window.size
    problems = []
    for w in walk(root):
        if not visible(w) or _inside_scroll(w):
            continue  # a scroll view clips its content on purpose; the scroll view itself is checked
        x0, y0 = w.to_window(w.x, w.y)
        x1, y1 = w.to_window(w.right, w.top)
        if x0 < -tolerance or y0 < -tolerance or x1 > width + tolerance or y1 > height + tolerance:
            problems.append(f"{type(w).__name__} {getattr(w, 'text', '')!r} at ({x0:.0f},{y0:.0f})-({x1:.0f},{y1:.0f}) "
                            f"outside the {width}x{height} window")
    from kivy.uix.boxlayout import BoxLayout

    for row in walk(root):  # a widget "hidden" at zero width still gets its spacing: the row ends short
        if isinstance(row, BoxLayout) and row.orientation == "horizontal" and row.spacing and visible(row):
            for child in row.children:
                if child.width <= 0 and len(row.children) > 1:
                    problems.append(f"{type(child).__name__} {getattr(child, 'text', '')!r} has no width in a row "
                                    f"of {type(row).__name__}: its spacing leaves a gap")
    for label in labels(root):
        need_w, need_h = _needed_size(label)
        if need_w > label.width + tolerance or need_h > label.height + tolerance:
            problems.append(f"{type(label).__name__} {label.text!r} needs {need_w:.0f}x{need_h:.0f} "
                            f"but has {label.width:.0f}x{label.height:.0f} (clipped)")
        problems += wrap_problems(label)
    return problems


def small_targets(root: Widget, min_px: float) -> list[str]:
    from kivy.uix.button import Button

    return [f"{b.text!r} is {b.width:.0f}x{b.height:.0f}" for b in walk(root)
            if isinstance(b, Button) and visible(b) and not b.disabled and min(b.width, b.height) < min_px - 0.5]


def type_wedge(code: str, *, gap_s: float = 0.0) -> None:
    """Keystrokes as a keyboard-wedge scanner sends them, ending with Enter, at the window."""
    for ch in code:
        Window.dispatch("on_key_down", ord(ch), 0, ch, [])
        Window.dispatch("on_key_up", ord(ch), 0)
        if gap_s:
            time.sleep(gap_s)
    Window.dispatch("on_key_down", ENTER_KEYS[0], 40, None, [])
    Window.dispatch("on_key_up", ENTER_KEYS[0], 40)

