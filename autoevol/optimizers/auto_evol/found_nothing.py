"""A compile that found nothing: the errors it ends with when it has no method better than the one it
started from (each carrying the unchanged evolver), and which of them applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autoevol.optimizers.auto_evol.records import MethodScore, StepRecord
from autoevol.optimizers.auto_evol.selection import PairedComparison
from autoevol.programs.evolver import Evolver


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
