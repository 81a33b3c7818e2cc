"""``ManagedLM``: a ``dspy.LM`` that survives long jobs.

It adds, around DSPy's own execution of each call: a persistent response cache, a budget check,
an adaptive concurrency gate, retries with backoff and jitter (honouring ``Retry-After``), and
usage accounting per role. Everything else (adapters, engines, history) is DSPy's.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from typing import Any

import dspy
from dspy.clients.call_result import CallResult
from dspy.clients.execution import execute, finalize, prepare
from dspy.utils.callback import with_callbacks
from dspy.utils.exceptions import LMRateLimitError, LMServerError

from autoevol.lm import _speedups  # noqa: F401  (memoized price lookups, native routing of explicit endpoints)
from autoevol.lm.cache import CallCache, request_key
from autoevol.lm.policy import AdaptiveLimiter, Budget, CallPolicy, is_retryable
from autoevol.lm.structured import DIALECTS
from autoevol.lm.usage import CallRecord, RoleUsage, UsageCounter, record_call

logger = logging.getLogger(__name__)


class ManagedLM(dspy.LM):
    """A ``dspy.LM`` with caching, budgets, adaptive concurrency, retries and usage per role.

    Args:
        model: any DSPy/LiteLLM model string (``openai/gpt-4o-mini``, ``hosted_vllm/...``).
        role: the name usage is reported under (``evol``, ``optimizer``, ``judge``).
        policy: timeout and retry schedule.
        limiter: concurrency gate; share one between LMs that hit the same endpoint.
        budget: limits shared by every LM of a job.
        call_cache: completed responses; a hit is free and counted as a cache hit.
        structured_output: the JSON-schema dialect the server decodes by (``json_object`` for
            llama.cpp, ``json_schema`` for vLLM and OpenAI); signature calls are then
            constrained to their output fields (see :mod:`autoevol.lm.structured`).
        structured_max_tokens: the fewest output tokens a constrained signature call gets.
        marked_text: on a llama.cpp server (``json_object``), answer signatures whose outputs are
            all text in DSPy's field-marker format under a grammar rather than as JSON (see
            :mod:`autoevol.lm.grammar`).
        seeded_sampling: give every sampled call (temperature above 0) the sampling seed of its
            ``rollout_id`` (0 without one), so the same request samples the same reply again and
            distinct rollouts still differ (a llama.cpp server reads ``seed``).
        **lm_kwargs: passed to ``dspy.LM`` (temperature, max_tokens, api_base, api_key, engine...).
    """

    def __init__(
        self,
        model: str,
        *,
        role: str = "evol",
        policy: CallPolicy | None = None,
        limiter: AdaptiveLimiter | None = None,
        budget: Budget | None = None,
        call_cache: CallCache | None = None,
        structured_output: str | None = None,
        structured_max_tokens: int | None = None,
        marked_text: bool = False,
        seeded_sampling: bool = False,
        **lm_kwargs: Any,
    ) -> None:
        if structured_output is not None and structured_output not in DIALECTS:
            raise ValueError(f"unknown structured-output dialect '{structured_output}' "
                             f"(known: {', '.join(DIALECTS)})")
        lm_kwargs.setdefault("cache", False)
        self.policy = policy or CallPolicy()
        if isinstance(lm_kwargs.get("engine", "auto"), str):
            lm_kwargs.setdefault("timeout", self.policy.timeout)
        super().__init__(model, num_retries=0, **lm_kwargs)
        self.role = role
        self.limiter = limiter or AdaptiveLimiter(64)
        self.budget = budget
        self.call_cache = call_cache
        self.structured_output = structured_output
        self.structured_max_tokens = structured_max_tokens
        self.marked_text = marked_text
        self.seeded_sampling = seeded_sampling
        self._usage = UsageCounter(role, model)
        self._rng = random.Random()
        self._rng_lock = threading.Lock()

    @property
    def usage(self) -> RoleUsage:
        """A snapshot of what this LM (and its copies) used so far."""
        return self._usage.snapshot()

    @with_callbacks
    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        if self.seeded_sampling:
            options = {**self.kwargs, **kwargs}
            if options.get("temperature") and options.get("seed") is None:
                kwargs["seed"] = _sampling_seed(options.get("rollout_id"))
        call = prepare(self, prompt, messages, kwargs)
        key = request_key(call.key(self, False)) if self.call_cache is not None else None
        result = self._cached(key)
        if result is None:
            result = self._execute(call)
            if key is not None:  # native (``responses``) and LiteLLM-routed (``outputs``) results alike
                self.call_cache.put(key, result.dump())  # type: ignore[union-attr]
        self._account(result)
        return finalize(self, call, result)

    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        raise NotImplementedError("ManagedLM is synchronous; autoevol runs calls in threads")

    def _cached(self, key: str | None) -> CallResult | None:
        if key is None or self.call_cache is None:
            return None
        record = self.call_cache.get(key)
        if record is None:
            return None
        result = CallResult.load(record)
        result.cache_hit = True
        return result

    def _execute(self, call: Any) -> CallResult:
        """One call with the retry schedule of ``self.policy``; raises the last error."""
        if self.budget is not None:
            self.budget.reserve()
        for attempt in range(self.policy.max_retries + 1):
            try:
                with self.limiter:
                    result = execute(self, call)
                if _is_empty(result):
                    raise LMServerError("the server's response had no choices or content (garbage body)")
                self.limiter.succeeded()
                return result
            except Exception as error:
                if isinstance(error, LMRateLimitError):
                    self.limiter.rate_limited()
                if attempt >= self.policy.max_retries or not is_retryable(error):
                    self._usage.add(failed_calls=1)
                    raise
                with self._rng_lock:
                    pause = self.policy.delay(attempt, error, self._rng)
                logger.info("%s call failed (%s); retry %d in %.1fs", self.role, type(error).__name__,
                            attempt + 1, pause)
                self._usage.add(retries=1)
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _account(self, result: CallResult) -> None:
        usage = result.usage or {}
        input_tokens = int(usage.get("prompt_tokens") or 0)
        output_tokens = int(usage.get("completion_tokens") or 0)
        truncated = any(getattr(r, "finish_reason", None) == "length" for r in result.responses)
        if result.cache_hit:
            self._usage.add(cache_hits=1)
        else:
            cost = float(result.cost or 0.0)
            self._usage.add(calls=1, input_tokens=input_tokens, output_tokens=output_tokens, cost=cost)
            if self.budget is not None:
                self.budget.charge(input_tokens + output_tokens, cost)
        record_call(CallRecord(role=self.role, cached=result.cache_hit,
                               tokens=input_tokens + output_tokens, truncated=truncated))


def _sampling_seed(rollout_id: Any) -> int:
    """The sampling seed of a rollout: its id when it is a whole number, else a stable number made from it."""
    if rollout_id is None:
        return 0
    if isinstance(rollout_id, int):
        return rollout_id
    return zlib.crc32(str(rollout_id).encode())


def _is_empty(result: CallResult) -> bool:
    """A 200 answer without any content and without usage: a garbage body, not a completion."""
    if result.usage:
        return False
    for response in result.responses:
        if getattr(response, "tool_calls", None) or (getattr(response, "text", "") or "").strip():
            return False
    return True
