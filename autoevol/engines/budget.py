"""A job budget shared by every Ray actor: one small actor holds the counts.

``RemoteBudget`` has the methods of :class:`autoevol.lm.policy.Budget` that ``ManagedLM`` uses
(``reserve()``, ``charge()``, ``exhausted_reason()``), so each evolve actor's LMs take it as their
budget unchanged.

Accuracy: ``reserve()`` is a synchronous round trip to the budget actor, which processes calls one
at a time, so the call limit is never exceeded. ``charge()`` is sent without waiting (tokens and
cost are only known after a call), so the token and cost limits can be overshot by what the calls
already in flight use: at most ``actors * concurrency`` calls, exactly as the local engine
overshoots by its ``concurrency`` in-flight calls.
"""

from __future__ import annotations

from typing import Any

import ray

from autoevol.lm.policy import Budget, BudgetExceeded


class BudgetCounter:
    """The state behind a :class:`RemoteBudget` (run as a Ray actor, see :func:`start_budget`)."""

    def __init__(self, max_calls: int | None, max_tokens: int | None, max_cost: float | None) -> None:
        self.budget = Budget(max_calls=max_calls, max_tokens=max_tokens, max_cost=max_cost)

    def reserve(self) -> str | None:
        """Count one call, or return why it is refused."""
        try:
            self.budget.reserve()
        except BudgetExceeded as error:
            return str(error)
        return None

    def charge(self, tokens: int, cost: float | None) -> None:
        self.budget.charge(tokens, cost)

    def exhausted_reason(self) -> str | None:
        return self.budget.exhausted_reason()

    def totals(self) -> dict[str, Any]:
        """Calls reserved, tokens and cost charged so far."""
        return {"calls": self.budget.calls, "tokens": self.budget.tokens, "cost": self.budget.cost}


def start_budget(*, max_calls: int | None = None, max_tokens: int | None = None,
                 max_cost: float | None = None) -> Any:
    """Start the budget actor of a job; returns its handle (pass it to :class:`RemoteBudget`)."""
    actor = ray.remote(num_cpus=0, max_restarts=0)(BudgetCounter)
    return actor.remote(max_calls, max_tokens, max_cost)


class RemoteBudget:
    """A ``Budget`` look-alike whose counts live in the job's budget actor."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def reserve(self) -> None:
        """Count one call about to be made, or raise BudgetExceeded (job-wide)."""
        reason = ray.get(self.handle.reserve.remote())
        if reason:
            raise BudgetExceeded(reason)

    def charge(self, tokens: int, cost: float | None) -> None:
        """Add what a finished call used (not waited for)."""
        self.handle.charge.remote(tokens, cost)

    def exhausted_reason(self) -> str | None:
        return ray.get(self.handle.exhausted_reason.remote())
