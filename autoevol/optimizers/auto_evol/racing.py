"""Candidate racing: stop measuring candidates that can no longer beat the best one.

All methods of a step are measured on the same development items, in the same order (a paired
comparison). After each *look* (a prefix of the items: by default 20%, 40%, 60% and 80% of them)
every method is compared with the current leader, the method with the fewest failures so far, on
the items both have seen. A method is dropped when

* it cannot catch up any more: even if it passed every remaining item and the leader failed every
  one, it would still have more failures; or
* a one-sided exact sign test on the discordant items (McNemar's test) says, at significance
  ``alpha``, that it fails more often than the leader: under "it is at least as good", the number of
  items it failed while the leader passed is at most Binomial(discordant, 1/2); or
* with a ``reference`` (the incumbent) and an acceptance ``level``: it can no longer be accepted,
  because even if it passed every remaining item its advantage over the reference would not be
  significant at ``level`` (the test of :mod:`~autoevol.optimizers.auto_evol.selection`). The reference is
  measured on every item first (in a compile its outcomes are already known), so this bound is
  exact and drops only candidates that could never win.

The survivors are measured on the rest of the items. Everything here is pure: the evaluation is a
callback, so the same code runs in :class:`~autoevol.optimizers.AutoEvolInstruct` and in the
benchmark's simulation.

Example:
    >>> outcomes = {"a": [True] * 10, "b": [False] * 10}
    >>> def measure(keys, start, stop):
    ...     return {key: outcomes[key][start:stop] for key in keys}
    >>> result = race(["a", "b"], measure, 10, looks=(0.4,), alpha=0.1)
    >>> result.best(["a", "b"]), sorted(result.dropped)
    ('b', ['a'])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from autoevol.optimizers.auto_evol.selection import compare

K = TypeVar("K", bound=Hashable)

#: Default looks, as fractions of the development set: a first slice of 20%, then every 20%.
DEFAULT_LOOKS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
#: Default significance of the sign test that drops a method against the leader. The leader is the
#: luckiest method so far, so a loose level drops truly better methods: in ``benchmarks/selection.py``
#: (one candidate in three 20 points better, dev 50) 0.2 found it in 15 of 20 compiles against 16 of
#: 20 without racing; 0.05 found it as often as no racing.
DEFAULT_ALPHA = 0.05

#: ``measure(keys, start, stop)`` returns, for every key, whether each item in ``start:stop`` failed.
Measure = Callable[[Sequence[K], int, int], Mapping[K, Sequence[bool]]]


def elimination_reason(method: Sequence[bool], leader: Sequence[bool], total: int, alpha: float) -> str | None:
    """Why ``method`` can be dropped against ``leader``, or ``None`` to keep measuring it.

    Both sequences are failure flags on the same items (the first ``len(method)`` items of ``total``).
    """
    leader_ahead = compare(leader, method, level=alpha)  # the leader's advantage over the method
    seen, worse, better = len(method), leader_ahead.reference_only, leader_ahead.challenger_only
    remaining = total - seen
    if worse - better > remaining:
        return (f"cannot catch up: {worse - better} more failures than the leader "
                f"with {remaining} items left")
    if remaining > 0 and leader_ahead.p_value < alpha:
        return (f"worse than the leader after {seen} items: failed {worse} items it passed, "
                f"passed {better} it failed (sign test p={leader_ahead.p_value:.3f} < {alpha})")
    return None


def look_points(total: int, looks: Sequence[float]) -> list[int]:
    """Item counts at which methods are compared: each fraction of ``total``, then ``total``."""
    if total < 0:
        raise ValueError("total must be non-negative")
    points = sorted({min(total, max(1, math.ceil(fraction * total))) for fraction in looks if 0 < fraction < 1})
    return [point for point in points if point < total] + [total]


@dataclass
class RaceResult(Generic[K]):
    """What a race measured.

    Attributes:
        failures: per method, the failure flags of the items it was measured on (a prefix).
        dropped: per dropped method, why it was dropped.
        total: the number of items of a full measurement.
    """

    failures: dict[K, list[bool]] = field(default_factory=dict)
    dropped: dict[K, str] = field(default_factory=dict)
    total: int = 0

    def failed(self, key: K) -> int:
        """Failures of ``key`` on the items it was measured on."""
        return sum(self.failures.get(key, []))

    def measured(self, key: K) -> int:
        """Items ``key`` was measured on."""
        return len(self.failures.get(key, []))

    @property
    def survivors(self) -> list[K]:
        """Methods measured on every item, in the order they entered the race."""
        return [key for key in self.failures if key not in self.dropped]

    def best(self, order: Sequence[K]) -> K:
        """The survivor with the fewest failures; ties go to the one earliest in ``order``."""
        rank = {key: position for position, key in enumerate(order)}
        candidates = [key for key in self.survivors if key in rank]
        if not candidates:
            raise ValueError("no surviving method in the given order")
        return min(candidates, key=lambda key: (self.failed(key), rank[key]))


def race(
    keys: Sequence[K],
    measure: Measure[K],
    total: int,
    *,
    looks: Sequence[float] = DEFAULT_LOOKS,
    alpha: float = DEFAULT_ALPHA,
    protected: Collection[K] = (),
    reference: K | None = None,
    level: float | None = None,
) -> RaceResult[K]:
    """Measure ``keys`` on ``total`` items, dropping those that cannot beat the leader.

    Args:
        keys: the methods to compare, in order of preference on ties (e.g. the incumbent first).
        measure: ``measure(keys, start, stop)`` returns the failure flags of items ``start:stop``.
        total: the number of items.
        looks: fractions of ``total`` after which methods are compared; ``()`` measures every
            method on every item (no racing).
        alpha: significance of the sign test that drops a method.
        protected: methods never dropped (e.g. the incumbent, whose measurement is free).
        reference: with ``level``, the method a candidate must beat to be accepted (protected,
            measured on every item before the race); a method that can no longer beat it at
            ``level`` is dropped.
        level: the acceptance level of the paired test against ``reference``.

    Returns:
        A :class:`RaceResult`; ``result.best(keys)`` is the selection.
    """
    if len(set(keys)) != len(keys):
        raise ValueError("race keys must be distinct")
    result: RaceResult[K] = RaceResult(failures={key: [] for key in keys}, total=total)
    known: list[bool] = []
    if reference is not None and level is not None and looks:
        known = [bool(flag) for flag in measure([reference], 0, total)[reference]]
        protected = {*protected, reference}
    start = 0
    for stop in look_points(total, looks):
        running = [key for key in keys if key not in result.dropped]
        if stop > start and running:
            flags = measure(running, start, stop)
            for key in running:
                result.failures[key].extend(bool(flag) for flag in flags[key])
        start = stop
        if stop < total:
            _drop_hopeless(result, running, stop, alpha, protected)
            if known:
                _drop_unacceptable(result, running, known, level, protected)  # type: ignore[arg-type]
    return result


def unacceptable_reason(method: Sequence[bool], reference: Sequence[bool], level: float) -> str | None:
    """Why ``method`` (flags on a prefix of the items) can no longer beat ``reference`` (flags on
    every item) at ``level``, or ``None``: its best case is to pass every remaining item."""
    seen = len(method)
    best_case = compare([*method, *[False] * (len(reference) - seen)], reference, level=level)
    if best_case.supported:
        return None
    return (f"cannot be accepted any more: after {seen} items, even passing all {len(reference) - seen} left "
            f"it would win {best_case.reference_only} and lose {best_case.challenger_only} against the incumbent "
            f"(sign test p={best_case.p_value:.3f} > {level:.3g})")


def _drop_unacceptable(result: RaceResult[K], running: Sequence[K], reference: Sequence[bool], level: float,
                       protected: Collection[K]) -> None:
    for key in running:
        if key in protected or key in result.dropped:
            continue
        reason = unacceptable_reason(result.failures[key], reference, level)
        if reason is not None:
            result.dropped[key] = reason


def _drop_hopeless(result: RaceResult[K], running: Sequence[K], seen: int, alpha: float,
                   protected: Collection[K]) -> None:
    leader = min(running, key=lambda key: (result.failed(key), running.index(key)))
    for key in running:
        if key == leader or key in protected:
            continue
        reason = elimination_reason(result.failures[key], result.failures[leader], result.total, alpha)
        if reason is not None:
            result.dropped[key] = reason
