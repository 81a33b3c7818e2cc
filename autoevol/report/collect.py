"""Read a compile run directory or an evolve output into a report model.

Reading is tolerant: run and step files are read as plain JSON, and any section whose data is
missing (no steps, no issues, no rounds) is simply left empty, so a report of a run in progress or
of an older layout still renders.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from autoevol.data import DataError, output_format, read_rows
from autoevol.metrics.embeddings import Embedder
from autoevol.metrics.quality import QualityReport, quality_report
from autoevol.optimizers.auto_evol.selection import PairedComparison
from autoevol.signatures.evolve import INITIAL_METHOD

logger = logging.getLogger(__name__)


class StepPoint(BaseModel):
    """Dev failure rates of one compile step."""

    step: int
    incumbent: float | None = None
    candidates: list[float | None] = Field(default_factory=list)
    selected: float | None = None
    winner: int | None = None
    kinds: list[str] = Field(default_factory=list, description="per candidate: 'method' or 'demos'")
    paired: str | None = Field(default=None, description="the deciding paired comparison with the incumbent")


class RunSummary(BaseModel):
    """What a report shows of a compile run directory."""

    path: str
    settings: dict[str, Any] = Field(default_factory=dict)
    steps: list[StepPoint] = Field(default_factory=list)
    issue_categories: dict[str, int] = Field(default_factory=dict)
    final_by_rule: dict[str, int] = Field(default_factory=dict)
    initial_method: str = INITIAL_METHOD
    final_method: str | None = None
    final_demos: list[dict[str, Any]] = Field(default_factory=list, description="the final demonstrations")
    demos_found: dict[str, int] = Field(default_factory=dict, description="demonstrations found, by origin")
    confirmation: PairedComparison | None = Field(default=None, description="the result against the start, held out")


class RoundSummary(BaseModel):
    """One round of an evolve output."""

    round: int
    rows: int = 0
    failed: int = 0
    original_words: list[int] = Field(default_factory=list)
    evolved_words: list[int] = Field(default_factory=list)
    before: QualityReport | None = Field(default=None, description="quality of the round's inputs")
    after: QualityReport | None = Field(default=None, description="quality of its successful evolutions")


class OutputSummary(BaseModel):
    """What a report shows of an evolve output."""

    path: str
    rows: int = 0
    by_rule: dict[str, int] = Field(default_factory=dict)
    rounds: list[RoundSummary] = Field(default_factory=list)
    method_fingerprints: list[str] = Field(default_factory=list)
    evol_models: list[str] = Field(default_factory=list)


class ReportModel(BaseModel):
    """Everything a report draws: a compile run, an evolve output, or both absent (empty report)."""

    title: str
    source: str
    run: RunSummary | None = None
    output: OutputSummary | None = None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        logger.warning("skipping unreadable %s: %s", path, error)
        return None


def _rate(score: Any) -> float | None:
    if isinstance(score, dict) and isinstance(score.get("failure_rate"), (int, float)):
        return float(score["failure_rate"])
    return None


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a compile run directory (a folder with ``run.json``)."""
    return (Path(path) / "run.json").is_file()


def _deciding_comparison(candidates: list[dict[str, Any]], winner: Any) -> str | None:
    """The winner's paired counts against the incumbent, else those of the closest candidate."""
    compared = [c for c in candidates if isinstance(c.get("comparison"), dict) and not c.get("dropped")]
    if isinstance(winner, int):
        compared = [c for c in compared if c.get("index") == winner]
    if not compared:
        return None
    closest = min(compared, key=lambda c: c["comparison"].get("p_value", 1.0))["comparison"]
    try:
        return (f"candidate {'won' if isinstance(winner, int) else 'closest'}: {closest['reference_only']} items only "
                f"the incumbent failed, {closest['challenger_only']} only the candidate; p={closest['p_value']:.3g} "
                f"(needed <= {closest['level']:.3g})")
    except (KeyError, TypeError, ValueError):
        return None


def collect_run(path: str | Path) -> RunSummary:
    """Steps, candidate rates, issue categories, the final method and demonstrations of a compile run directory."""
    path = Path(path)
    header = _load_json(path / "run.json") or {}
    summary = RunSummary(path=str(path), settings=dict(header.get("settings") or {}))
    issues: Counter[str] = Counter()
    found: Counter[str] = Counter()
    step_files = sorted((path / "steps").glob("step-*.json")) if (path / "steps").is_dir() else []
    for file in step_files:
        record = _load_json(file)
        if not isinstance(record, dict):
            continue
        candidates = [c for c in record.get("candidates") or [] if isinstance(c, dict)]
        summary.steps.append(StepPoint(
            step=int(record.get("step") or len(summary.steps) + 1),
            incumbent=_rate(record.get("incumbent")),
            candidates=[_rate(c.get("score")) for c in candidates],
            selected=_rate(record.get("selected")),
            winner=record.get("winner") if isinstance(record.get("winner"), int) else None,
            kinds=[str(c.get("kind") or "method") for c in candidates],
            paired=_deciding_comparison(candidates, record.get("winner")),
        ))
        for demo in record.get("new_demos") or []:
            if isinstance(demo, dict):
                found[str(demo.get("origin") or "given")] += 1
        for candidate in candidates:
            for issue in candidate.get("issues") or []:
                if isinstance(issue, dict):
                    issues[str(issue.get("category") or "other")] += 1
        selected = record.get("selected")
        if isinstance(selected, dict):
            summary.final_method = selected.get("method") or summary.final_method
            summary.final_by_rule = dict(selected.get("by_rule") or {})
            summary.final_demos = [d for d in selected.get("demos") or [] if isinstance(d, dict)]
    summary.steps.sort(key=lambda s: s.step)
    summary.issue_categories = dict(issues.most_common())
    summary.demos_found = dict(found.most_common())
    if (path / "confirmation.json").is_file():
        try:
            summary.confirmation = PairedComparison.model_validate(_load_json(path / "confirmation.json"))
        except ValidationError:
            logger.warning("skipping the unreadable confirmation record of %s", path)
    return summary


def collect_output(
    path: str | Path,
    *,
    quality: bool = True,
    embedder: Embedder | None = None,
    tagger_lm: Any = None,
    dup_threshold: float = 0.95,
) -> OutputSummary:
    """Counts, failures by rule, lengths and (with ``quality``) quality per round of an evolve output."""
    summary = OutputSummary(path=str(path))
    rules: Counter[str] = Counter()
    rounds: dict[int, RoundSummary] = {}
    texts: dict[int, tuple[list[str], list[str], list[str]]] = {}  # inputs, evolved, their parents
    for row in read_rows(path):
        summary.rows += 1
        number = int(row.get("round") or 1)
        current = rounds.setdefault(number, RoundSummary(round=number))
        inputs, evolved, parents = texts.setdefault(number, ([], [], []))
        current.rows += 1
        original = str(row.get("original") or "")
        inputs.append(original)
        current.original_words.append(len(original.split()))
        if row.get("failed"):
            current.failed += 1
            rules[str(row.get("rule") or "unknown")] += 1
        elif row.get("evolved"):
            text = str(row["evolved"])
            evolved.append(text)
            parents.append(original)
            current.evolved_words.append(len(text.split()))
        for key, seen in (("method_fingerprint", summary.method_fingerprints), ("evol_model", summary.evol_models)):
            if row.get(key) and row[key] not in seen:
                seen.append(str(row[key]))
    summary.by_rule = dict(rules.most_common())
    summary.rounds = [rounds[r] for r in sorted(rounds)]
    if quality and summary.rows:
        if embedder is None:
            from autoevol.metrics.embeddings import WordLlamaEmbedder

            embedder = WordLlamaEmbedder()
        for current in summary.rounds:
            inputs, evolved, parents = texts[current.round]
            current.before = quality_report(inputs, embedder=embedder, tagger_lm=tagger_lm, dup_threshold=dup_threshold)
            if evolved:
                current.after = quality_report(evolved, parents=parents, embedder=embedder, tagger_lm=tagger_lm,
                                               dup_threshold=dup_threshold)
    return summary


def collect(
    path: str | Path,
    *,
    quality: bool = True,
    embedder: Embedder | None = None,
    tagger_lm: Any = None,
    title: str | None = None,
) -> ReportModel:
    """A report model of a compile run directory or an evolve output (jsonl, parquet or folder).

    Raises:
        DataError: the path does not exist or is neither a run directory nor a readable output.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such run directory or output")
    if is_run_dir(path):
        return ReportModel(title=title or f"Compile run {path.name}", source=str(path), run=collect_run(path))
    output_format(path)  # an unsupported suffix fails here, in one line
    output = collect_output(path, quality=quality, embedder=embedder, tagger_lm=tagger_lm)
    return ReportModel(title=title or f"Evolved data {path.name}", source=str(path), output=output)
