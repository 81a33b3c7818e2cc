"""What a compile tells: the context its analyses read, its usage, and how it ends when it found nothing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from autoevol.optimizers.history import MethodScore, StepRecord, UsageDelta

#: Earlier candidates shown to an analysis (the most recent ones).
EARLIER_TRIES = 8


class CompileFoundNothing(RuntimeError):
    """The compile ends without a method better than the one it started from.

    ``evolver`` is the unchanged result, with its metadata and ``compile_history``, for callers
    that want it anyway (``keep_unchanged=True`` returns it instead of raising).
    """

    def __init__(self, message: str, evolver: Any) -> None:
        super().__init__(message)
        self.evolver = evolver


class NoValidCandidate(CompileFoundNothing):
    """No step produced a single usable candidate method."""

    def __init__(self, reasons: Sequence[str], evolver: Any) -> None:
        counts: dict[str, int] = {}
        for reason in reasons:
            counts[reason] = counts.get(reason, 0) + 1
        common = "; ".join(f"{reason} ({count}x)" for reason, count in
                           sorted(counts.items(), key=lambda kv: -kv[1])[:3])
        super().__init__(f"no step produced a valid candidate method ({len(reasons)} candidates given up: "
                         f"{common})", evolver)
        self.reasons = list(reasons)


class NoImprovement(CompileFoundNothing):
    """No candidate had a lower dev failure rate than the start (or the start failed no dev item)."""


def analysis_context(incumbent: MethodScore, history: Sequence[StepRecord]) -> str:
    """What an analysis reads beside the trajectory: the dev failures by rule, and earlier tries."""
    rules = ", ".join(f"{rule} {count}" for rule, count in sorted(incumbent.by_rule.items(), key=lambda kv: -kv[1]))
    lines = [f"On the development set the current method fails {incumbent.failed} of {incumbent.evaluated} "
             f"items" + (f" (by rule: {rules})." if rules else ".")]
    tries = [(record.step, candidate) for record in history for candidate in record.candidates
             if not candidate.invalid and candidate.score is not None][-EARLIER_TRIES:]
    if tries:
        lines.append("Earlier changes and the failure rate they reached (lower is better):")
        for step, candidate in tries:
            rate = 100 * candidate.score.failure_rate  # type: ignore[union-attr]
            lines.append(f"- step {step}: {candidate.change or 'a rewrite'}: {rate:.0f}%")
    return "\n".join(lines)


def total_usage(parts: Iterable[Sequence[UsageDelta]]) -> dict[str, dict[str, float]]:
    """Calls, cache hits and tokens per role, summed over the start and every step."""
    totals: dict[str, dict[str, float]] = {}
    for part in parts:
        for usage in part:
            total = totals.setdefault(usage.role, {"calls": 0, "cache_hits": 0, "input_tokens": 0,
                                                   "output_tokens": 0})
            for name in total:
                total[name] += getattr(usage, name)
    return totals
