"""ManagedLM: cache, retries, rate limits, budgets and usage, with a scripted engine."""

from __future__ import annotations

import random
import time
from types import SimpleNamespace

import dspy
import pytest
from dspy.lm15 import AuthError, RateLimitError, ServerError

from autoevol.lm import AdaptiveLimiter, Budget, BudgetExceeded, CallCache, CallPolicy, LMSession, managed, observe_calls
from autoevol.testing.fake_openai import FakeOpenAIServer, FaultPlan
from autoevol.testing.scripted import scripted_lm

FAST = CallPolicy(max_retries=3, backoff_base=0.001, backoff_cap=0.01)


def echo(request):
    return {"answer": f"echo {request.inputs['question']}"}


def ask(lm, question: str = "hi") -> str:
    with dspy.context(lm=lm):
        return dspy.Predict("question -> answer")(question=question).answer


def test_cache_serves_repeated_requests_without_calling_the_model(tmp_path):
    cache = CallCache(tmp_path / "calls.sqlite")
    lm = scripted_lm(echo, call_cache=cache)
    assert ask(lm, "a") == "echo a"
    assert ask(lm, "a") == "echo a"
    assert ask(lm, "b") == "echo b"
    assert lm.engine.calls == 2
    assert (lm.usage.calls, lm.usage.cache_hits) == (2, 1)


def test_cache_persists_across_processes_worth_of_objects(tmp_path):
    path = tmp_path / "calls.sqlite"
    first = scripted_lm(echo, call_cache=CallCache(path))
    ask(first, "a")
    second = scripted_lm(echo, call_cache=CallCache(path))
    assert ask(second, "a") == "echo a"
    assert second.engine.calls == 0


@pytest.mark.parametrize("extra", [{}, {"extra_body": {"grammar": 'root ::= "x"'}},
                                   {"response_format": {"type": "json_object", "schema": {"type": "object"}}}],
                         ids=["plain", "grammar", "response_format"])
def test_cache_keeps_calls_that_dspy_routes_through_litellm(tmp_path, extra):
    # a grammar or a response_format sends the call through LiteLLM, whose result has outputs but
    # no native responses: a compile on llama.cpp made every constrained call again after a crash
    path = tmp_path / "calls.sqlite"
    messages = [{"role": "user", "content": "evolve this"}]
    with FakeOpenAIServer() as server:
        first = LMSession(call_cache=CallCache(path)).lm("openai/fake", role="evol", api_base=server.url)
        answer = first(messages=messages, **extra)
        second = LMSession(call_cache=CallCache(path)).lm("openai/fake", role="evol", api_base=server.url)
        assert second(messages=messages, **extra) == answer
        assert server.stats.requests == 1
    assert (second.usage.calls, second.usage.cache_hits) == (0, 1)


@pytest.mark.parametrize("extra", [{}, {"extra_body": {"grammar": 'root ::= "x"'}}], ids=["native", "litellm"])
def test_an_answer_without_usage_is_an_answer_not_a_garbage_body(extra):
    # some self-hosted servers send no usage object; a LiteLLM-routed result keeps its text in
    # outputs, not in native responses, and must not be taken for an empty 200
    with FakeOpenAIServer(report_usage=False, responder=lambda messages, body: "an evolved instruction") as server:
        lm = LMSession(policy=FAST).lm("openai/fake", role="evol", api_base=server.url)
        assert lm(messages=[{"role": "user", "content": "evolve this"}], **extra) == ["an evolved instruction"]
        assert server.stats.requests == 1
    assert (lm.usage.calls, lm.usage.retries, lm.usage.failed_calls) == (1, 0, 0)


def test_transient_errors_are_retried_then_succeed():
    failures = iter([ServerError("boom"), ServerError("boom again")])

    def flaky(request):
        error = next(failures, None)
        if error:
            raise error
        return echo(request)

    lm = scripted_lm(flaky, policy=FAST)
    assert ask(lm) == "echo hi"
    assert lm.engine.calls == 3
    assert lm.usage.retries == 2 and lm.usage.calls == 1


def test_permanent_errors_are_not_retried():
    def denied(request):
        raise AuthError("bad key")

    lm = scripted_lm(denied, policy=FAST)
    with pytest.raises(Exception):
        ask(lm)
    assert lm.engine.calls == 1
    assert lm.usage.failed_calls == 1


def test_retries_give_up_after_the_policy_limit():
    def down(request):
        raise ServerError("down")

    lm = scripted_lm(down, policy=FAST)
    with pytest.raises(Exception):
        ask(lm)
    assert lm.engine.calls == FAST.max_retries + 1


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses a ManagedLM takes between attempts of a call, in order (it still sleeps them).

    Only the ``time`` that autoevol.lm.managed sees is replaced: other threads sleep as before.
    """
    taken: list[float] = []

    def recorded_sleep(seconds: float) -> None:
        taken.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(managed, "time", SimpleNamespace(sleep=recorded_sleep))
    return taken


def test_rate_limit_halves_concurrency_and_honours_retry_after(pauses):
    hint = 0.4  # seconds; FAST's own backoff would retry after about 1 ms
    attempts = iter([RateLimitError("slow down", retry_after=hint)])
    seen: list[float] = []

    def limited(request):
        seen.append(time.monotonic())
        error = next(attempts, None)
        if error:
            raise error
        return echo(request)

    limiter = AdaptiveLimiter(8)
    lm = scripted_lm(limited, policy=CallPolicy(max_retries=3, backoff_base=0.001, backoff_cap=2.0), limiter=limiter)
    assert ask(lm) == "echo hi"
    assert limiter.limit == 4
    assert pauses == [hint]  # waited the hint, not the backoff
    assert len(seen) == 2 and seen[1] - seen[0] >= hint


def test_retry_after_is_read_from_the_http_header_and_honoured(pauses):
    hint = 1.5  # the fake server's Retry-After header, in seconds
    policy = CallPolicy(timeout=30, max_retries=2, backoff_base=0.001, backoff_cap=5.0)
    with FakeOpenAIServer(faults=FaultPlan(retry_after=hint), first_faults=["rate_limit_429"]) as server, \
            LMSession(concurrency=4, policy=policy) as session:
        lm = session.lm("openai/fake", role="evol", api_base=server.url, api_key="x")
        start = time.monotonic()
        assert lm("hello")  # one 429, then an answer
        waited = time.monotonic() - start
        assert server.stats.faults == {"rate_limit_429": 1} and server.stats.ok == 1
    assert lm.usage.retries == 1 and lm.usage.calls == 1
    assert pauses == [hint]  # without the header the retry would come after about 1 ms
    assert waited >= hint


def test_policy_delay_uses_retry_after_hint_and_jittered_backoff():
    policy = CallPolicy(backoff_base=1.0, backoff_cap=30.0)
    rng = random.Random(0)
    from dspy.utils.exceptions import LMRateLimitError, LMServerError

    hinted = LMRateLimitError("slow", model="m")
    hinted.retry_after = 7
    assert policy.delay(0, hinted, rng) == 7
    delays = [policy.delay(3, LMServerError("x", model="m"), rng) for _ in range(50)]
    assert all(4.0 <= d <= 12.0 for d in delays) and len(set(delays)) > 1


def test_limiter_grows_back_after_successes():
    limiter = AdaptiveLimiter(8, cooldown=0)
    limiter.rate_limited()
    limiter.rate_limited()
    assert limiter.limit == 2
    for _ in range(40):
        limiter.succeeded()
    assert limiter.limit == 8


def test_budget_stops_calls_at_the_limit():
    lm = scripted_lm(echo, budget=Budget(max_calls=2))
    ask(lm, "a")
    ask(lm, "b")
    with pytest.raises(BudgetExceeded, match="call budget of 2"):
        ask(lm, "c")
    assert lm.engine.calls == 2


def test_token_budget_counts_tokens():
    budget = Budget(max_tokens=1)
    lm = scripted_lm(echo, budget=budget)
    ask(lm, "a")
    assert budget.tokens > 1
    with pytest.raises(BudgetExceeded, match="token budget"):
        ask(lm, "b")


def test_time_budget_refuses_calls_once_its_time_is_up():
    lm = scripted_lm(echo, budget=Budget(max_seconds=3600))
    ask(lm, "a")  # an hour is far from over
    spent = scripted_lm(echo, budget=Budget(max_seconds=0))
    with pytest.raises(BudgetExceeded, match="time budget of 0 min reached"):
        ask(spent, "b")
    assert lm.engine.calls == 1 and spent.engine.calls == 0


def test_observe_calls_sees_calls_of_this_block_only(tmp_path):
    lm = scripted_lm(echo, call_cache=CallCache())
    ask(lm, "before")
    with observe_calls() as log:
        ask(lm, "x")
        ask(lm, "x")
    assert log.count(cached=False) == 1 and log.count(cached=True) == 1


def test_cache_key_ignores_connection_settings_but_not_content():
    from autoevol.lm.cache import request_key

    base = {"model": "hosted_vllm/m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0}
    first = request_key({**base, "api_base": "http://127.0.0.1:1111/v1", "api_key": "a", "timeout": 10})
    second = request_key({**base, "api_base": "http://127.0.0.1:2222/v1", "api_key": "b", "timeout": 99})
    assert first == second
    assert request_key({**base, "temperature": 0.6}) != request_key(base)
    assert request_key({**base, "rollout_id": 1}) != request_key(base)


def test_seeded_sampling_gives_each_sampled_rollout_its_own_seed_and_leaves_greedy_calls_alone():
    with FakeOpenAIServer(responder=lambda messages, body: f"seed={body.get('seed')}") as server:
        def lm(**settings):
            return managed.ManagedLM("openai/fake", api_base=server.url, api_key="not-needed", policy=FAST, **settings)

        sampled = lm(seeded_sampling=True, temperature=0.6)
        assert sampled("hi") == ["seed=0"]  # no rollout: seed 0, the same every time
        assert sampled("hi", rollout_id=3) == ["seed=3"]
        assert sampled.copy(rollout_id=4)("hi") == ["seed=4"]  # a copy keeps the setting
        named = sampled("hi", rollout_id="step-1/candidate-2")
        assert named == sampled("hi", rollout_id="step-1/candidate-2") != ["seed=0"]
        assert sampled("hi", seed=11) == ["seed=11"]  # a seed the caller gives wins
        grammar = {"extra_body": {"grammar": 'root ::= "x"'}}  # routed through LiteLLM: the seed goes along
        assert sampled("hi", rollout_id=5, **grammar) == ["seed=5"]
        assert lm(seeded_sampling=True, temperature=0.0)("hi") == ["seed=None"]  # greedy: no seed
        assert lm(temperature=0.6)("hi", rollout_id=3) == ["seed=None"]  # off by default
