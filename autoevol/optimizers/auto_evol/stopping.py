"""When the loop stops: the compile's stop rule (no failures left, or ``patience`` steps without an
improvement), and a step callback that asks it to stop (:class:`StopCompile`, e.g. Optuna pruning).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from autoevol.optimizers.auto_evol.records import MethodScore, StepRecord

logger = logging.getLogger("autoevol.optimizers.auto_evol")

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
