"""The compile's result: the student following the final method, with the compile's metadata (settings,
rates before and after, the confirmation, usage summed over the run) and its ``compile_history``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from autoevol.optimizers.auto_evol.records import MethodScore, StartRecord, StepRecord, UsageDelta
from autoevol.optimizers.auto_evol.run_dir import now
from autoevol.optimizers.auto_evol.selection import PairedComparison
from autoevol.programs.evolver import Evolver
from autoevol.version import __version__


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
