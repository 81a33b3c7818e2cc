"""``AutoEvolInstruct``: the Auto Evol-Instruct optimizer (Zeng et al., 2024) as a DSPy teleprompter.

It turns an evolving method (by default the universal e_0) into a domain-specific one::

    e = e_0
    for t in 1..T:
        X_t  = a mini-batch of the training pool
        S_t  = the trajectory: every item of X_t evolved l times in a row with e
        m times, sampled:  feedback f_j = analysis of S_t;  candidate e_j = e improved with f_j
        beside them, new demonstration sets drawn from the pool's successful evolutions (max_demos > 0)
        measure every candidate's failure rate on the development set D (paired, raced)
        e = the candidate with the fewest failures among those whose paired advantage over e is
            significant at a level that counts every candidate tried so far; else keep e
        stop when no candidate is accepted for ``patience`` steps
    confirm: e against the starting method on items no selection step measured; a gain that does
    not hold there is no result

Proposals live in :mod:`~autoevol.optimizers.auto_evol.proposal`, demonstrations in
:mod:`~autoevol.optimizers.auto_evol.demos`, the trajectory (:meth:`Evolver.trajectory
<autoevol.programs.evolver.Evolver.trajectory>` on every item) and the dev measurements in
:mod:`~autoevol.optimizers.auto_evol.evaluation`, the settings and their checks (``CompileSettings``) in
:mod:`~autoevol.optimizers.auto_evol.settings`, the records in :mod:`~autoevol.optimizers.auto_evol.records`
and their checkpoints in :mod:`~autoevol.optimizers.auto_evol.run_dir`, the stop rule in
:mod:`~autoevol.optimizers.auto_evol.stopping`, and the result in :mod:`~autoevol.optimizers.auto_evol.result`
(or, when the compile found nothing, an error of :mod:`~autoevol.optimizers.auto_evol.found_nothing`);
this module is the loop.

Example: ``AutoEvolInstruct(optimizer_lm=big, evol_lm=small).compile(Evolver(), trainset=texts).save("e.json")``.

Reference: Zeng, Xu, Zhao, Lou, Chen, "Automatic Instruction Evolving for Large Language Models",
arXiv 2406.00770 (EMNLP 2024).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dspy
from dspy.teleprompt.teleprompt import Teleprompter

from autoevol.baselines import starting_methods
from autoevol.lm.cache import CallCache
from autoevol.metrics.failure import FailureDetector
from autoevol.optimizers.auto_evol.demos import DemoSearch
from autoevol.optimizers.auto_evol.evaluation import DevEvaluator, EvolRole, Item, evolve_trajectory
from autoevol.optimizers.auto_evol.found_nothing import (
    CompileFoundNothing,
    NoImprovement,
    NoValidCandidate,
    found_nothing_error,
)
from autoevol.optimizers.auto_evol.log_lines import log_finish, log_step
from autoevol.optimizers.auto_evol.progress import ProgressCallback, Stage, StageProgress
from autoevol.optimizers.auto_evol.proposal import MethodProposer, analysis_context, mark_duplicates
from autoevol.optimizers.auto_evol.racing import DEFAULT_LOOKS, race
from autoevol.optimizers.auto_evol.records import CandidateRecord, MethodScore, StartRecord, StepRecord
from autoevol.optimizers.auto_evol.result import compiled_evolver
from autoevol.optimizers.auto_evol.roles import CompileLMs, configured_evol_lm, evol_answer_settings, role_models
from autoevol.optimizers.auto_evol.run_dir import RunDirectory, RunHeader, now
from autoevol.optimizers.auto_evol.selection import PairedComparison, acceptance_level, compare
from autoevol.optimizers.auto_evol.settings import CompileSettings, compile_header
from autoevol.optimizers.auto_evol.spending import Spending
from autoevol.optimizers.auto_evol.split import DataSplit, Instructions, NotEnoughData, data_summary, split_pool_and_dev
from autoevol.optimizers.auto_evol.stopping import StepCallback, StopCompile, notify, stop_reason
from autoevol.programs.demonstration import Candidate
from autoevol.programs.evolver import Evolver

logger = logging.getLogger("autoevol.optimizers.auto_evol")  # the package: one logger for the loop and its parts

__all__ = ["AutoEvolInstruct", "CompileFoundNothing", "NoImprovement", "NoValidCandidate", "NotEnoughData",
           "StageProgress", "StopCompile"]

#: The race key of the incumbent; candidates are keyed by their 1-based index.
INCUMBENT = 0

class AutoEvolInstruct(Teleprompter):
    """Optimize an :class:`~autoevol.programs.Evolver`'s evolving method and demonstrations.

    Each step samples a mini-batch of the training pool, evolves it ``evolution_rounds`` times with
    the current method (the trajectory), lets the optimizer LLM analyse the trajectory and propose
    ``num_candidates`` improved methods (sampled at ``temperature``/``top_p`` with distinct rollout
    ids), measures every candidate's evolution failure rate on the same development items, and
    accepts the candidate with the fewest failures among those whose advantage over the current
    method on the discordant items passes a one-sided sign test at ``selection_alpha`` divided by
    the number of candidates tried so far; otherwise the current method stays. Before the compile
    reports a gain, the final method and the starting method are measured on ``confirm_size``
    items that no selection step saw; a gain that does not hold there at ``confirm_alpha`` ends
    the compile with :class:`NoImprovement` (or the starting method with ``keep_unchanged``).
    With ``max_demos > 0`` the
    candidate is a method plus up to ``max_demos`` demonstrations (successful evolutions of
    training items seen in the trajectories, never dev items): each step also proposes
    ``demo_candidates`` new demonstration sets with the current method, measured and raced with
    the method candidates; ``max_demos=0`` is the paper's method-only search. The loop stops after
    ``patience`` steps without improvement (a step without any valid candidate does not count),
    when no dev item fails any more, or at ``max_steps``.

    The settings are a :class:`~autoevol.optimizers.auto_evol.settings.CompileSettings` (each
    documented there, with its default), given in DSPy's style as keywords
    (``AutoEvolInstruct(optimizer_lm=lm, num_candidates=3)``), as ``settings=CompileSettings(...)``,
    or both: keywords then override the fields of ``settings``. A keyword that names no setting is
    refused with a ``TypeError``, a value out of its range with a ``ValueError``. The teleprompter
    keeps them in ``self.settings``.

    Args:
        optimizer_lm: the optimizer LLM (trajectory analysis and method proposals).
        evol_lm: the evol LLM (evolves and answers); default: the LM configured in DSPy.
        detector: failure detection; default: every cheap rule of :class:`FailureDetector`. Build
            it with ``judge_lm=...`` to add the LLM judge (one more call per item that passes).
        settings: the compile's hyperparameters (default: ``CompileSettings()``, the paper's
            schedule with this project's defaults elsewhere).
        step_callback: ``step_callback(step, record)`` after every step (replayed steps of a
            resumed run included); returning ``False`` or raising :class:`StopCompile` stops.
        progress: receives a :class:`StageProgress` as each stage advances (for displays).
        **overrides: fields of :class:`CompileSettings` (``num_candidates``, ``dev_size``,
            ``max_steps``, ``proposal_mode``, ``max_demos``, ``starts``, ``seed``, ...), applied over
            ``settings``.
    """

    def __init__(
        self,
        *,
        optimizer_lm: dspy.LM,
        evol_lm: dspy.LM | None = None,
        detector: FailureDetector | None = None,
        settings: CompileSettings | None = None,
        step_callback: StepCallback | None = None,
        progress: ProgressCallback | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(overrides) - CompileSettings.names())
        if unknown:
            raise TypeError(f"AutoEvolInstruct() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}"
                            " (settings are the fields of CompileSettings)")
        base = settings if settings is not None else CompileSettings()
        self.settings = replace(base, **overrides) if overrides else base
        self.optimizer_lm, self.evol_lm, self.detector = optimizer_lm, evol_lm, detector
        self.step_callback, self.progress = step_callback, progress

    # ------------------------------------------------------------------------------ the loop

    def compile(self, student: Evolver, *, trainset: Instructions, valset: Instructions | None = None,
                run_dir: str | Path | None = None) -> Evolver:
        """Optimize ``student``'s method; returns a new Evolver with metadata and ``compile_history``.

        Args:
            student: the evolver to start from: ``Evolver()`` for e_0, or a compiled evolver
                (a warm start on a new domain: its method, and its demonstrations only with
                ``keep_demos``).
            trainset: instructions (strings, ``dspy.Example`` with ``instruction``, or
                ``SeedItem``); the training pool, and the dev set too when ``valset`` is None.
            valset: instructions for the dev set; ``dev_size`` of them are sampled with the seed.
            run_dir: checkpoint folder; a compile given the same folder resumes after its last
                completed step and repeats no completed LM call.

        Raises:
            NotEnoughData: fewer distinct instructions than ``batch_size`` + ``dev_size`` need.
            RunDirError: ``run_dir`` is foreign, corrupt, or belongs to other settings or data.
            CompileFoundNothing: no step produced a valid candidate (:class:`NoValidCandidate`),
                or none beat the starting method (:class:`NoImprovement`); ``error.evolver`` holds
                the unchanged result. Not raised with ``keep_unchanged=True``.
            BudgetExceeded: an LM budget ran out (rerun with the same ``run_dir`` to resume).
            Permanent LM errors (authentication, unknown model, unsupported parameter, context
            too long) stop the compile at once.
        """
        pool, dev, confirm = self.split(trainset, valset)
        settings = self.settings
        demos = DemoSearch(max_demos=settings.max_demos, candidates=settings.demo_candidates,
                           teacher=settings.teacher_demos, dev=dev, seed=settings.seed)
        start = Candidate(method=student.method, demos=demos.starting(student.demos) if settings.keep_demos else ())
        evol_lm, detector = configured_evol_lm(self.evol_lm), self.detector or FailureDetector()
        header = compile_header(self.hyperparameters(), start_fingerprint=start.fingerprint,
                                models=role_models(evol_lm, self.optimizer_lm, self.detector),
                                evol_answers=evol_answer_settings(evol_lm), detector_rules=detector.rule_ids,
                                data=data_summary(pool, dev, confirm))
        run = RunDirectory.open(run_dir, header) if run_dir is not None else None
        lms = CompileLMs(evol_lm, self.optimizer_lm, detector, CallCache(run.cache_path) if run is not None else None,
                         **({} if settings.evol_temperature is None else {"temperature": settings.evol_temperature}))
        try:
            role = EvolRole(evol_lm=lms.evol, detector=lms.detector, num_threads=settings.num_threads,
                            answer_max_tokens=settings.answer_max_tokens)
            proposer = MethodProposer(mode=settings.proposal_mode, attempts=settings.proposal_attempts,
                                      max_method_words=settings.max_method_words, temperature=settings.temperature,
                                      top_p=settings.top_p, seed=settings.seed)
            recorded = run.excluded_items() if run is not None else []
            log = run.measurements(dev=dev, confirm=confirm) if run is not None else None
            loop = _Loop(lms=lms, role=role, evaluator=DevEvaluator(role, dev, excluded=recorded, log=log),
                         confirmation=DevEvaluator(role, confirm, log=log, split="confirm"), proposer=proposer,
                         demos=demos, run=run)
            return self._optimize(student, start, pool, header, run, loop)
        finally:
            lms.close()

    def _optimize(self, student: Evolver, candidate: Candidate, pool: Sequence[Item], header: RunHeader,
                  run: RunDirectory | None, loop: _Loop) -> Evolver:
        """The loop of the paper, resumed after the steps ``run`` has already recorded."""
        start = self._start(candidate, run, loop)
        history = run.completed_steps(self.settings.max_steps) if run is not None else []
        loop.demos.replay(history)
        incumbent = history[-1].selected if history else start.chosen
        stopped = next(filter(None, (notify(self.step_callback, record) for record in history)), None)
        for step in range(len(history) + 1, self.settings.max_steps + 1):
            stopped = stopped or stop_reason(incumbent, history, self.settings.patience)
            if stopped:
                break
            record = self._step(step, incumbent, pool, history, loop, tried_before=start.tried)
            if run is not None:
                run.write_step(record)
            history.append(record)
            incumbent = record.selected
            log_step(record)
            stopped = notify(self.step_callback, record)
        stopped = stopped or ("no_failures" if incumbent.failed == 0 else "max_steps")
        fingerprints = {"start": start.score.fingerprint, "result": incumbent.fingerprint}
        confirmation = run.confirmation(**fingerprints) if run is not None else None
        if confirmation is None:
            confirmation = self._confirm(start.score, incumbent, len(history) + 1, loop)
            if confirmation is not None and run is not None:
                run.write_confirmation(confirmation, **fingerprints)
        log_finish(stopped, start, incumbent, len(history), confirmation)
        result = start.score if confirmation is not None and not confirmation.supported else incumbent
        evolver = compiled_evolver(student, result, start, history, hyperparameters=self.hyperparameters(),
                                   models=header.settings["models"], detector_rules=loop.lms.detector.rule_ids,
                                   data=header.data, stopped=stopped, confirmation=confirmation)
        found_nothing = found_nothing_error(start.score, incumbent, history, evolver, confirmation)
        if found_nothing is not None and not self.settings.keep_unchanged:
            raise found_nothing
        return evolver

    def _step(self, step: int, incumbent: MethodScore, pool: Sequence[Item], history: Sequence[StepRecord],
              loop: _Loop, *, tried_before: int) -> StepRecord:
        """One step of the loop: mini-batch, trajectory, m analyses and candidates, selection."""
        spending = loop.spending(f"step-{step:03d}")
        progress = _saving(spending, self.progress)
        batch = self.mini_batch(pool, step)
        stage = Stage(step, "trajectory", progress, planned=len(batch))
        trajectory = evolve_trajectory(loop.role, incumbent, batch, self.settings.evolution_rounds,
                                       answers=self.settings.trajectory_answers or loop.demos.enabled,
                                       on_done=stage.advance)
        logger.info("step %d: trajectory of %d cases, %d failed", step, len(trajectory),
                    sum(case.failed for case in trajectory))
        context = analysis_context(incumbent, history)
        stage = Stage(step, "analysis", progress, planned=self.settings.num_candidates)
        with dspy.context(lm=loop.lms.optimizer):
            candidates = loop.proposer.propose_all(self.settings.num_candidates, incumbent, trajectory, context, step,
                                                   num_threads=self.settings.num_threads, on_done=stage.advance)
        new_demos = loop.demos.collect(loop.role, loop.lms.optimizer, incumbent, trajectory, step)
        candidates += loop.demos.propose(incumbent, history, step, first_index=len(candidates) + 1)
        mark_duplicates(candidates)
        tried = (history[-1].tried if history else tried_before) + sum(not c.invalid and c.candidate is not None
                                                                       for c in candidates)
        winner = self._select(incumbent, candidates, step, loop, progress,
                              level=acceptance_level(self.settings.selection_alpha, max(tried, 1)))
        # the incumbent kept is rescored: items left out during this step leave its rate too
        selected = loop.evaluator.score(incumbent, self.settings.dev_size) if winner is None \
            else candidates[winner - 1].score
        assert selected is not None
        return StepRecord(
            step=step, incumbent=incumbent, trajectory=trajectory, candidates=candidates, winner=winner,
            selected=selected, tried=tried,
            excluded_items=loop.evaluator.excluded_items(),
            new_demos=new_demos, usage=spending.usage(), seconds=spending.seconds(), finished_at=now(),
        )

    def split(self, trainset: Instructions, valset: Instructions | None = None) -> DataSplit:
        """The training pool X, the development set D and the confirmation split (see
        :func:`~autoevol.optimizers.auto_evol.split.split_pool_and_dev`)."""
        settings = self.settings
        return split_pool_and_dev(trainset, valset, batch_size=settings.batch_size, dev_size=settings.dev_size,
                                  seed=settings.seed, confirm_size=settings.confirm_items)

    def mini_batch(self, pool: Sequence[Item], step: int) -> list[Item]:
        """X_t: ``batch_size`` items of the pool, drawn from the seed and the step alone."""
        return random.Random(f"{self.settings.seed}:batch:{step}").sample(list(pool), self.settings.batch_size)

    # ------------------------------------------------------------------------------ selection

    def _select(self, incumbent: MethodScore, candidates: Sequence[CandidateRecord], step: int,
                loop: _Loop, progress: ProgressCallback | None, *, level: float) -> int | None:
        """Measure the candidates on D (paired, raced) and return the winner's index, or None.

        The winner is the candidate with the fewest failures among those measured on every dev
        item whose paired advantage over the incumbent is supported at ``level``.
        """
        methods: dict[int, Candidate] = {INCUMBENT: incumbent}
        methods.update({c.index: c.candidate for c in candidates if not c.invalid and c.candidate is not None})
        keys = list(methods)
        stage = Stage(step, "evaluation", progress)

        def measure(running: Sequence[int], start: int, stop: int) -> dict[int, list[bool]]:
            return loop.evaluator.failures({key: methods[key] for key in running}, start, stop,
                                           stage.plan, stage.advance)

        looks = DEFAULT_LOOKS if self.settings.racing else ()
        result = race(keys, measure, self.settings.dev_size, looks=looks, alpha=self.settings.racing_alpha,
                      protected=[INCUMBENT], reference=INCUMBENT, level=level)
        for candidate in candidates:
            if candidate.index in methods:
                measured = result.measured(candidate.index)
                candidate.score = loop.evaluator.score(methods[candidate.index], measured)
                candidate.dropped = result.dropped.get(candidate.index)
                candidate.comparison = compare(loop.evaluator.flags(methods[candidate.index], measured),
                                               loop.evaluator.flags(methods[INCUMBENT], measured), level=level)
        accepted = [c for c in candidates if c.dropped is None and c.comparison is not None and c.comparison.supported]
        best = min(accepted, key=lambda c: (c.score.failed, c.index), default=None)  # type: ignore[union-attr]
        return None if best is None else best.index

    def _confirm(self, start: MethodScore, final: MethodScore, step: int, loop: _Loop) -> PairedComparison | None:
        """The final method against the starting method on the confirmation split (``None``: nothing
        to confirm, or no confirmation split)."""
        if final.fingerprint == start.fingerprint or not loop.confirmation.dev:
            return None
        stage = Stage(step, "confirmation", self.progress)
        methods = {INCUMBENT: start, 1: final}
        size = len(loop.confirmation.dev)
        loop.confirmation.failures(methods, 0, size, stage.plan, stage.advance)
        comparison = compare(loop.confirmation.flags(methods[1], size),
                             loop.confirmation.flags(methods[INCUMBENT], size), level=self.settings.confirm_alpha)
        logger.info("confirmation on %d held-out items: %s: the gain %s", size, comparison.describe(),
                    "holds" if comparison.supported else "does not hold")
        return comparison

    # ------------------------------------------------------------------------------ resume

    def _start(self, candidate: Candidate, run: RunDirectory | None, loop: _Loop) -> StartRecord:
        """The starting candidate's failure rate on the whole dev set, and the race of the other
        starting methods against it (measured once per run)."""
        recorded = run.start() if run is not None else None
        if recorded is not None:
            return recorded
        spending = loop.spending("start")
        progress = _saving(spending, self.progress)
        stage = Stage(0, "evaluation", progress)
        loop.evaluator.failures({INCUMBENT: candidate}, 0, self.settings.dev_size, stage.plan, stage.advance)
        score = loop.evaluator.score(candidate, self.settings.dev_size)
        logger.info("starting method: dev failure rate %.1f%% (%d/%d)", 100 * score.failure_rate,
                    score.failed, score.evaluated)
        methods = starting_methods()
        alternatives = [CandidateRecord(index=index, candidate=Candidate(method=methods[name]),
                                        change=f"starting method: {name}")
                        for index, name in enumerate(self.settings.starts, start=1)]
        mark_duplicates(alternatives)
        winner = None
        if alternatives:
            winner = self._select(score, alternatives, 0, loop, progress,
                                  level=acceptance_level(self.settings.selection_alpha, len(alternatives)))
            logger.info("starting methods raced: %s", "the student's method stays" if winner is None else
                        f"{self.settings.starts[winner - 1]} replaces it")
            # items left out during the race leave it too
            score = loop.evaluator.score(candidate, self.settings.dev_size)
        start = StartRecord(score=score, alternatives=alternatives, winner=winner, tried=len(alternatives),
                            excluded_items=loop.evaluator.excluded_items(),
                            usage=spending.usage(), seconds=spending.seconds())
        if run is not None:
            run.write_start(start)
        return start

    # ------------------------------------------------------------------------------ settings

    def hyperparameters(self) -> dict[str, Any]:
        """The settings that shape the result (recorded in run.json and in the evolver's metadata)."""
        return self.settings.hyperparameters()


@dataclass(frozen=True)
class _Loop:
    """What the steps of one compile share, each built once by :meth:`AutoEvolInstruct.compile`."""

    lms: CompileLMs  # the role LMs, sharing the run's call cache
    role: EvolRole  # evolving and judging under the evol LM
    evaluator: DevEvaluator  # failure rates on D, each (candidate, item) measured once
    confirmation: DevEvaluator  # the final check on items no selection step measured
    proposer: MethodProposer  # analyses and candidate methods under the optimizer LM
    demos: DemoSearch  # the demonstration pool and the demonstration candidates
    run: RunDirectory | None  # the checkpoints, if any

    def spending(self, phase: str) -> Spending:
        """What ``phase`` spends, from the earlier runs that worked on it (kept in the run directory)."""
        return Spending(self.lms, self.run.phase_spending(phase) if self.run is not None else None)


def _saving(spending: Spending, progress: ProgressCallback | None) -> ProgressCallback:
    """A progress callback that saves what the phase has spent so far, then reports to ``progress``."""

    def report(update: StageProgress) -> None:
        spending.save()
        if progress is not None:
            progress(update)

    return report
