"""What a compile tells: the context its analyses read, its usage, and how it ends when it found nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from autoevol.optimizers.auto_evol.selection import PairedComparison
from autoevol.optimizers.auto_evol.records import CandidateRecord, MethodScore, StartRecord, StepRecord, UsageDelta, now
from autoevol.programs.evolver import Evolver
from autoevol.version import __version__

logger = logging.getLogger("autoevol.optimizers.auto_evol")

#: Earlier candidates shown to an analysis (the most recent ones).
EARLIER_TRIES = 8

StepCallback = Callable[[int, StepRecord], "bool | None"]


class StopCompile(Exception):
    """Raise from a ``step_callback`` to end the loop after the current step (e.g. Optuna pruning)."""


def notify(callback: StepCallback | None, record: StepRecord) -> str | None:
    """Call the step callback; returns "callback" when it asks to stop."""
    if callback is None:
        return None
    try:
        answer = callback(record.step, record)
    except StopCompile as stop:
        logger.info("step %d: the step callback stopped the compile (%s)", record.step, stop)
        return "callback"
    return "callback" if answer is False else None


def stop_reason(incumbent: MethodScore, history: Sequence[StepRecord], patience: int) -> str | None:
    """Why the loop stops before another step ("no_failures", "plateau"), or ``None``."""
    if incumbent.failed == 0:
        return "no_failures"
    if steps_without_improvement(history) >= patience:
        return "plateau"
    return None


def steps_without_improvement(history: Sequence[StepRecord]) -> int:
    """Steps since the last improvement; a step without a valid candidate tried nothing and is not counted."""
    stale = 0
    for record in history:
        if record.improved:
            stale = 0
        elif record.valid_candidates:
            stale += 1
    return stale


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
             if not candidate.invalid and candidate.score is not None and candidate.kind == "method"][-EARLIER_TRIES:]
    if tries:
        lines.append("Earlier changes and the failure rate they reached (lower is better):")
        for step, candidate in tries:
            rate = 100 * candidate.score.failure_rate  # type: ignore[union-attr]
            lines.append(f"- step {step}: {candidate.change or 'a rewrite'}: {rate:.0f}%")
    return "\n".join(lines)


def compiled_evolver(student: Evolver, final: MethodScore, start: StartRecord, history: list[StepRecord], *,
                     hyperparameters: dict[str, Any], models: dict[str, str], detector_rules: list[str],
                     data: dict[str, Any], stopped: str, confirmation: PairedComparison | None = None) -> Evolver:
    """The compile's result: ``student`` following ``final``'s method, with metadata and ``compile_history``.

    ``confirmation`` (the last step's winner against the start on the confirmation split) is
    recorded with ``confirmed``: whether it supports the gain, ``None`` when nothing was confirmed.
    """
    initial = start.score
    metadata: dict[str, Any] = {
        "optimizer": "AutoEvolInstruct", "autoevol_version": __version__, "compiled_at": now(),
        "models": models, "hyperparameters": hyperparameters, "detector_rules": detector_rules, "dataset": data,
        "initial_method_fingerprint": initial.fingerprint,
        "initial_dev_failure_rate": initial.failure_rate,
        "initial_dev_failures": {"failed": initial.failed, "total": initial.evaluated},
        "initial_demos": len(initial.demos),
        "dev_failure_rate": final.failure_rate,
        "dev_failures": {"failed": final.failed, "total": final.evaluated},
        "steps": len(history), "stopped": stopped,
        "start_race": [{"method": candidate.change, "failure_rate": None if candidate.score is None
                        else candidate.score.failure_rate, "dropped": candidate.dropped,
                        "paired": None if candidate.comparison is None else candidate.comparison.model_dump()}
                       for candidate in start.alternatives],
        "start_chosen": "student" if start.winner is None else start.alternatives[start.winner - 1].change,
        "confirmation": None if confirmation is None else confirmation.model_dump(),
        "confirmed": None if confirmation is None else confirmation.supported,
        "proposals": {"valid": sum(r.valid_candidates for r in history),
                      "total": sum(c.attempts for r in history for c in r.candidates)},
        "history": [record.summary() for record in history],
        "usage": total_usage([start.usage, *(record.usage for record in history)]),
        "seconds": round(start.seconds + sum(record.seconds for record in history), 2),
    }
    if student.metadata.get("optimizer"):
        metadata["started_from"] = {key: student.metadata.get(key) for key in
                                    ("initial_method_fingerprint", "dev_failure_rate", "dataset", "compiled_at")}
        metadata["started_from"].update(method_fingerprint=student.fingerprint, demos=len(student.demos),
                                        demos_kept=len(initial.demos))
    evolver = student.with_method(final.method).with_demos(final.demos)
    evolver.metadata = metadata
    evolver.compile_history = history
    return evolver


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


def unconfirmed(initial: MethodScore, final: MethodScore, confirmation: PairedComparison,
                evolver: Evolver) -> NoImprovement:
    """The error of a dev gain that the confirmation split does not support, with its figures."""
    return NoImprovement(
        f"the dev gain ({100 * initial.failure_rate:.0f}% -> {100 * final.failure_rate:.0f}%) did not hold "
        f"on {confirmation.items} confirmation items no selection step saw: the start failed "
        f"{confirmation.reference_only + confirmation.both}, the result {confirmation.challenger_only + confirmation.both}; "
        f"{confirmation.describe()}", evolver)


def found_nothing_error(initial: MethodScore, final: MethodScore, history: Sequence[StepRecord],
                        evolver: Evolver, confirmation: PairedComparison | None = None) -> CompileFoundNothing | None:
    """The error to raise when the compile has no better method to return, or ``None`` when it found one.

    A method better on the dev set is no result when the confirmation split does not support it.
    """
    if confirmation is not None and not confirmation.supported:
        return unconfirmed(initial, final, confirmation, evolver)
    if final.fingerprint != initial.fingerprint:
        return None
    if not history:
        return NoImprovement("the starting method fails no dev item: there is nothing to optimize", evolver)
    if not any(record.valid_candidates for record in history):
        reasons = [c.invalid_reason or "invalid" for record in history for c in record.candidates]
        return NoValidCandidate(reasons, evolver)
    return NoImprovement(f"none of the {sum(r.valid_candidates for r in history)} valid candidates beat the "
                         f"starting method ({100 * initial.failure_rate:.0f}% dev failure rate) by a margin the "
                         f"paired test supports", evolver)


def _describe(candidate: CandidateRecord) -> str:
    if candidate.invalid:
        return "invalid"
    if candidate.score is None:
        return "-"
    return f"{100 * candidate.score.failure_rate:.0f}%" + (" (dropped)" if candidate.dropped else "")


def log_finish(stopped: str, start: StartRecord, final: MethodScore, steps: int) -> None:
    """Log the end of a compile: why it stopped, and the dev failure rate before and after."""
    logger.info("compile finished (%s): dev failure rate %.1f%% -> %.1f%% after %d step(s)",
                stopped, 100 * start.score.failure_rate, 100 * final.failure_rate, steps)


def log_step(record: StepRecord) -> None:
    """Log one step in a line: the incumbent, every candidate's rate, and the outcome."""
    rates = ", ".join(_describe(candidate) for candidate in record.candidates)
    outcome = "incumbent kept" if record.winner is None else f"candidate {record.winner} wins"
    deciding = record.deciding_comparison()
    if deciding is not None:
        outcome += f" ({deciding.describe()})"
    logger.info("step %d: incumbent %.1f%%, candidates [%s]: %s, dev failure rate %.1f%% (%.1fs)",
                record.step, 100 * record.incumbent.failure_rate, rates, outcome,
                100 * record.selected.failure_rate, record.seconds)
