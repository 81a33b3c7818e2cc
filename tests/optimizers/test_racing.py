"""Candidate racing: the sign test, the elimination rule, the looks, and whole races."""

from __future__ import annotations

import math
import random

import pytest

from autoevol.optimizers.auto_evol.racing import (
    DEFAULT_LOOKS,
    elimination_reason,
    look_points,
    race,
)
from autoevol.optimizers.auto_evol.selection import sign_test_p_value


class CountingMeasure:
    """Serves fixed failure flags and counts the (method, item) pairs it was asked for."""

    def __init__(self, flags: dict[str, list[bool]]) -> None:
        self.flags = flags
        self.measured: dict[str, int] = {key: 0 for key in flags}
        self.requests: list[tuple[tuple[str, ...], int, int]] = []

    def __call__(self, keys, start, stop):
        self.requests.append((tuple(keys), start, stop))
        for key in keys:
            self.measured[key] += stop - start
        return {key: self.flags[key][start:stop] for key in keys}


def flags_with_rate(failures: int, total: int) -> list[bool]:
    return [index < failures for index in range(total)]


def test_sign_test_p_value_matches_the_binomial_tail():
    assert sign_test_p_value(0, 0) == 1.0
    assert sign_test_p_value(5, 0) == pytest.approx(1 / 32)
    assert sign_test_p_value(0, 5) == 1.0
    expected = sum(math.comb(10, k) for k in range(8, 11)) / 2**10
    assert sign_test_p_value(8, 2) == pytest.approx(expected)
    with pytest.raises(ValueError):
        sign_test_p_value(-1, 2)


def test_elimination_needs_evidence_that_the_method_is_worse():
    leader = [False] * 10
    assert elimination_reason([False] * 10, leader, 50, alpha=0.1) is None
    assert elimination_reason([True] * 2 + [False] * 8, leader, 50, alpha=0.1) is None  # p = 0.25
    reason = elimination_reason([True] * 6 + [False] * 4, leader, 50, alpha=0.1)
    assert reason and "sign test" in reason
    # concordant failures carry no evidence: both fail the same items
    assert elimination_reason([True] * 6 + [False] * 4, [True] * 6 + [False] * 4, 50, alpha=0.1) is None


def test_a_method_that_cannot_catch_up_is_dropped_whatever_alpha():
    leader = [False] * 45
    reason = elimination_reason([True] * 6 + [False] * 39, leader, 50, alpha=1e-9)
    assert reason and "cannot catch up" in reason
    assert elimination_reason([True] * 5 + [False] * 40, leader, 50, alpha=1e-9) is None  # a tie is reachable
    with pytest.raises(ValueError):
        elimination_reason([True], [True, False], 10, alpha=0.1)


def test_look_points_are_prefixes_ending_with_the_whole_set():
    assert look_points(50, DEFAULT_LOOKS) == [10, 20, 30, 40, 50]
    assert look_points(50, ()) == [50]
    assert look_points(4, (0.2, 0.4, 0.6, 0.8)) == [1, 2, 3, 4]
    assert look_points(1, (0.5,)) == [1]


def test_race_drops_clearly_worse_methods_early_and_keeps_the_best():
    total = 50
    flags = {
        "incumbent": flags_with_rate(30, total),
        "bad": flags_with_rate(45, total),
        "good": flags_with_rate(5, total),
        "close": flags_with_rate(7, total),
    }
    measure = CountingMeasure(flags)
    result = race(list(flags), measure, total, protected=["incumbent"])
    assert result.best(list(flags)) == "good"
    assert "bad" in result.dropped and "good" not in result.dropped and "incumbent" not in result.dropped
    assert measure.measured["bad"] < total and measure.measured["good"] == total
    assert result.measured("bad") == measure.measured["bad"] and result.failed("good") == 5
    assert set(result.survivors) == set(flags) - set(result.dropped)
    starts = [start for _, start, _ in measure.requests]
    assert starts == sorted(starts) and measure.requests[-1][2] == total


def test_without_looks_every_method_is_measured_on_every_item():
    flags = {"a": flags_with_rate(40, 50), "b": flags_with_rate(2, 50)}
    measure = CountingMeasure(flags)
    result = race(["a", "b"], measure, 50, looks=())
    assert result.dropped == {} and measure.measured == {"a": 50, "b": 50}
    assert result.best(["a", "b"]) == "b"


def test_ties_go_to_the_earliest_key():
    flags = {"incumbent": flags_with_rate(10, 20), "candidate": flags_with_rate(10, 20)[::-1]}
    result = race(list(flags), CountingMeasure(flags), 20, looks=())
    assert result.best(["incumbent", "candidate"]) == "incumbent"
    assert result.best(["candidate", "incumbent"]) == "candidate"


def test_race_refuses_duplicate_keys():
    with pytest.raises(ValueError):
        race(["a", "a"], CountingMeasure({"a": [False]}), 1)


def test_racing_agrees_with_full_measurement_on_random_steps():
    rng = random.Random(7)
    agree = saved = 0
    trials = 200
    for _ in range(trials):
        total = 50
        rates = [rng.uniform(0.05, 0.9) for _ in range(5)]
        flags = {f"m{j}": [rng.random() < rate for _ in range(total)] for j, rate in enumerate(rates)}
        keys = list(flags)
        full = race(keys, CountingMeasure(flags), total, looks=())
        measure = CountingMeasure(flags)
        raced = race(keys, measure, total, protected=["m0"])
        agree += full.best(keys) == raced.best(keys)
        saved += 5 * total - sum(measure.measured.values())
    assert agree / trials >= 0.95
    assert saved / trials > 0.25 * 5 * 50
