"""Evaluation inside a compile: the trajectory S_t, and failure rates on the development set D.

Both run the evolver under the evol LM in threads. A candidate is a method with its demonstrations
(:class:`~autoevol.programs.demonstration.Candidate`). Failure rates are paired: every candidate is
measured on the same dev items, and an item whose measurement ended in an LM error (after the
LM's own retries and one more try of the whole item) or a judge abstention is left out of every
method's rate rather than counted as a failure of one method.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import dspy

from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.rate import ItemOutcome, Program, evaluate_item, evaluate_items, summarize
from autoevol.optimizers.auto_evol.measurements import Measurement, MeasurementLog, Split
from autoevol.optimizers.auto_evol.records import MethodScore, TrajectoryCase
from autoevol.optimizers.auto_evol.roles import evol_notes_limit
from autoevol.programs.demonstration import Candidate
from autoevol.programs.evolver import Evolver, Trajectory
from autoevol.programs.responder import Responder
from autoevol.records import UNMEASURED
from autoevol.threads import run_in_threads

logger = logging.getLogger(__name__)

#: Whole-item tries of a dev measurement before the item is left out (the LM retries each call too).
ITEM_TRIES = 2


@dataclass(frozen=True)
class Item:
    """One distinct instruction of the training pool or the development set."""

    id: str
    text: str


@dataclass
class EvolRole:
    """What evolving and judging need: the evol LM, the detector, threads, one Evolver per candidate."""

    evol_lm: dspy.LM
    detector: FailureDetector
    num_threads: int
    answer_max_tokens: int | None = None

    def __post_init__(self) -> None:
        self.responder = Responder(max_tokens=self.answer_max_tokens)
        self._evolvers: dict[str, Evolver] = {}

    def evolver(self, candidate: Candidate) -> Evolver:
        """An Evolver following ``candidate``'s method and showing its demonstrations (one per candidate)."""
        key = candidate.fingerprint
        if key not in self._evolvers:
            self._evolvers[key] = Evolver(candidate.method, demos=candidate.demos)
        return self._evolvers[key]

    def evaluate(self, instruction: str, candidate: Candidate) -> ItemOutcome:
        """Evolve once with ``candidate``, answer and judge (:func:`~autoevol.metrics.rate.evaluate_item`)."""
        return evaluate_item(instruction, self.evolver(candidate), responder=self.responder, detector=self.detector)

    def evaluate_all(self, tasks: Sequence[tuple[Program, str]], on_done: Callable[[int], None] | None = None,
                     on_outcome: Callable[[int, ItemOutcome], None] | None = None) -> list[ItemOutcome]:
        """Every ``(evolving program, instruction)`` evolved, answered and judged in threads, under the
        evol LM (:func:`~autoevol.metrics.rate.evaluate_items`); an item that ends in an LM error
        gets ``ITEM_TRIES`` tries in all."""
        with dspy.context(lm=self.evol_lm):
            return evaluate_items(tasks, responder=self.responder, detector=self.detector, num_threads=self.num_threads,
                                  tries=ITEM_TRIES, on_done=on_done, on_outcome=on_outcome)

    def run(self, work: Callable, tasks: Sequence, on_done: Callable[[int], None] | None = None) -> list:
        """``work`` on every task in threads, under the evol LM."""
        with dspy.context(lm=self.evol_lm):
            return run_in_threads(work, list(tasks), self.num_threads, on_done)


# ---------------------------------------------------------------------------------- trajectory


def evolve_trajectory(role: EvolRole, candidate: Candidate, batch: Sequence[Item], rounds: int, *, answers: bool,
                      on_done: Callable[[int], None] | None = None) -> list[TrajectoryCase]:
    """S_t: every item evolved ``rounds`` times in a row with ``candidate`` (:meth:`Evolver.trajectory`).

    Each stage is checked by the detector's evolution rules. With ``answers`` the last stage is
    also answered and judged by every rule (the answer rules and the judge included), so the
    analysis sees how the evol LM reacted to it.
    """
    evolver = role.evolver(candidate)  # built here, not concurrently in the worker threads
    notes_limit = evol_notes_limit(role.evol_lm)

    def evaluate_last(instruction: str) -> ItemOutcome:
        return role.evaluate(instruction, candidate)

    def evolve_case(numbered: tuple[int, Item]) -> TrajectoryCase:
        number, item = numbered
        trajectory = evolver.trajectory(item.text, rounds, detector=role.detector,
                                        evaluate_last=evaluate_last if answers else None)
        return _case(str(number), item, trajectory, notes_limit)

    return role.run(evolve_case, list(enumerate(batch, start=1)), on_done)


def _case(case_id: str, item: Item, trajectory: Trajectory, notes_limit: int | None) -> TrajectoryCase:
    verdict = trajectory.verdict
    description = "passed" if not verdict.failed else f"failed ({verdict.rule}): {verdict.reason}"
    return TrajectoryCase(case_id=case_id, item_id=item.id, stages=trajectory.stages, notes=trajectory.notes,
                          notes_limit=notes_limit, answer=trajectory.answer, failed=verdict.failed, rule=verdict.rule,
                          verdict=description)


# ---------------------------------------------------------------------------------- development set


class DevEvaluator:
    """Failure outcomes of candidates on a fixed list of items (the dev set, or the confirmation
    split); each (candidate, item) is evaluated at most once.

    ``excluded`` starts from the positions an earlier run of the same compile left out, so a
    resumed compile measures every method on the same items as the records it continues. With a
    measurement ``log``, every finished measurement of ``split`` is written to it as it finishes,
    and those an earlier run logged are not measured again.
    """

    def __init__(self, role: EvolRole, dev: Sequence[Item], excluded: Iterable[int] = (), *,
                 log: MeasurementLog | None = None, split: Split = "dev") -> None:
        self.role = role
        self.dev = list(dev)
        self.excluded: set[int] = set(excluded)
        self.log, self.split = log, split
        recorded = log.recorded(split) if log is not None else {}
        self._outcomes: dict[tuple[str, int], ItemOutcome] = {
            (key, index): ItemOutcome(original=self.dev[index].text, verdict=verdict)
            for (key, index), verdict in recorded.items()}

    def failures(self, candidates: Mapping[int, Candidate], start: int, stop: int,
                 on_planned: Callable[[int], None], on_done: Callable[[int], None]) -> dict[int, list[bool]]:
        """Whether each dev item in ``start:stop`` failed, for every candidate (paired: same items).

        Items left out after LM errors count as passed for every candidate, so they never decide a
        paired comparison; :meth:`score` leaves them out of the rates.
        """
        by_key = {candidate.fingerprint: candidate for candidate in candidates.values()}
        todo = sorted({(key, index) for key in by_key for index in range(start, stop)
                       if (key, index) not in self._outcomes})
        on_planned(len(todo))
        tasks = [(self.role.evolver(by_key[key]), self.dev[index].text) for key, index in todo]

        def record(position: int, outcome: ItemOutcome) -> None:
            key, index = todo[position]
            if self.log is not None and outcome.verdict.rule not in UNMEASURED:  # those get another try
                self.log.append(Measurement(split=self.split, method=key, position=index, item=self.dev[index].id,
                                            verdict=outcome.verdict))

        for (key, index), outcome in zip(todo, self.role.evaluate_all(tasks, on_done, record)):
            self._outcomes[(key, index)] = outcome
            if outcome.verdict.rule in UNMEASURED and index not in self.excluded:
                logger.warning("item %s is left out of every method's failure rate (%s): %s",
                               self.dev[index].id, outcome.verdict.rule, outcome.verdict.reason)
                self.excluded.add(index)
        return {name: [self._failed(candidate.fingerprint, index) for index in range(start, stop)]
                for name, candidate in candidates.items()}

    def _failed(self, key: str, index: int) -> bool:
        return index not in self.excluded and self._outcomes[(key, index)].verdict.failed

    def flags(self, candidate: Candidate, measured: int) -> list[bool]:
        """Whether ``candidate`` failed each of the first ``measured`` items that were not left out."""
        return [self._failed(candidate.fingerprint, index) for index in range(measured) if index not in self.excluded]

    def score(self, candidate: Candidate, measured: int) -> MethodScore:
        """The failure rate of ``candidate`` on the first ``measured`` dev items that were not left out."""
        key = candidate.fingerprint
        rate = summarize([self._outcomes[(key, index)] for index in range(measured) if index not in self.excluded])
        return MethodScore(method=candidate.method, demos=candidate.demos,
                           failure_rate=rate.rate, failed=rate.failed, evaluated=rate.total, by_rule=rate.by_rule)

    def excluded_items(self) -> list[int]:
        """Dev item positions left out so far, in order."""
        return sorted(self.excluded)
