"""GEPA's budget and stoppers: the metric calls matching Auto Evol-Instruct, and when GEPA must stop.

GEPA ends on its own budget of metric calls; these stoppers end it earlier when an LM error no retry
can fix (or a spent budget) occurred, or when the compile's LM calls reached ``max_lm_calls``; the
latter also keeps what the compile spent over interrupted and resumed runs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from dspy.utils.callback import BaseCallback
from dspy.utils.exceptions import ContextWindowExceededError

from autoevol.lm.policy import BudgetExceeded, is_permanent
from autoevol.optimizers.auto_evol.spending import Spending

logger = logging.getLogger(__name__)

#: The file in a GEPA run directory where :class:`Spending` keeps what the compile spent (named
#: when it held the LM calls alone; older run directories resume from it).
SPENDING_RECORD = "gepa-lm-calls.json"

__all__ = ["SPENDING_RECORD", "CallLimit", "FatalErrors", "matched_metric_calls"]


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


class CallLimit:
    """GEPA's stopper for ``limit`` LM calls over all the compile's runs (cache hits not counted;
    ``None``: no limit). GEPA calls it between iterations; each call also saves ``spending``, so that
    a compile interrupted during the search and resumed counts its earlier runs' calls and time, in
    its usage and against the limit."""

    def __init__(self, spending: Spending, limit: int | None) -> None:
        self.spending, self.limit, self.fired = spending, limit, False

    def __call__(self, gepa_state: Any) -> bool:  # GEPA's stopper protocol
        self.spending.save()
        spent = self.spending.calls()
        if self.limit is not None and spent >= self.limit and not self.fired:
            logger.info("GEPA: %d LM calls made, the budget of %d is spent", spent, self.limit)
            self.fired = True
        return self.fired
