"""Report figures drawn with matplotlib (Agg backend), returned as base64-encoded PNG.

Every function returns ``None`` when it has nothing to draw, so the HTML skips that section.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: figures are only ever rendered to PNG bytes

import matplotlib.pyplot as plt  # noqa: E402

from autoevol.report.collect import RoundSummary, StepPoint  # noqa: E402

_DPI = 96


def to_base64_png(figure: Any) -> str:
    """Render a figure to PNG, close it, and return the bytes as base64 text."""
    buffer = io.BytesIO()
    try:
        figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=_DPI)
    finally:
        plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def step_plot(steps: Sequence[StepPoint]) -> str | None:
    """Dev failure rate per compile step: the incumbent (line), every candidate (dots), the selection."""
    if not steps:
        return None
    figure, axis = plt.subplots(figsize=(7, 3.6))
    xs = [s.step for s in steps]
    axis.plot(xs, [s.incumbent for s in steps], "o-", color="#555555", label="incumbent (start of step)")
    axis.plot(xs, [s.selected for s in steps], "s--", color="#1f77b4", label="selected (end of step)")
    labelled = False
    for s in steps:
        rates = [r for r in s.candidates if r is not None]
        if rates:
            axis.scatter([s.step] * len(rates), rates, color="#ff7f0e", alpha=0.7, zorder=3,
                         label=None if labelled else "candidates")
            labelled = True
    axis.set_xlabel("compile step")
    axis.set_ylabel("dev failure rate")
    axis.set_xticks(xs)
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return to_base64_png(figure)


def bar_chart(counts: Mapping[str, int], *, title: str, xlabel: str = "count", color: str = "#1f77b4") -> str | None:
    """A horizontal bar chart of counts, largest on top."""
    items = sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: kv[1])
    if not items:
        return None
    figure, axis = plt.subplots(figsize=(7, 0.4 * len(items) + 1.2))
    axis.barh([k for k, _ in items], [v for _, v in items], color=color)
    axis.set_xlabel(xlabel)
    axis.set_title(title, fontsize=10)
    axis.grid(axis="x", alpha=0.3)
    return to_base64_png(figure)


def round_counts_plot(rounds: Sequence[RoundSummary]) -> str | None:
    """Rows, successful and failed, per round (stacked bars)."""
    if not rounds:
        return None
    figure, axis = plt.subplots(figsize=(7, 3.2))
    xs = [str(r.round) for r in rounds]
    ok = [r.rows - r.failed for r in rounds]
    axis.bar(xs, ok, color="#2ca02c", label="evolved")
    axis.bar(xs, [r.failed for r in rounds], bottom=ok, color="#d62728", label="failed")
    axis.set_xlabel("round")
    axis.set_ylabel("rows")
    axis.legend(fontsize=8)
    return to_base64_png(figure)


def length_plot(rounds: Sequence[RoundSummary]) -> str | None:
    """Word-count distributions per round: the inputs against their successful evolutions."""
    if not any(r.original_words or r.evolved_words for r in rounds):
        return None
    figure, axes = plt.subplots(1, len(rounds), figsize=(min(3.6 * len(rounds), 12), 3.2), squeeze=False)
    for axis, r in zip(axes[0], rounds):
        data = [values for values in (r.original_words, r.evolved_words) if values]
        labels = [name for name, values in (("input", r.original_words), ("evolved", r.evolved_words)) if values]
        axis.hist(data, bins=15, label=labels, color=["#7f7f7f", "#1f77b4"][: len(data)], alpha=0.8)
        axis.set_title(f"round {r.round}", fontsize=10)
        axis.set_xlabel("words")
        axis.legend(fontsize=8)
    axes[0][0].set_ylabel("instructions")
    return to_base64_png(figure)


#: Quality figures shown per round (name in QualityReport.figures(), panel title).
QUALITY_PANELS: tuple[tuple[str, str], ...] = (
    ("words (mean)", "words per instruction (mean)"),
    ("embedding diversity", "embedding diversity"),
    ("distinct-2", "distinct-2"),
    ("duplicate rate", "duplicate rate"),
    ("tag complexity", "InsTag complexity (tags/item)"),
    ("tag diversity", "InsTag diversity (unique tags/item)"),
)


def quality_plot(rounds: Sequence[RoundSummary]) -> str | None:
    """Complexity and diversity before (the round's inputs) and after (its evolutions), per round."""
    measured = [r for r in rounds if r.before is not None]
    if not measured:
        return None
    panels = [(key, title) for key, title in QUALITY_PANELS
              if any(r.before.figures().get(key) is not None for r in measured)]  # type: ignore[union-attr]
    columns = 2
    rows = (len(panels) + 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(8, 2.6 * rows), squeeze=False)
    xs = [r.round for r in measured]
    width = 0.38
    for index, (key, title) in enumerate(panels):
        axis = axes[index // columns][index % columns]
        before = [r.before.figures().get(key) or 0.0 for r in measured]  # type: ignore[union-attr]
        after = [(r.after.figures().get(key) or 0.0) if r.after else 0.0 for r in measured]
        axis.bar([x - width / 2 for x in xs], before, width, color="#7f7f7f", label="before (inputs)")
        axis.bar([x + width / 2 for x in xs], after, width, color="#1f77b4", label="after (evolved)")
        axis.set_title(title, fontsize=9)
        axis.set_xticks(xs)
        axis.set_xlabel("round", fontsize=8)
        if index == 0:
            axis.legend(fontsize=7)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    return to_base64_png(figure)
