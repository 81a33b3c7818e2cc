"""Paired bootstrap and evolver comparison on scripted LMs with known failure rates."""

from __future__ import annotations

import hashlib

import dspy
import numpy as np
import pytest

from autoevol.baselines import OPERATIONS, EvolInstructBaseline
from autoevol.lm import CallPolicy
from autoevol.metrics.compare import compare_evolvers, paired_bootstrap
from autoevol.programs.evolver import Evolver
from autoevol.testing.scripted import ScriptedRequest, scripted_lm

MARK = "Then list the assumptions you made."


def bucket(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % 100


def fails_under(method: str, instruction: str) -> bool:
    """Evolver "rate=P" fails an item when the item's hash bucket is below P (a known rate)."""
    percent = int(method.split("rate=")[1].split()[0])
    return bucket(instruction) < percent


def script(request: ScriptedRequest) -> dict[str, str]:
    if "evolved_instruction" in request.outputs:
        instruction = request.inputs["instruction"]
        tag = " [doomed]" if "rate=" in request.instructions and fails_under(request.instructions, instruction) else ""
        return {"working_notes": "plan", "evolved_instruction": f"{instruction} Explain each step and give two "
                                                                f"worked examples with numbers.{tag}"}
    evolved = next(iter(request.inputs.values()))
    if "[doomed]" in evolved:
        return {"answer": "Sure, could you please provide more details about what you need?"}
    return {"answer": "The result follows from adding the two numbers step by step; for example 2 and 3 "
                      "give 5, and 10 and 4 give 14, so each step is checked against a worked case."}


ITEMS = [f"Add {i} apples to {3 * i + 1} pears and report how many fruits there are in total." for i in range(400)]


def test_paired_bootstrap_known_cases() -> None:
    diff, low, high = paired_bootstrap([False] * 50, [True] * 50)
    assert (diff, low, high) == (1.0, 1.0, 1.0)
    a = [i % 2 == 0 for i in range(200)]
    diff, low, high = paired_bootstrap(a, a)
    assert diff == low == high == 0.0
    with pytest.raises(ValueError):
        paired_bootstrap([True], [True, False])
    with pytest.raises(ValueError):
        paired_bootstrap([], [])


def test_paired_bootstrap_covers_the_truth_in_most_simulations() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(100):
        a = rng.random(300) < 0.3
        b = rng.random(300) < 0.2
        _, low, high = paired_bootstrap(a, b, n_boot=500, seed=trial)
        covered += low <= -0.1 <= high
    assert 88 <= covered <= 100  # nominal 95 %


def test_compare_interval_contains_the_true_difference() -> None:
    a, b = Evolver("Rewrite harder. rate=40 of items fail."), Evolver("Rewrite harder. rate=10 of items fail.")
    truth_a = np.mean([bucket(t) < 40 for t in ITEMS])
    truth_b = np.mean([bucket(t) < 10 for t in ITEMS])
    with dspy.context(lm=scripted_lm(script)):
        result = compare_evolvers({"a": a, "b": b}, ITEMS, num_threads=8, quality=False)
    assert result.rates["a"].rate == pytest.approx(truth_a)
    assert result.rates["b"].rate == pytest.approx(truth_b)
    assert set(result.rates["a"].by_rule) <= {"loss_of_key_information", "insufficient_qualification"}
    (difference,) = result.differences
    true_diff = truth_b - truth_a
    assert difference.diff == pytest.approx(true_diff)
    assert difference.low <= true_diff <= difference.high
    assert difference.high < 0 and difference.significant
    assert result.quality == {"a": None, "b": None}


def test_compare_equal_evolvers_interval_contains_zero_and_quality_is_measured() -> None:
    from tests.metrics.test_quality import HashingEmbedder

    a, b = Evolver("Rewrite harder. rate=20 of items fail."), Evolver("Harder please. rate=20 of items fail.")
    with dspy.context(lm=scripted_lm(script)):
        result = compare_evolvers({"a": a, "b": b}, ITEMS[:60], num_threads=4, embedder=HashingEmbedder())
    (difference,) = result.differences
    assert difference.diff == 0.0 and difference.low <= 0.0 <= difference.high
    assert result.seed_quality is not None and result.seed_quality.n == 60
    report = result.quality["a"]
    assert report is not None and report.n == 60 - result.rates["a"].failed
    assert report.length.words_mean > result.seed_quality.length.words_mean
    assert "items" in result.summary() and result.summary()["evolvers"]["b"]["quality"]


def test_baseline_picks_a_stable_operation_and_evolves_like_an_evolver() -> None:
    baseline = EvolInstructBaseline(seed=3)
    picks = {baseline.operation_for(t) for t in ITEMS[:200]}
    assert picks == set(OPERATIONS)  # every operation is used
    assert all(baseline.operation_for(t) == EvolInstructBaseline(seed=3).operation_for(t) for t in ITEMS[:50])
    assert baseline.fingerprint != EvolInstructBaseline(seed=4).fingerprint
    seen: list[str] = []

    def spy(request: ScriptedRequest) -> dict[str, str]:
        seen.append(request.instructions)
        return script(request)

    with dspy.context(lm=scripted_lm(spy)):
        prediction = baseline(instruction=ITEMS[0])
    assert prediction.evolved_instruction.startswith(ITEMS[0])
    assert prediction.operation == baseline.operation_for(ITEMS[0])
    assert OPERATIONS[prediction.operation] in seen[0]


def test_items_whose_measurement_failed_are_left_out_and_listed_not_counted_against_one_evolver() -> None:
    broken = set(ITEMS[:5])

    def flaky(request: ScriptedRequest) -> dict[str, str]:
        # evolver "rate=0" hits an LM error on five items: they leave both rates and are listed
        if "evolved_instruction" in request.outputs and "rate=0" in request.instructions \
                and request.inputs["instruction"] in broken:
            raise RuntimeError("the endpoint dropped the connection")
        return script(request)

    lm = scripted_lm(flaky, cache=False, policy=CallPolicy(max_retries=0))
    evolvers = {"reference": Evolver("Rewrite it. rate=40 tag."), "other": Evolver("Rewrite it. rate=0 tag.")}
    with dspy.context(lm=lm):
        result = compare_evolvers(evolvers, ITEMS[:40], quality=False)
    assert result.items == 35 and [item.index for item in result.left_out] == [0, 1, 2, 3, 4]
    assert all(set(item.reasons) == {"other"} and item.reasons["other"].startswith("lm_error") for item in result.left_out)
    assert "lm_error" not in result.rates["other"].by_rule and result.rates["other"].total == 35
    assert result.rates["reference"].total == 35 and result.differences[0].n == 35
    assert result.summary()["left_out"][0]["index"] == 0
