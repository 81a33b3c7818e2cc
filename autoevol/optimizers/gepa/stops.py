"""GEPA's budget and stoppers: the metric calls matching Auto Evol-Instruct, and when GEPA must stop.

GEPA ends on its own budget of metric calls; these stoppers end it earlier when an LM error no retry
can fix (or a spent budget) occurred, or when the compile's LM calls reached ``max_lm_calls``; the
latter also keeps what the compile spent over interrupted and resumed runs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from dspy.utils.callback import BaseCallback
from dspy.utils.exceptions import ContextWindowExceededError

from autoevol.lm.policy import BudgetExceeded, is_permanent
from autoevol.optimizers.auto_evol.records import StartRecord, UsageDelta
from autoevol.optimizers.auto_evol.roles import CompileLMs
from autoevol.optimizers.auto_evol.run_dir import RunDirError, write_json

logger = logging.getLogger(__name__)

#: The file in a GEPA run directory where :class:`Spending` keeps what the compile spent (named
#: when it held the LM calls alone; older run directories resume from it).
SPENDING_RECORD = "gepa-lm-calls.json"

__all__ = ["SPENDING_RECORD", "FatalErrors", "Spending", "matched_metric_calls"]


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


class Spending:
    """What a GEPA compile spent over all its runs (LM usage by role, LM calls, seconds), and
    GEPA's stopper for ``limit`` LM calls (cache hits not counted; ``None``: no limit).

    GEPA calls it between iterations; each call writes the totals to ``record`` (in the run
    directory), so that a compile interrupted during the search and resumed counts its earlier
    runs' calls and time, in its usage and against the limit. ``earlier`` is what a record
    written by an older version lacks: the usage and seconds of a finished run's start record.
    """

    def __init__(self, lms: CompileLMs, before: dict[str, Any], limit: int | None, record: Path | None,
                 earlier: StartRecord | None = None) -> None:
        self.lms, self.before, self.limit, self.record, self.fired = lms, before, limit, record, False
        self.clock = time.monotonic()
        self.earlier_calls = 0
        self.earlier_usage = list(earlier.usage) if earlier is not None else []
        self.earlier_seconds = earlier.seconds if earlier is not None else 0.0
        if record is not None and record.exists():
            try:
                document = json.loads(record.read_text(encoding="utf-8"))
                self.earlier_calls = int(document["lm_calls"])
                if "usage" in document:
                    self.earlier_usage = [UsageDelta.model_validate(usage) for usage in document["usage"]]
                    self.earlier_seconds = float(document["seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                raise RunDirError(f"{record}: unreadable record of what the compile spent") from None

    def usage(self) -> list[UsageDelta]:
        """Usage per role of the earlier runs plus this one's."""
        totals = {usage.role: usage for usage in self.earlier_usage}
        for usage in self.lms.usage_since(self.before):
            totals[usage.role] = totals[usage.role].plus(usage) if usage.role in totals else usage
        return list(totals.values())

    def calls(self) -> int:
        """LM calls of the earlier runs plus this one's, every role counted."""
        return self.earlier_calls + sum(usage.calls for usage in self.lms.usage_since(self.before))

    def seconds(self) -> float:
        """Seconds of the earlier runs plus this one's so far."""
        return round(self.earlier_seconds + time.monotonic() - self.clock, 3)

    def save(self) -> None:
        """Write the totals to the record (nothing without one)."""
        if self.record is not None:
            write_json(self.record, {"lm_calls": self.calls(), "seconds": self.seconds(),
                                     "usage": [usage.model_dump(mode="json") for usage in self.usage()]})

    def __call__(self, gepa_state: Any) -> bool:  # GEPA's stopper protocol
        self.save()
        spent = self.calls()
        if self.limit is not None and spent >= self.limit and not self.fired:
            logger.info("GEPA: %d LM calls made, the budget of %d is spent", spent, self.limit)
            self.fired = True
        return self.fired
