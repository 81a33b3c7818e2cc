"""Evaluation inside a compile: the trajectory S_t, and failure rates on the development set D.

Both run the evolver under the evol LM in threads. Failure rates are paired: every method is
measured on the same dev items, and an item whose measurement ended in an LM error (after the
LM's own retries and one more try of the whole item) is left out of every method's rate rather
than counted as a failure of one method.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import dspy

from autoevol.lm.policy import BudgetExceeded, is_permanent
from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.rate import ItemOutcome, describe_error, evaluate_item, run_program
from autoevol.optimizers.history import MethodScore, TrajectoryCase
from autoevol.programs.evolver import Evolver
from autoevol.programs.responder import Responder
from autoevol.records import LM_ERROR, Verdict, fingerprint
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
    """What evolving and judging need: the evol LM, the detector, threads, one Evolver per method."""

    evol_lm: dspy.LM
    detector: FailureDetector
    num_threads: int
    answer_max_tokens: int | None = None

    def __post_init__(self) -> None:
        self.responder = Responder(max_tokens=self.answer_max_tokens)
        self._evolvers: dict[str, Evolver] = {}

    def evolver(self, method: str) -> Evolver:
        """An Evolver following ``method`` (one per distinct method)."""
        if method not in self._evolvers:
            self._evolvers[method] = Evolver(method)
        return self._evolvers[method]

    def evaluate(self, instruction: str, method: str) -> ItemOutcome:
        """Evolve once, answer and judge; a detector or adapter fault fails the item."""
        try:
            return evaluate_item(instruction, self.evolver(method), responder=self.responder,
                                 detector=self.detector)
        except BudgetExceeded:
            raise
        except Exception as error:
            if is_permanent(error):
                raise
            return ItemOutcome(original=instruction, verdict=Verdict.failure(LM_ERROR, describe_error(error)))

    def run(self, work: Callable, tasks: Sequence, on_done: Callable[[int], None] | None = None) -> list:
        """``work`` on every task in threads, under the evol LM."""
        with dspy.context(lm=self.evol_lm):
            return run_in_threads(work, list(tasks), self.num_threads, on_done)


# ---------------------------------------------------------------------------------- trajectory


def evolve_trajectory(role: EvolRole, method: str, batch: Sequence[Item], rounds: int, *, answers: bool,
                      on_done: Callable[[int], None] | None = None) -> list[TrajectoryCase]:
    """S_t: every item evolved ``rounds`` times in a row with ``method``, stage 0 the original.

    With ``answers`` the last stage is also answered and judged by every rule (the answer rules
    and the judge included), so the analysis sees how the evol LM reacted to it.
    """
    def evolve_case(numbered: tuple[int, Item]) -> TrajectoryCase:
        number, item = numbered
        return _evolve_case(role, str(number), item, method, rounds, answers)

    return role.run(evolve_case, list(enumerate(batch, start=1)), on_done)


def _evolve_case(role: EvolRole, case_id: str, item: Item, method: str, rounds: int,
                 answers: bool) -> TrajectoryCase:
    stages, notes = [item.text], []
    evolver = role.evolver(method)
    for round_number in range(1, rounds + 1):
        if round_number == rounds and answers:
            outcome = role.evaluate(stages[-1], method)
            if outcome.evolved is not None:
                stages.append(outcome.evolved)
                notes.append(outcome.notes or "")
            return _case(case_id, item, stages, notes, outcome.verdict, outcome.answer)
        predictions: list[dspy.Prediction] = []

        def evolve(instruction: str) -> dspy.Prediction:
            predictions.append(evolver(instruction=instruction))
            return predictions[-1]

        evolved, problem = run_program(evolve, "evolution", stages[-1], "evolved_instruction")
        if problem is not None:
            return _case(case_id, item, stages, notes, problem, None)
        stages.append(evolved)
        notes.append(str(getattr(predictions[-1], "working_notes", "") or ""))
        verdict = role.detector.detect_evolution(stages[-2], evolved)
        if verdict is not None and verdict.failed:
            return _case(case_id, item, stages, notes, verdict, None)
    return _case(case_id, item, stages, notes, Verdict.passed(), None)


def _case(case_id: str, item: Item, stages: list[str], notes: list[str], verdict: Verdict,
          answer: str | None) -> TrajectoryCase:
    description = "passed" if not verdict.failed else f"failed ({verdict.rule}): {verdict.reason}"
    return TrajectoryCase(case_id=case_id, item_id=item.id, stages=stages, notes=notes, answer=answer,
                          failed=verdict.failed, rule=verdict.rule, verdict=description)


# ---------------------------------------------------------------------------------- development set


class DevEvaluator:
    """Failure outcomes of methods on the dev items; each (method, item) is evaluated at most once."""

    def __init__(self, role: EvolRole, dev: Sequence[Item]) -> None:
        self.role = role
        self.dev = list(dev)
        self._outcomes: dict[tuple[str, int], ItemOutcome] = {}
        self.excluded: set[int] = set()

    def failures(self, methods: Mapping[int, str], start: int, stop: int,
                 on_planned: Callable[[int], None], on_done: Callable[[int], None]) -> dict[int, list[bool]]:
        """Whether each dev item in ``start:stop`` failed, for every method (paired: same items).

        Items left out after LM errors count as passed for every method, so they never decide a
        paired comparison; :meth:`score` leaves them out of the rates.
        """
        todo = sorted({(method, index) for method in methods.values() for index in range(start, stop)
                       if (fingerprint(method), index) not in self._outcomes})
        on_planned(len(todo))
        for method in methods.values():
            self.role.evolver(method)  # built here, not concurrently in the worker threads

        def evaluate(task: tuple[str, int]) -> ItemOutcome:
            method, index = task
            outcome = self.role.evaluate(self.dev[index].text, method)
            for _ in range(ITEM_TRIES - 1):
                if outcome.verdict.rule != LM_ERROR:
                    break
                outcome = self.role.evaluate(self.dev[index].text, method)
            return outcome

        for (method, index), outcome in zip(todo, self.role.run(evaluate, todo, on_done)):
            self._outcomes[(fingerprint(method), index)] = outcome
            if outcome.verdict.rule == LM_ERROR and index not in self.excluded:
                logger.warning("dev item %s is left out of every method's failure rate: %s",
                               self.dev[index].id, outcome.verdict.reason)
                self.excluded.add(index)
        return {key: [self._failed(method, index) for index in range(start, stop)] for key, method in methods.items()}

    def _failed(self, method: str, index: int) -> bool:
        return index not in self.excluded and self._outcomes[(fingerprint(method), index)].verdict.failed

    def score(self, method: str, measured: int) -> MethodScore:
        """The failure rate of ``method`` on the first ``measured`` dev items that were not left out."""
        key = fingerprint(method)
        kept = [index for index in range(measured) if index not in self.excluded]
        failed = [self._outcomes[(key, index)] for index in kept if self._failed(method, index)]
        by_rule: dict[str, int] = {}
        for outcome in failed:
            rule = outcome.verdict.rule or "unknown"
            by_rule[rule] = by_rule.get(rule, 0) + 1
        return MethodScore(method=method, fingerprint=key, failure_rate=len(failed) / len(kept) if kept else 0.0,
                           failed=len(failed), evaluated=len(kept), by_rule=by_rule)

    def excluded_items(self) -> list[int]:
        """Dev item positions left out so far, in order."""
        return sorted(self.excluded)
