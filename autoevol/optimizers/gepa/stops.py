"""GEPA's budget and stoppers: the metric calls matching Auto Evol-Instruct, and when GEPA must stop.

GEPA ends on its own budget of metric calls; these stoppers end it earlier when an LM error no retry
can fix (or a spent budget) occurred, or when the compile's LM calls reached ``max_lm_calls``.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from dspy.utils.callback import BaseCallback
from dspy.utils.exceptions import ContextWindowExceededError

from autoevol.lm.policy import BudgetExceeded, is_permanent
from autoevol.optimizers.auto_evol.roles import CompileLMs
from autoevol.optimizers.auto_evol.run_dir import RunDirError, write_json

logger = logging.getLogger(__name__)

__all__ = ["FatalErrors", "LMCallBudget", "matched_metric_calls"]


def matched_metric_calls(*, dev_size: int, batch_size: int, num_candidates: int, max_steps: int,
                         evolution_rounds: int = 1) -> int:
    """The item evaluations Auto Evol-Instruct's schedule makes with these settings (GEPA's default budget).

    ``dev_size + max_steps * (batch_size * evolution_rounds + num_candidates * dev_size)``: the
    starting method on the whole dev set, then per step the trajectory (every mini-batch item
    evolved ``l`` times) and every candidate on the whole dev set. It is the schedule's bound:
    racing and early stopping make Auto Evol-Instruct spend less. Optimizer-LM calls are not in
    it (Auto Evol-Instruct makes 2 to ``1 + proposal_attempts`` per candidate, GEPA one per
    iteration).
    """
    return dev_size + max_steps * (batch_size * evolution_rounds + num_candidates * dev_size)


class FatalErrors(BaseCallback):
    """Records the first LM error no retry can fix (or a spent budget) and tells GEPA to stop.

    GEPA's evaluation scores an item whose program or metric raised as a failure and goes on, so
    such errors are caught where every LM call ends, then re-raised once GEPA has stopped.
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        fatal = isinstance(exception, BudgetExceeded) or (
            exception is not None and is_permanent(exception) and not isinstance(exception, ContextWindowExceededError))
        if fatal:
            with self._lock:
                self.error = self.error or exception

    def __call__(self, gepa_state: Any) -> bool:  # GEPA's stopper protocol
        return self.error is not None


class LMCallBudget:
    """GEPA's stopper for ``max_lm_calls``: the compile's LM calls (cache hits not counted) reached the limit.

    With a ``record`` file (in the run directory) the calls of earlier, interrupted runs count too,
    so a resumed compile spends only what is left.
    """

    def __init__(self, lms: CompileLMs, before: dict[str, Any], limit: int, record: Path | None) -> None:
        self.lms, self.before, self.limit, self.record, self.fired = lms, before, limit, record, False
        self.earlier = 0
        if record is not None and record.exists():
            try:
                self.earlier = int(json.loads(record.read_text(encoding="utf-8"))["lm_calls"])
            except (OSError, ValueError, KeyError, TypeError):
                raise RunDirError(f"{record}: unreadable record of the LM calls spent") from None

    def __call__(self, gepa_state: Any) -> bool:
        spent = self.earlier + sum(usage.calls for usage in self.lms.usage_since(self.before))
        if self.record is not None:
            write_json(self.record, {"lm_calls": spent})
        if spent >= self.limit and not self.fired:
            logger.info("GEPA: %d LM calls made, the budget of %d is spent", spent, self.limit)
            self.fired = True
        return self.fired
