"""Demonstrations in a compile: where they come from, and the demonstration-set candidates of a step.

The evolver's second parameter, beside the method text, is the set of worked examples its
predictor shows the evol LM (``max_demos`` of them at most). They are drawn from the user's own
training pool, never from the development set:

* **observed**: a trajectory case whose evolution passed every rule, the answer rules and the
  judge included (the trajectory is answered whenever demonstrations are on);
* **teacher** (``teacher_demos``): for a trajectory case that failed, the optimizer LM rewrites the
  original with the current method; the rewrite counts only if the evol LM's answer to it passes
  every rule too.

Each step adds what it found to the pool (``StepRecord.new_demos``, so a resumed run rebuilds the
same pool) and proposes ``candidates`` new demonstration sets from it, each with the incumbent's
method: one of demonstrations not tried yet, one of those whose sets measured best so far, the
rest drawn at random with the seed. They are measured on the dev set with the method candidates, paired and
raced, so the selection decides between a better method and better demonstrations.

:func:`bootstrap_demos` gives any evolver demonstrations of its own successes without a compile.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence

import dspy

from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.rate import ItemOutcome, Program, evaluate_items
from autoevol.optimizers.auto_evol.evaluation import EvolRole, Item
from autoevol.optimizers.auto_evol.records import (
    CandidateRecord,
    MethodScore,
    StepRecord,
    TrajectoryCase,
)
from autoevol.metrics._text import normalize
from autoevol.optimizers.auto_evol.split import distinct, items_of
from autoevol.programs.demonstration import Candidate, Demo, DemoOrigin, demo_keys
from autoevol.programs.evolver import Evolver
from autoevol.records import SeedItem

logger = logging.getLogger(__name__)

#: Draws of one demonstration-set candidate before it gives up finding a set not tried yet.
DRAW_TRIES = 20


class DemoSearch:
    """The demonstration pool of one compile and the demonstration-set candidates of its steps.

    Args:
        max_demos: the most demonstrations a candidate carries (0 turns demonstrations off).
        candidates: demonstration sets proposed per step.
        teacher: also let the optimizer LM rewrite failed trajectory cases (``teacher_demos``).
        dev: the development items; no demonstration may show one of them.
        seed: seeds the draws (replayable).
    """

    def __init__(self, *, max_demos: int, candidates: int, teacher: bool, dev: Sequence[Item], seed: int) -> None:
        self.max_demos, self.candidates, self.teacher, self.seed = max_demos, candidates, teacher, seed
        self._dev = {normalize(item.text) for item in dev}
        self.pool: list[Demo] = []
        self._seen: set[str] = set()
        self._tried: set[frozenset[str]] = set()

    @property
    def enabled(self) -> bool:
        """Whether the compile chooses demonstrations at all."""
        return self.max_demos > 0

    def usable(self, demo: Demo) -> bool:
        """A demonstration may be shown: it is not a dev item (nor evolves into one)."""
        return normalize(demo.instruction) not in self._dev and normalize(demo.evolved_instruction) not in self._dev

    def starting(self, demos: Sequence[Demo]) -> tuple[Demo, ...]:
        """The student's demonstrations a compile keeps (dev items dropped), also added to the pool."""
        kept = tuple(demo for demo in demos if self.usable(demo))
        if len(kept) < len(demos):
            logger.warning("%d of the starting evolver's demonstrations are dev items and are not used",
                           len(demos) - len(kept))
        self._add(kept)
        self._tried.add(demo_keys(kept))
        return kept

    def replay(self, history: Sequence[StepRecord]) -> None:
        """Rebuild the pool and the sets already tried from recorded steps (a resumed run)."""
        for record in history:
            self._add(record.new_demos)
            self._tried.update(demo_keys(c.candidate.demos) for c in record.candidates
                               if c.kind == "demos" and c.candidate is not None)

    def collect(self, role: EvolRole, optimizer_lm: dspy.LM, incumbent: MethodScore,
                trajectory: Sequence[TrajectoryCase], step: int) -> list[Demo]:
        """The new demonstrations of a step's trajectory (observed, then teacher-written); added to the pool."""
        if not self.enabled:
            return []
        found = [observed(case, step) for case in trajectory if not case.failed and case.answer is not None]
        if self.teacher:
            found += self._teacher(role, optimizer_lm, incumbent.method, [c for c in trajectory if c.failed], step)
        return self._add(demo for demo in found if demo is not None)

    def propose(self, incumbent: MethodScore, history: Sequence[StepRecord], step: int,
                first_index: int) -> list[CandidateRecord]:
        """Up to ``candidates`` demonstration sets not tried yet, each with the incumbent's method.

        The first set explores: the demonstrations no candidate has carried yet come first. The
        second exploits: the demonstrations whose sets measured the lowest failure rates so far.
        The others are drawn at random from the pool (seeded).
        """
        if not self.enabled or not self.pool:
            return []
        size = min(self.max_demos, len(self.pool))
        self._tried.add(demo_keys(incumbent.demos))
        rates = measured_rates(history)
        rng = random.Random(f"{self.seed}:demos:{step}")
        shuffled = rng.sample(self.pool, len(self.pool))
        untested = [demo for demo in shuffled if demo.key not in rates]
        tested = sorted((demo for demo in shuffled if demo.key in rates), key=lambda demo: mean(rates[demo.key]))
        orders = [untested + tested, tested]
        records: list[CandidateRecord] = []
        for number in range(self.candidates):
            chosen = self._new_set(orders[number] if number < len(orders) else None, size, rng)
            if chosen is None:
                continue
            self._tried.add(demo_keys(chosen))
            records.append(CandidateRecord(
                index=first_index + len(records), kind="demos",
                candidate=Candidate(method=incumbent.method, demos=tuple(chosen)), change=describe(chosen)))
        return records

    def _new_set(self, order: list[Demo] | None, size: int, rng: random.Random) -> list[Demo] | None:
        """The first ``size`` demonstrations of ``order``, or (no order) a random draw; ``None`` if tried."""
        if order is not None:
            chosen = order[:size]
            return chosen if len(chosen) == size and demo_keys(chosen) not in self._tried else None
        for _ in range(DRAW_TRIES):
            chosen = rng.sample(self.pool, size)
            if demo_keys(chosen) not in self._tried:
                return chosen
        return None

    def _add(self, demos: Iterable[Demo]) -> list[Demo]:
        added = []
        for demo in demos:
            key = normalize(demo.instruction)
            if key in self._seen or not self.usable(demo):
                continue
            self._seen.add(key)
            self.pool.append(demo)
            added.append(demo)
        return added

    def _teacher(self, role: EvolRole, optimizer_lm: dspy.LM, method: str, failed: Sequence[TrajectoryCase],
                 step: int) -> list[Demo | None]:
        """The optimizer LM's rewrites of failed cases that pass every rule under the evol LM's answer."""
        teacher = Evolver(method)  # the method alone: the teacher writes without the student's examples

        def program(instruction: str) -> dspy.Prediction:
            with dspy.context(lm=optimizer_lm):
                return teacher(instruction=instruction)

        outcomes = role.evaluate_all([(program, case.stages[0]) for case in failed])
        return [passed_demo(outcome, "teacher", case.item_id, step) for case, outcome in zip(failed, outcomes)]


def measured_rates(history: Sequence[StepRecord]) -> dict[str, list[float]]:
    """Per demonstration, the dev failure rates of every candidate measured on the whole dev set that
    carried it (a raced-out candidate's rate on a first slice of the items is not comparable)."""
    rates: dict[str, list[float]] = {}
    for record in history:
        for candidate in record.candidates:
            if candidate.score is not None and candidate.dropped is None:
                for demo in candidate.score.demos:
                    rates.setdefault(demo.key, []).append(candidate.score.failure_rate)
    return rates


def mean(values: Sequence[float]) -> float:
    """The average of a non-empty sequence."""
    return sum(values) / len(values)


def observed(case: TrajectoryCase, step: int) -> Demo | None:
    """A trajectory case that passed every rule as a demonstration (its last evolution)."""
    if len(case.stages) < 2:
        return None
    return Demo(instruction=case.stages[-2], working_notes=case.notes[-1] if case.notes else "",
                evolved_instruction=case.stages[-1], origin="observed", item_id=case.item_id, step=step)


def describe(demos: Sequence[Demo]) -> str:
    """A demonstration set in one line, as step records and displays show it."""
    parts = [f"{demo.item_id or '?'} ({demo.origin}" + (f", step {demo.step})" if demo.step else ")") for demo in demos]
    return "demonstrations: " + (", ".join(parts) if parts else "none")


def bootstrap_demos(evolver: Evolver, instructions: Sequence[str | dspy.Example | SeedItem], count: int, *,
                    detector: FailureDetector | None = None, responder: Program | None = None,
                    num_threads: int = 1) -> list[Demo]:
    """Up to ``count`` demonstrations of ``evolver``'s own successes, without a compile.

    The instructions are evolved in order (a few more than still needed at a time) under the
    configured LM, answered and judged; the first ``count`` evolutions that pass every rule become
    demonstrations (origin ``observed``), as BootstrapFewShot keeps a program's successful traces.
    Use it to give a method demonstrations on new data, e.g. ``e_0`` plus examples.
    """
    items = distinct(items_of(instructions, "train"))
    found: list[Demo] = []
    start = 0
    while len(found) < count and start < len(items):
        chunk = items[start:start + 2 * (count - len(found))]
        start += len(chunk)
        outcomes = evaluate_items([(evolver, item.text) for item in chunk], responder=responder, detector=detector,
                                  num_threads=num_threads)
        found += [demo for item, outcome in zip(chunk, outcomes)
                  if (demo := passed_demo(outcome, "observed", item.id)) is not None]
    return found[:count]


def passed_demo(outcome: ItemOutcome, origin: DemoOrigin, item_id: str, step: int | None = None) -> Demo | None:
    """An evaluated evolution as a demonstration, if it passed every rule."""
    if outcome.verdict.failed or outcome.evolved is None:
        return None
    return Demo(instruction=outcome.original, working_notes=outcome.notes or "", evolved_instruction=outcome.evolved,
                origin=origin, item_id=item_id, step=step)
