"""How LM calls are paced: retries with backoff, adaptive concurrency, and budgets."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from dspy.utils.exceptions import (
    LMAuthError,
    LMBillingError,
    LMConfigurationError,
    LMError,
    LMInvalidRequestError,
    LMRateLimitError,
    LMUnsupportedFeatureError,
)

#: Errors that another attempt cannot fix: a bad key, billing, configuration, an unknown model,
#: an unsupported parameter or feature, a request the endpoint refuses (a context too long included).
PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    LMAuthError, LMBillingError, LMConfigurationError, LMInvalidRequestError, LMUnsupportedFeatureError,
)


def is_retryable(error: Exception) -> bool:
    """Transient faults (server errors, timeouts, resets, rate limits, garbage bodies) are retried."""
    return isinstance(error, LMError) and not isinstance(error, PERMANENT_ERRORS)


def is_permanent(error: BaseException) -> bool:
    """An LM error that no retry can fix (see :data:`PERMANENT_ERRORS`): the job should stop."""
    return isinstance(error, PERMANENT_ERRORS)


def retry_after(error: Exception) -> float | None:
    """The server's ``Retry-After`` hint in seconds, when a rate-limit error carries one."""
    if not isinstance(error, LMRateLimitError):
        return None
    hint = getattr(error, "retry_after", None)
    try:
        return max(0.0, float(hint)) if hint is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class CallPolicy:
    """Per-call timeout and retry schedule.

    Attempt ``k`` (0-based) that fails with a transient error waits
    ``min(backoff_cap, backoff_base * 2**k)`` seconds scaled by a random factor in [0.5, 1.5]
    (jitter), or the server's ``Retry-After`` when it sends one.
    """

    timeout: float = 120.0
    max_retries: int = 4
    backoff_base: float = 1.0
    backoff_cap: float = 30.0

    def delay(self, attempt: int, error: Exception, rng: random.Random) -> float:
        hinted = retry_after(error)
        if hinted is not None:
            return min(hinted, self.backoff_cap * 4)
        return min(self.backoff_cap, self.backoff_base * 2**attempt) * rng.uniform(0.5, 1.5)


class AdaptiveLimiter:
    """A concurrency gate that backs off on rate limits (AIMD).

    At most ``limit`` calls run at once. A rate-limit halves the limit (at most once per
    ``cooldown`` seconds, so a burst of 429s counts as one signal); every success adds
    ``1 / limit``, so the limit grows by about one per window of successful calls, back up to
    ``maximum``.
    """

    def __init__(self, maximum: int, *, cooldown: float = 1.0) -> None:
        if maximum < 1:
            raise ValueError("concurrency must be at least 1")
        self.maximum = maximum
        self.cooldown = cooldown
        self._limit = float(maximum)
        self._in_flight = 0
        self._last_decrease = float("-inf")
        self._condition = threading.Condition()

    @property
    def limit(self) -> int:
        return max(1, int(self._limit))

    def __enter__(self) -> AdaptiveLimiter:
        with self._condition:
            while self._in_flight >= self.limit:
                self._condition.wait()
            self._in_flight += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._condition:
            self._in_flight -= 1
            self._condition.notify()

    def succeeded(self) -> None:
        with self._condition:
            if self._limit < self.maximum:
                self._limit = min(self.maximum, self._limit + 1.0 / self._limit)
                self._condition.notify_all()

    def rate_limited(self) -> None:
        with self._condition:
            now = time.monotonic()
            if now - self._last_decrease >= self.cooldown:
                self._limit = max(1.0, self._limit / 2)
                self._last_decrease = now


class BudgetExceeded(RuntimeError):
    """A job reached one of its limits on LM calls, tokens, cost or time."""


class Budget:
    """Limits shared by every LM of a job (all roles, all threads).

    ``reserve()`` is called before each billed call and refuses once a limit is reached, so a job
    stops cleanly at the limit; ``charge()`` adds what a finished call used. ``max_seconds`` counts
    from the budget's creation: no call starts after it (calls in flight finish).
    """

    def __init__(
        self,
        *,
        max_calls: int | None = None,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        max_seconds: float | None = None,
    ) -> None:
        self.max_calls = max_calls
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.max_seconds = max_seconds
        self._started = time.monotonic()
        self.calls = 0
        self.tokens = 0
        self.cost = 0.0
        self._lock = threading.Lock()

    def exhausted_reason(self) -> str | None:
        """Which limit has been reached, or None."""
        if self.max_calls is not None and self.calls >= self.max_calls:
            return f"call budget of {self.max_calls} reached"
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            return f"token budget of {self.max_tokens} reached"
        if self.max_cost is not None and self.cost >= self.max_cost:
            return f"cost budget of ${self.max_cost:g} reached"
        if self.max_seconds is not None and time.monotonic() - self._started >= self.max_seconds:
            return f"time budget of {self.max_seconds / 60:g} min reached"
        return None

    def reserve(self) -> None:
        """Count one call about to be made, or raise BudgetExceeded."""
        with self._lock:
            reason = self.exhausted_reason()
            if reason:
                raise BudgetExceeded(reason)
            self.calls += 1

    def charge(self, tokens: int, cost: float | None) -> None:
        with self._lock:
            self.tokens += tokens
            self.cost += cost or 0.0
