"""The SVG building blocks and the figures' edge cases: round ticks, escaping, gaps, nothing to draw."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import autoevol
from autoevol.report import plots
from autoevol.report.collect import RoundSummary, StepPoint
from autoevol.report.svg import Figure, Point, Series, element, plot_series, round_ticks, shorten, text
from tests.report.test_report import NS, notes, texts


@pytest.mark.parametrize(("low", "high", "options", "ticks"), [
    (0, 0.55, {}, [0, 0.2, 0.4, 0.6]),
    (0, 6, {"whole": True}, [0, 2, 4, 6]),
    (0, 0.3, {"whole": True}, [0, 1]),
    (7, 16, {"count": 4, "whole": True}, [5, 10, 15, 20]),
    (0, 0, {}, [0, 0.2, 0.4, 0.6, 0.8, 1]),
    (-0.2, 0.3, {}, [-0.2, -0.1, 0, 0.1, 0.2, 0.3]),
])
def test_round_ticks_cover_the_range(low: float, high: float, options: dict, ticks: list[float]) -> None:
    assert round_ticks(low, high, **options) == pytest.approx(ticks)


def test_elements_escape_attributes_and_text() -> None:
    markup = element("g", text(1.0, 2.5, "<b>a & b</b>"), class_="x", data_note='say "hi"', fill_opacity=None)
    assert markup == ('<g class="x" data-note="say &quot;hi&quot;">'
                      '<text x="1" y="2.5">&lt;b&gt;a &amp; b&lt;/b&gt;</text></g>')
    assert ET.fromstring(markup).find("text").text == "<b>a & b</b>"
    label = Figure(100, 50).to_svg('rates <per> "step"')
    assert "<per>" not in label and ET.fromstring(label).get("aria-label") == 'rates <per> "step"'
    assert shorten("abcdef", 4) == "abc\u2026" and shorten("abc", 4) == "abc"


def test_a_missing_point_breaks_the_line() -> None:
    line = Series("s", "#000000", marker="circle", line="solid")
    points = [Point(0, 0, "a"), Point(1, 1, "b"), None, Point(3, 3, "c"), Point(4, 4, "d"), None, Point(6, 6, "e")]
    drawn = ET.fromstring(plot_series(line, points))
    assert [p.get("points") for p in drawn.iter("polyline")] == ["0,0 1,1", "3,3 4,4"]
    assert [c.find("title").text for c in drawn.iter("circle")] == ["a", "b", "c", "d", "e"]


def test_figures_with_nothing_to_draw_are_none() -> None:
    assert plots.step_plot([]) is None
    assert plots.bar_chart({"a": 0}, title="t") is None
    assert plots.round_counts_plot([]) is None
    assert plots.length_plot([RoundSummary(round=1, rows=2, failed=2)]) is None
    assert plots.quality_plot([RoundSummary(round=1, rows=2)]) is None


def test_steps_without_a_rate_and_a_long_label() -> None:
    steps = [StepPoint(step=1, incumbent=0.5, candidates=[None, 0.25], selected=0.25, kinds=["method", "demos"]),
             StepPoint(step=2, incumbent=None, candidates=[None], selected=None)]
    figure = ET.fromstring(plots.step_plot(steps).to_svg("steps"))
    assert sorted(notes(figure, "circle", "rect")) == ["step 1, candidate 2 (new demonstrations): 0.25",
                                                      "step 1, incumbent: 0.5", "step 1, selected: 0.25"]
    assert not list(figure.iter(f"{NS}polyline"))  # one point per series: no line to draw
    name = "x" * 60
    chart = ET.fromstring(plots.bar_chart({name: 3}, title="t").to_svg("bars"))
    assert notes(chart, "rect") == [f"{name}: 3"] and "x" * 39 + "\u2026" in texts(chart)


def imported(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_optional_study_plots_import_matplotlib() -> None:
    """matplotlib is not a dependency: the report draws its own SVG, only ``autoevol study plot`` needs it."""
    package = Path(autoevol.__file__).parent
    users = {path.relative_to(package).as_posix() for path in package.rglob("*.py") if "matplotlib" in imported(path)}
    assert users == {"optimizers/tuning/results.py"}
