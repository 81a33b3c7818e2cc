"""An evolve job against a fake OpenAI server that injects 500s, 429s, timeouts, drops and garbage."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest
from dspy.utils.exceptions import LMRateLimitError

from autoevol.data import read_rows
from autoevol.lm import CallPolicy, LMSession
from autoevol.programs.evolver import Evolver
from autoevol.programs.pipeline import EvolveJob
from autoevol.testing.fake_openai import FakeOpenAIServer, FaultPlan, serve_in_subprocess

ROWS = 300
RETRIES = 2
CALLS_PER_ROW = 2  # evolve + answer


def test_every_row_is_accounted_for_within_the_retry_budget(tmp_path: Path):
    data = tmp_path / "seed.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "instruction": f"Compute {i} squared and explain."}) + "\n"
                            for i in range(ROWS)))
    # Hangs last three times the client's timeout; the server runs in its own process, so a loaded
    # machine slows it without making the client's 16 threads and the server share one GIL.
    faults = FaultPlan(error_500=0.06, rate_limit_429=0.06, retry_after=0.02, timeout=0.03, hang_seconds=6.0,
                       drop=0.06, garbage=0.06)
    policy = CallPolicy(timeout=2.0, max_retries=RETRIES, backoff_base=0.005, backoff_cap=0.02)
    with serve_in_subprocess(faults=faults, seed=7) as server, \
            LMSession(concurrency=16, policy=policy) as session:
        lm = session.lm("openai/fake", role="evol", api_base=server.url, api_key="x", max_tokens=256)
        with dspy.context(lm=lm):
            summary = EvolveJob(Evolver(), concurrency=16, evol_model="fake").run(data, tmp_path / "out.jsonl")
        stats = server.stats()
    rows = list(read_rows(tmp_path / "out.jsonl"))
    assert sorted(row["id"] for row in rows) == sorted(f"r{i}:r1" for i in range(ROWS))
    for row in rows:
        assert row["failed"] is False or (row["rule"] and row["reason"]), row
    # ~27% of requests fault: most rows survive thanks to retries, a few give up as lm_error
    assert summary.evolved > 0.8 * ROWS
    assert set(summary.failed_by_rule) <= {"lm_error", "unparseable", "unchanged", "answers_instead",
                                           "prompt_leak", "truncated", "lost_question", "complexity_decreased"}
    lm_errors = [row for row in rows if row["rule"] == "lm_error"]
    assert all(row["reason"].startswith(("evolution:", "answer:")) for row in lm_errors)
    assert stats.requests <= ROWS * CALLS_PER_ROW * (1 + RETRIES)
    assert sum(stats.faults.values()) > 0.15 * stats.requests  # faults really were injected
    usage = lm.usage
    assert usage.retries > 0
    # every billed call is a completion the server sent; the server may also have completed calls
    # the client had already abandoned at its timeout (a loaded machine) and then retried
    assert usage.calls <= stats.ok <= usage.calls + usage.retries


def test_rate_limits_lower_concurrency_then_it_recovers():
    policy = CallPolicy(timeout=30, max_retries=6, backoff_base=0.001, backoff_cap=0.01)
    with FakeOpenAIServer(faults=FaultPlan(rate_limit_429=1.0, retry_after=0.01)) as server, \
            LMSession(concurrency=8, policy=policy) as session:
        lm = session.lm("openai/fake", role="evol", api_base=server.url, api_key="x")
        lm.limiter.cooldown = 0.0
        with pytest.raises(LMRateLimitError):  # every attempt was rate limited: the last 429 surfaces
            lm("hello")
        assert server.stats.faults == {"rate_limit_429": 1 + policy.max_retries}  # retried, then gave up
        assert server.stats.ok == 0
        assert lm.usage.retries == policy.max_retries and lm.usage.failed_calls == 1
        assert lm.limiter.limit < 8
        low = lm.limiter._limit
        for _ in range(20):
            lm.limiter.succeeded()
        assert lm.limiter._limit > low
