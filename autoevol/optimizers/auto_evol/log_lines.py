"""What a compile logs: one line per step (the incumbent, every candidate's rate, the outcome) and one
at its end (why it stopped, the dev failure rate before and after, the confirmation's verdict).
"""

from __future__ import annotations

import logging

from autoevol.optimizers.auto_evol.records import CandidateRecord, MethodScore, StartRecord, StepRecord
from autoevol.optimizers.auto_evol.selection import PairedComparison

logger = logging.getLogger("autoevol.optimizers.auto_evol")


def _describe(candidate: CandidateRecord) -> str:
    if candidate.invalid:
        return "invalid"
    if candidate.score is None:
        return "-"
    return f"{100 * candidate.score.failure_rate:.0f}%" + (" (dropped)" if candidate.dropped else "")


def log_finish(stopped: str, start: StartRecord, final: MethodScore, steps: int,
               confirmation: PairedComparison | None) -> None:
    """Log the end of a compile: why it stopped, the dev failure rate before and after, and whether
    the confirmation split supported the change (when one was measured)."""
    verdict = "" if confirmation is None else (
        f"; the confirmation on {confirmation.items} items supports it" if confirmation.supported
        else f"; the confirmation on {confirmation.items} items does not support it, so the start is kept")
    logger.info("compile finished (%s): dev failure rate %.1f%% -> %.1f%% after %d step(s)%s",
                stopped, 100 * start.score.failure_rate, 100 * final.failure_rate, steps, verdict)


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
