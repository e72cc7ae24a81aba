"""The few widgets that need Python: drawn markers (no font glyph can go missing), PIN dots, the
countdown bar, and a label that shrinks its font until the text fits (a 9-digit amount on an 800x480
screen).

Their look and the shared styles (PosLabel, PosButton, TopBar, PinPad...) are in widgets.kv.
"""

from __future__ import annotations

from typing import Any

from kivy.core.text import Label as CoreLabel
from kivy.graphics import (BindTexture, Color, Line, Rectangle, SmoothEllipse, SmoothRoundedRectangle, StencilPop, StencilPush,
                           StencilUnUse, StencilUse)
from kivy.properties import BooleanProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from terminal.ui import theme


class FitLabel(Label):
    """One line of text at `max_font_size`, or smaller when it would not fit the width.

    The natural width is measured with the font's extents (no texture is made for the measure),
    so the widget itself can keep a text_size (for left alignment) without wrapping. Text width
    scales with the font size, so one measure gives the size that fits."""

    max_font_size = NumericProperty(40)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.bind(max_font_size=self._fit, width=self._fit, text=self._fit, font_name=self._fit, bold=self._fit)
        self._fit()

    def _fit(self, *args: object) -> None:
        size = self.max_font_size
        if self.width > 0 and self.text:
            natural = _measure(self.text, size, self.font_name, self.bold)
            if natural > self.width:
                size = max(6, int(size * self.width / natural * 0.97))
        self.font_size = size


_measurer: CoreLabel | None = None


def _measure(text: str, font_size: float, font_name: str, bold: bool) -> int:
    """The width of one line of `text` in pixels."""
    global _measurer
    if _measurer is None:
        _measurer = CoreLabel()
    options = _measurer.options
    options["font_size"], options["font_name"], options["bold"] = font_size, font_name, bold
    _measurer.resolve_font_name()
    return max(_measurer.get_extents(line)[0] for line in text.split("\n"))


class FitScroll(ScrollView):
    """A ScrollView that clips only when its content is taller than itself.

    Clipping is a stencil: two extra passes over the view's area plus a stencil test on every
    pixel inside, a third of a frame's rasterising on a software renderer. A bill of three items
    fits, so the instruction screen usually draws without it. Content that fits cannot be dragged
    (always_overscroll False), so nothing is ever drawn outside the view unclipped."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("always_overscroll", False)
        self._clip_before: list[object] = []
        self._clip_after: list[object] = []
        self._clipping = True
        super().__init__(**kwargs)

    def on_kv_post(self, base_widget: object) -> None:
        # the StencilView rule's instructions, now that the rules have built the canvas:
        # Push, mask, Use (canvas.before) and UnUse, mask, Pop (canvas.after)
        self._clip_before = _stencil_run(self.canvas.before, StencilPush, StencilUse)
        self._clip_after = _stencil_run(self.canvas.after, StencilUnUse, StencilPop)
        self.bind(viewport_size=self._update_clip, size=self._update_clip)
        self._update_clip()

    def _update_clip(self, *args: object) -> None:
        need = self.viewport_size[1] > self.height + 0.5 or self.viewport_size[0] > self.width + 0.5
        if need == self._clipping or not self._clip_before or not self._clip_after:
            return
        self._clipping = need
        for canvas, run in ((self.canvas.before, self._clip_before), (self.canvas.after, self._clip_after)):
            if need:
                for instruction in reversed(run):  # each goes in front: the run ends up first, in order
                    canvas.insert(0, instruction)
            else:
                for instruction in run:
                    canvas.remove(instruction)


def _stencil_run(canvas: Any, first: type, last: type) -> list[object]:
    """The instructions from a leading `first` to the next `last`, inclusive (empty if absent). A
    textured shape's BindTexture is left out: Kivy adds and removes it with its shape."""
    children = list(canvas.children)
    if not children or not isinstance(children[0], first):
        return []
    ends = [i for i, c in enumerate(children) if isinstance(c, last)]
    return [c for c in children[:ends[0] + 1] if not isinstance(c, BindTexture)] if ends else []


def show_child(parent: Widget, child: Widget, shown: bool, position: int) -> None:
    """Put `child` into `parent` at layout position `position` (0 = first), or take it out. A widget
    that is not shown is not in the tree at all: hidden in place (opacity 0, disabled) it would still
    take the touches that land on it and leave its spacing in the row."""
    parent = getattr(parent, "__self__", parent)  # kv ids are weak proxies: compare the widgets themselves
    if shown and child.parent is None:
        position = max(0, min(position, len(parent.children)))
        parent.add_widget(child, index=len(parent.children) - position)  # Kivy lists children last first
    elif not shown and child.parent is parent:
        parent.remove_widget(child)


class _Drawn(Widget):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.bind(pos=self.redraw, size=self.redraw)
        self.redraw()

    def redraw(self, *args: object) -> None:
        raise NotImplementedError


class DirectionMarker(_Drawn):
    """Collection: a green disc with '+'. Refund: an orange rounded square with '−' and a back arrow."""

    direction = StringProperty("collect")

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.bind(direction=self.redraw)

    def redraw(self, *args: object) -> None:
        side = min(self.width, self.height)
        x, y = self.center_x - side / 2, self.center_y - side / 2
        stroke = max(2.0, side / 12)
        cx, cy, arm = self.center_x, self.center_y, side * 0.28
        self.canvas.clear()
        with self.canvas:
            Color(*theme.direction_colour(self.direction))
            if self.direction == "refund":
                SmoothRoundedRectangle(pos=(x, y), size=(side, side), radius=[side * 0.18])
                Color(1, 1, 1, 1)
                Line(points=[cx - arm, cy, cx + arm, cy], width=stroke, cap="round")
                # a curved arrow over the minus: "money goes back"
                Line(points=[cx + arm, cy + arm * 0.9, cx - arm * 0.6, cy + arm * 0.9], width=stroke * 0.6, cap="round")
                Line(points=[cx - arm * 0.25, cy + arm * 1.25, cx - arm * 0.6, cy + arm * 0.9,
                             cx - arm * 0.25, cy + arm * 0.55], width=stroke * 0.6, cap="round", joint="round")
            else:
                SmoothEllipse(pos=(x, y), size=(side, side))
                Color(1, 1, 1, 1)
                Line(points=[cx - arm, cy, cx + arm, cy], width=stroke, cap="round")
                Line(points=[cx, cy - arm, cx, cy + arm], width=stroke, cap="round")


class StatusMark(_Drawn):
    """A tick in a green disc, or a cross in a red one."""

    ok = BooleanProperty(True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.bind(ok=self.redraw)

    def redraw(self, *args: object) -> None:
        side = min(self.width, self.height)
        x, y = self.center_x - side / 2, self.center_y - side / 2
        cx, cy, r = self.center_x, self.center_y, side / 2
        stroke = max(2.0, side / 14)
        self.canvas.clear()
        with self.canvas:
            Color(*(theme.OK if self.ok else theme.FAIL))
            SmoothEllipse(pos=(x, y), size=(side, side))
            Color(1, 1, 1, 1)
            if self.ok:
                Line(points=[cx - r * 0.45, cy, cx - r * 0.1, cy - r * 0.35, cx + r * 0.5, cy + r * 0.35],
                     width=stroke, cap="round", joint="round")
            else:
                a = r * 0.4
                Line(points=[cx - a, cy - a, cx + a, cy + a], width=stroke, cap="round")
                Line(points=[cx - a, cy + a, cx + a, cy - a], width=stroke, cap="round")


class PinDots(_Drawn):
    """One filled dot per digit typed, in a row of evenly spaced dots, centred (never touching)."""

    digits = NumericProperty(0)
    dot = NumericProperty(16)  # diameter, px
    gap = NumericProperty(12)  # between dots, px

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.bind(digits=self.redraw, dot=self.redraw, gap=self.redraw)

    def redraw(self, *args: object) -> None:
        n = int(self.digits)
        pitch = self.dot + self.gap
        left = self.center_x - (n * pitch - self.gap) / 2
        self.canvas.clear()
        with self.canvas:
            Color(*theme.CARD)
            SmoothRoundedRectangle(pos=self.pos, size=self.size, radius=[min(self.height / 4, self.dot)])
            Color(*theme.INK)
            for i in range(n):
                SmoothEllipse(pos=(left + i * pitch, self.center_y - self.dot / 2), size=(self.dot, self.dot))


class CountdownBar(_Drawn):
    """How much of the patient's time is left: a rounded track with a fill that shrinks, in the
    countdown's colour (warning colour in the last seconds)."""

    value = NumericProperty(0)
    max = NumericProperty(1)
    colour = ObjectProperty(theme.PRIMARY)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.bind(value=self.redraw, max=self.redraw, colour=self.redraw)

    def redraw(self, *args: object) -> None:
        fraction = max(0.0, min(1.0, self.value / self.max)) if self.max else 0.0
        radius = [self.height / 2]
        self.canvas.clear()
        with self.canvas:
            Color(*theme.LINE)
            SmoothRoundedRectangle(pos=self.pos, size=self.size, radius=radius)
            if fraction > 0:
                Color(*self.colour)
                SmoothRoundedRectangle(pos=self.pos, size=(max(self.height, self.width * fraction), self.height), radius=radius)


class NoCameraMark(_Drawn):
    """A camera outline struck through."""

    def redraw(self, *args: object) -> None:
        side = min(self.width, self.height)
        cx, cy = self.center_x, self.center_y
        w, h = side * 0.8, side * 0.5
        stroke = max(1.5, side / 30)
        self.canvas.clear()
        with self.canvas:
            Color(*theme.MUTED)
            Line(rounded_rectangle=(cx - w / 2, cy - h / 2, w, h, side * 0.06), width=stroke)
            Line(circle=(cx, cy, h * 0.3), width=stroke)
            Rectangle(pos=(cx - w * 0.2, cy + h / 2), size=(w * 0.25, stroke * 3))
            Color(*theme.FAIL)
            Line(points=[cx - w * 0.55, cy - h * 0.8, cx + w * 0.55, cy + h * 0.8], width=stroke * 1.5, cap="round")
