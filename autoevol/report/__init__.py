"""HTML reports of compile runs and evolve outputs: one self-contained file with inline SVG figures.

Example:
    >>> from autoevol.report import write_report
    >>> write_report("runs/chat", "report.html")          # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoevol.metrics.embeddings import Embedder
from autoevol.report.collect import ReportModel, collect

__all__ = ["ReportModel", "build_report", "collect", "write_report"]


def build_report(
    path: str | Path,
    *,
    quality: bool = True,
    embedder: Embedder | None = None,
    tagger_lm: Any = None,
    title: str | None = None,
) -> str:
    """The HTML text of a report on a compile run directory or an evolve output."""
    from autoevol.report.html import render

    model = collect(path, quality=quality, embedder=embedder, tagger_lm=tagger_lm, title=title)
    return render(model)


def write_report(path: str | Path, out: str | Path, **options: Any) -> Path:
    """Write the report of ``path`` to ``out`` (see :func:`build_report` for the options)."""
    out = Path(out)
    html = build_report(path, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_text(html, encoding="utf-8")
    temporary.replace(out)
    return out
