"""The report's figures, drawn as inline SVG (see :mod:`autoevol.report.svg`).

Every function returns a :class:`~autoevol.report.svg.Figure`, or ``None`` when it has nothing to
draw, so the HTML skips that section. Every bar and point carries its value as a tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from autoevol.report.collect import RoundSummary, StepPoint
from autoevol.report.svg import (
    Box,
    Figure,
    Point,
    Scale,
    Series,
    bottom_axis,
    left_axis,
    legend,
    plot_series,
    rect,
    round_ticks,
    short_number,
    shorten,
    slots,
    text,
    text_width,
    tick_label,
)

WIDTH = 680
WIDE = 760  # figures made of several panels
_LABEL_LIMIT = 40  # characters of a category label shown at the left of a bar; its tooltip has all of it

INCUMBENT = Series("incumbent (start of step)", "#555555", marker="circle", line="solid")
SELECTED = Series("selected (end of step)", "#1f77b4", marker="square", line="dashed")
CANDIDATES = Series("candidates", "#ff7f0e", marker="circle", opacity=0.7)
EVOLVED_ROWS = Series("evolved", "#2ca02c")
FAILED_ROWS = Series("failed", "#d62728")
INPUTS = Series("input", "#7f7f7f")
EVOLUTIONS = Series("evolved", "#1f77b4")
BEFORE = Series("before (inputs)", "#7f7f7f")
AFTER = Series("after (evolved)", "#1f77b4")


def _ticks(values: Sequence[float], scale: Scale) -> list[tuple[float, str]]:
    """Axis ticks at ``values``, placed by ``scale``."""
    return [(scale(value), tick_label(value)) for value in values]


def _title(x: float, y: float, content: str) -> str:
    """A figure or panel title, centred on ``x``."""
    return text(x, y, content, text_anchor="middle", font_weight="bold")


def step_plot(steps: Sequence[StepPoint]) -> Figure | None:
    """Dev failure rate per compile step: the incumbent (line), every candidate (dots), the selection."""
    if not steps:
        return None
    figure = Figure(WIDTH, 300)
    box = Box(70, 40, WIDTH - 90, 205)
    numbers = [s.step for s in steps]
    x = Scale(min(numbers) - 0.5, max(numbers) + 0.5, box.left, box.right)
    rates = [rate for s in steps for rate in (s.incumbent, s.selected, *s.candidates) if rate is not None]
    levels = round_ticks(0, max(rates, default=0))
    y = Scale.over(levels, box.bottom, box.top)
    labelled = round_ticks(min(numbers), max(numbers), count=min(len(numbers), 10), whole=True)
    figure.add(left_axis(box, _ticks(levels, y), "dev failure rate"),
               bottom_axis(box, _ticks([n for n in labelled if x.low < n < x.high], x), "compile step", grid=True))

    def point(step: int, rate: float | None, what: str) -> Point | None:
        return None if rate is None else Point(x(step), y(rate), f"step {step}, {what}: {short_number(rate, 3)}")

    candidates = [point(s.step, rate, what) for s in steps for rate, what in _candidate_names(s)]
    figure.add(plot_series(INCUMBENT, [point(s.step, s.incumbent, "incumbent") for s in steps]),
               plot_series(SELECTED, [point(s.step, s.selected, "selected") for s in steps]),
               plot_series(CANDIDATES, candidates),
               legend([INCUMBENT, SELECTED] + ([CANDIDATES] if any(p is not None for p in candidates) else []),
                      box.left, 16))
    return figure


def _candidate_names(step: StepPoint) -> list[tuple[float | None, str]]:
    """Each candidate's rate and name: its number, and whether it is a new demonstration set."""
    kinds = step.kinds or ["method"] * len(step.candidates)
    return [(rate, f"candidate {number}" + (" (new demonstrations)" if kind == "demos" else ""))
            for number, (rate, kind) in enumerate(zip(step.candidates, kinds), start=1)]


def bar_chart(counts: Mapping[str, int], *, title: str, xlabel: str = "count", color: str = "#1f77b4") -> Figure | None:
    """A horizontal bar chart of the non-zero counts, largest on top, each bar labelled with its count."""
    items = sorted(((name, count) for name, count in counts.items() if count), key=lambda item: -item[1])
    if not items:
        return None
    labels = [shorten(name, _LABEL_LIMIT) for name, _ in items]
    largest = max(count for _, count in items)
    left = 16 + max(text_width(label) for label in labels)
    box = Box(left, 30, WIDTH - left - 20 - text_width(str(largest)), 26 * len(items))
    figure = Figure(WIDTH, box.bottom + 46)
    levels = round_ticks(0, largest, whole=True)
    x = Scale.over(levels, box.left, box.right)
    rows = slots(len(items), box.top, box.bottom)
    figure.add(_title(WIDTH / 2, 16, title),
               bottom_axis(box, _ticks(levels, x), xlabel, grid=True),
               left_axis(box, [(top + size / 2, label) for (top, size), label in zip(rows, labels)], grid=False))
    for (name, count), (top, size) in zip(items, rows):
        figure.add(rect(box.left, top, x(count) - box.left, size, color, f"{name}: {count}"),
                   text(x(count) + 4, top + size / 2, str(count), dy="0.35em"))
    return figure


def round_counts_plot(rounds: Sequence[RoundSummary]) -> Figure | None:
    """Rows per round: the successful evolutions with the failed rows stacked on top."""
    if not rounds:
        return None
    figure = Figure(WIDTH, 290)
    box = Box(60, 40, WIDTH - 80, 200)
    levels = round_ticks(0, max(r.rows for r in rounds), whole=True)
    y = Scale.over(levels, box.bottom, box.top)
    places = slots(len(rounds), box.left, box.right, padding=0.3)
    figure.add(left_axis(box, _ticks(levels, y), "rows"),
               bottom_axis(box, [(left + size / 2, str(r.round)) for r, (left, size) in zip(rounds, places)], "round"),
               legend([EVOLVED_ROWS, FAILED_ROWS], box.left, 16))
    for r, (left, size) in zip(rounds, places):
        evolved = r.rows - r.failed
        for series, low, high in ((EVOLVED_ROWS, 0, evolved), (FAILED_ROWS, evolved, r.rows)):
            if high > low:
                figure.add(rect(left, y(high), size, y(low) - y(high), series.color,
                                f"round {r.round}: {high - low} {series.name}"))
    return figure


def length_plot(rounds: Sequence[RoundSummary]) -> Figure | None:
    """Word-count histograms per round: the inputs against their successful evolutions, one panel per round."""
    drawn = [r for r in rounds if r.original_words or r.evolved_words]
    if not drawn:
        return None
    columns = min(3, len(drawn))
    panel_width, panel_height, top = min(WIDE / columns, 340), 230, 30
    figure = Figure(panel_width * columns, top + panel_height * math.ceil(len(drawn) / columns))
    present = [series for series, any_words in ((INPUTS, any(r.original_words for r in drawn)),
                                                (EVOLUTIONS, any(r.evolved_words for r in drawn))) if any_words]
    figure.add(legend(present, 60, 14))
    for index, r in enumerate(drawn):
        left, offset = (index % columns) * panel_width, top + (index // columns) * panel_height
        box = Box(left + 58, offset + 26, panel_width - 72, panel_height - 76)
        figure.add(_title(box.left + box.width / 2, offset + 14, f"round {r.round}"),
                   _histogram(box, r, y_label=index % columns == 0))
    return figure


def _histogram(box: Box, r: RoundSummary, *, y_label: bool) -> str:
    """One round's panel: per range of word counts, a bar for its inputs beside a bar for its evolutions."""
    samples = [(series, words) for series, words in ((INPUTS, r.original_words), (EVOLUTIONS, r.evolved_words))
               if words]
    low = min(min(words) for _, words in samples)
    span = max(max(words) for _, words in samples) - low + 1
    width = math.ceil(span / 15)  # whole words per bar, so that there are 15 bars at most
    bins = math.ceil(span / width)
    tallies = [(series, _tally(words, low, width, bins)) for series, words in samples]
    marks = round_ticks(low, low + bins * width, count=4, whole=True)
    x = Scale.over(marks, box.left, box.right)
    levels = round_ticks(0, max(max(counts) for _, counts in tallies), count=4, whole=True)
    y = Scale.over(levels, box.bottom, box.top)
    parts = [left_axis(box, _ticks(levels, y), "instructions" if y_label else None),
             bottom_axis(box, _ticks(marks, x), "words")]
    bar = (x(low + width) - x(low)) * 0.9 / len(tallies)
    for place, (series, counts) in enumerate(tallies):
        for k, count in enumerate(counts):
            first, last = low + k * width, low + (k + 1) * width - 1
            words = str(first) if first == last else f"{first}\u2013{last}"
            if count:
                parts.append(rect(x(first) + place * bar, y(count), bar, y(0) - y(count), series.color,
                                  f"round {r.round}, {series.name}: {count} instructions of {words} words"))
    return "".join(parts)


def _tally(values: Sequence[int], low: int, width: int, bins: int) -> list[int]:
    """How many ``values`` fall in each of ``bins`` ranges of ``width`` whole numbers from ``low``."""
    counts = [0] * bins
    for value in values:
        counts[(value - low) // width] += 1
    return counts


#: Quality figures shown per round (name in QualityReport.figures(), panel title).
QUALITY_PANELS: tuple[tuple[str, str], ...] = (
    ("words (mean)", "words per instruction (mean)"),
    ("embedding diversity", "embedding diversity"),
    ("distinct-2", "distinct-2"),
    ("duplicate rate", "duplicate rate"),
    ("tag complexity", "InsTag complexity (tags/item)"),
    ("tag diversity", "InsTag diversity (unique tags/item)"),
)


def quality_plot(rounds: Sequence[RoundSummary]) -> Figure | None:
    """Complexity and diversity before (the round's inputs) and after (its evolutions) per round, a panel per figure."""
    measured = [(r.round, r.before.figures(), r.after.figures() if r.after else {}) for r in rounds
                if r.before is not None]
    panels = [(title, [(number, before.get(key), after.get(key)) for number, before, after in measured])
              for key, title in QUALITY_PANELS if any(before.get(key) is not None for _, before, _ in measured)]
    if not panels:
        return None
    columns, panel_height, top = 2, 200, 30
    panel_width = WIDE / columns
    figure = Figure(WIDE, top + panel_height * math.ceil(len(panels) / columns))
    figure.add(legend([BEFORE, AFTER], 60, 14))
    for index, (title, values) in enumerate(panels):
        left, offset = (index % columns) * panel_width, top + (index // columns) * panel_height
        box = Box(left + 58, offset + 26, panel_width - 78, panel_height - 70)
        figure.add(_title(box.left + box.width / 2, offset + 14, title), _grouped_bars(box, title, values))
    return figure


def _grouped_bars(box: Box, title: str, values: Sequence[tuple[int, float | None, float | None]]) -> str:
    """One figure's panel: per round, its value before beside its value after (a missing value has no bar)."""
    known = [value for _, before, after in values for value in (before, after) if value is not None]
    levels = round_ticks(min(0.0, *known), max(0.0, *known), count=4)
    y = Scale.over(levels, box.bottom, box.top)
    places = slots(len(values), box.left, box.right)
    parts = [left_axis(box, _ticks(levels, y)),
             bottom_axis(box, [(left + size / 2, str(number)) for (number, _, _), (left, size) in zip(values, places)],
                         "round")]
    for (number, *pair), (left, size) in zip(values, places):
        for place, (series, value) in enumerate(zip((BEFORE, AFTER), pair)):
            if value is None:
                continue
            top, bottom = sorted((y(value), y(0)))
            top = min(top, bottom - 1)  # a zero is a hairline: measured, unlike a missing value
            parts.append(rect(left + place * size / 2, top, size / 2, bottom - top, series.color,
                              f"{title}, round {number}, {series.name}: {short_number(value, 3)}"))
    return "".join(parts)

