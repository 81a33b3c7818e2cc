"""SVG building blocks for the report's figures: elements, scales, round ticks, axes, series, legends.

Plain string building, no dependency. Every attribute value and every text is escaped, so a label
that comes from data (a rule name, an issue category) is shown as text and never becomes markup.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import NamedTuple

FONT_SIZE = 12
AXIS_COLOR = "#555555"
GRID_COLOR = "#e4e4e4"
_GLYPH_WIDTH = 0.62  # a generous average glyph width, as a share of the font size
_TICK = 4  # length of a tick mark, pixels


def short_number(value: float, places: int = 2) -> str:
    """``value`` with at most ``places`` decimals and no trailing zeros (``0.5``, ``12``)."""
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def tick_label(value: float) -> str:
    """A tick value as text, without the noise of float arithmetic (``0.30000000000000004`` is ``0.3``)."""
    return f"{value:.10g}"


def element(tag: str, *children: str, **attributes: object) -> str:
    """An SVG element around already built ``children``.

    Attribute names are written with ``-`` for ``_`` and without a trailing ``_`` (``text_anchor=``
    gives ``text-anchor``, ``class_=`` gives ``class``); attributes whose value is ``None`` are left out.
    """
    written = "".join(_attribute(name, value) for name, value in attributes.items() if value is not None)
    body = "".join(children)
    return f"<{tag}{written}>{body}</{tag}>" if body else f"<{tag}{written}/>"


def _attribute(name: str, value: object) -> str:
    shown = short_number(value) if isinstance(value, float) else str(value)
    return f' {name.rstrip("_").replace("_", "-")}="{escape(shown)}"'


def text(x: float, y: float, content: str, **attributes: object) -> str:
    """A ``<text>`` element showing ``content``, escaped."""
    return element("text", escape(content), x=x, y=y, **attributes)


def tooltip(content: str) -> str:
    """A ``<title>`` child: its parent's accessible name, shown by browsers when the pointer rests on it."""
    return element("title", escape(content))


def line(x1: float, y1: float, x2: float, y2: float, color: str = AXIS_COLOR, **attributes: object) -> str:
    """A straight line."""
    return element("line", x1=x1, y1=y1, x2=x2, y2=y2, stroke=color, **attributes)


def rect(x: float, y: float, width: float, height: float, color: str, note: str) -> str:
    """A filled rectangle (a bar) whose tooltip is ``note``."""
    return element("rect", tooltip(note), x=x, y=y, width=width, height=height, fill=color)


def text_width(content: str, size: float = FONT_SIZE) -> float:
    """The estimated width of ``content`` in pixels: room enough for it, not an exact measure."""
    return len(content) * size * _GLYPH_WIDTH


def shorten(content: str, limit: int) -> str:
    """``content`` cut to ``limit`` characters, ending with an ellipsis when something was cut."""
    return content if len(content) <= limit else content[: limit - 1] + "\u2026"


def round_ticks(low: float, high: float, *, count: int = 5, whole: bool = False) -> list[float]:
    """About ``count`` round values, 1, 2 or 5 times a power of ten apart, from ``low`` or below to ``high`` or above.

    ``whole`` keeps them whole numbers (for counts). An empty range is widened to one unit.
    """
    if high <= low:
        high = low + 1
    wanted = (high - low) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(wanted))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= wanted * (1 - 1e-9))
    if whole:
        step = max(1.0, float(round(step)))
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


@dataclass(frozen=True)
class Scale:
    """A linear map from data values between ``low`` and ``high`` to pixels between ``start`` and ``end``."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)

    @classmethod
    def over(cls, ticks: Sequence[float], start: float, end: float) -> Scale:
        """The scale whose data range runs from the first tick to the last."""
        return cls(ticks[0], ticks[-1], start, end)


@dataclass(frozen=True)
class Box:
    """A rectangle in pixels: where a plot draws its data."""

    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height


def slots(count: int, start: float, end: float, *, padding: float = 0.25) -> list[tuple[float, float]]:
    """``count`` equal slots from ``start`` to ``end`` for categories: each slot's bar as (first pixel, size).

    ``padding`` is the share of each slot left empty, half on either side of its bar.
    """
    size = (end - start) / count
    return [(start + (index + padding / 2) * size, size * (1 - padding)) for index in range(count)]


Tick = tuple[float, str]
"""A tick: its position in pixels along the axis, and its label."""


def left_axis(box: Box, ticks: Sequence[Tick], label: str | None = None, *, grid: bool = True) -> str:
    """The y axis at the left of ``box``: tick marks and labels, horizontal grid lines, a vertical axis label."""
    parts = []
    for y, name in ticks:
        if grid:
            parts.append(line(box.left, y, box.right, y, GRID_COLOR))
        parts.append(line(box.left - _TICK, y, box.left, y))
        parts.append(text(box.left - _TICK - 3, y, name, text_anchor="end", dy="0.35em"))
    parts.append(line(box.left, box.top, box.left, box.bottom))
    if label:
        x = box.left - _TICK - 10 - max((text_width(name) for _, name in ticks), default=0)
        y = box.top + box.height / 2
        turn = f"rotate(-90 {short_number(x)} {short_number(y)})"
        parts.append(text(x, y, label, text_anchor="middle", transform=turn))
    return element("g", *parts, class_="axis")


def bottom_axis(box: Box, ticks: Sequence[Tick], label: str | None = None, *, grid: bool = False) -> str:
    """The x axis under ``box``: tick marks and labels, optional vertical grid lines, an axis label."""
    parts = []
    for x, name in ticks:
        if grid:
            parts.append(line(x, box.top, x, box.bottom, GRID_COLOR))
        parts.append(line(x, box.bottom, x, box.bottom + _TICK))
        parts.append(text(x, box.bottom + _TICK + FONT_SIZE, name, text_anchor="middle"))
    parts.append(line(box.left, box.bottom, box.right, box.bottom))
    if label:
        parts.append(text(box.left + box.width / 2, box.bottom + _TICK + 2.4 * FONT_SIZE, label, text_anchor="middle"))
    return element("g", *parts, class_="axis")


@dataclass(frozen=True)
class Series:
    """How one series of data is drawn, and its name in the legend.

    A series without ``marker`` and ``line`` is drawn as bars.
    """

    name: str
    color: str
    marker: str | None = None  # "circle" or "square"
    line: str | None = None  # "solid" or "dashed"
    opacity: float = 1.0


class Point(NamedTuple):
    """A data point in pixels, with its tooltip."""

    x: float
    y: float
    note: str


def _dashes(series: Series) -> str | None:
    return "6 4" if series.line == "dashed" else None


def marker(series: Series, x: float, y: float, note: str | None = None) -> str:
    """The series' marker centred on (x, y), with ``note`` as its tooltip."""
    children = [tooltip(note)] if note else []
    style = {"fill": series.color, "fill_opacity": series.opacity if series.opacity < 1 else None}
    if series.marker == "square":
        return element("rect", *children, x=x - 4, y=y - 4, width=8, height=8, **style)
    return element("circle", *children, cx=x, cy=y, r=4, **style)


def plot_series(series: Series, points: Sequence[Point | None]) -> str:
    """``series`` through ``points``: its line (broken where a point is missing), then a marker per point."""
    parts = []
    if series.line:
        for run in _runs(points):
            if len(run) > 1:
                path = " ".join(f"{short_number(p.x)},{short_number(p.y)}" for p in run)
                parts.append(element("polyline", points=path, fill="none", stroke=series.color, stroke_width=2,
                                     stroke_dasharray=_dashes(series)))
    parts += [marker(series, p.x, p.y, p.note) for p in points if p is not None]
    return element("g", *parts, class_="series")


def _runs(points: Sequence[Point | None]) -> Iterator[list[Point]]:
    """The stretches of consecutive points that are present."""
    run: list[Point] = []
    for point in points:
        if point is None:
            if run:
                yield run
            run = []
        else:
            run.append(point)
    if run:
        yield run


def _swatch(series: Series, x: float, y: float) -> str:
    """A 20-pixel sample of how ``series`` is drawn, its middle-left at (x, y)."""
    if series.line:
        stroke = line(x, y, x + 20, y, series.color, stroke_width=2, stroke_dasharray=_dashes(series))
        return stroke + marker(series, x + 10, y)
    if series.marker:
        return marker(series, x + 10, y)
    return element("rect", x=x + 4, y=y - 6, width=12, height=12, fill=series.color)


def legend(entries: Sequence[Series], x: float, y: float) -> str:
    """The entries' swatches and names in one row, starting at (x, y) (the row's vertical middle)."""
    parts = []
    for series in entries:
        parts += [_swatch(series, x, y), text(x + 26, y, series.name, dy="0.35em")]
        x += 26 + text_width(series.name) + 18
    return element("g", *parts, class_="legend")


@dataclass
class Figure:
    """An SVG figure being drawn: its size in pixels and its parts, in drawing order."""

    width: float
    height: float
    parts: list[str] = field(default_factory=list)

    def add(self, *parts: str) -> None:
        """Draw ``parts`` on top of what is already there."""
        self.parts.extend(parts)

    def to_svg(self, label: str) -> str:
        """The ``<svg>`` element, an image named ``label`` for screen readers (and as its tooltip)."""
        return element("svg", tooltip(label), *self.parts, xmlns="http://www.w3.org/2000/svg", class_="figure",
                       role="img", aria_label=label, width=self.width, height=self.height,
                       viewBox=f"0 0 {short_number(self.width)} {short_number(self.height)}", font_size=FONT_SIZE)
