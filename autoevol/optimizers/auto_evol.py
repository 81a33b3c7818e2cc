"""``AutoEvolInstruct``: the Auto Evol-Instruct optimizer (Zeng et al., 2024) as a DSPy teleprompter.

It turns an evolving method (by default the universal e_0) into a domain-specific one::

    e = e_0
    for t in 1..T:
        X_t  = a mini-batch of the training pool
        S_t  = the trajectory: every item of X_t evolved l times in a row with e
        m times, sampled:  feedback f_j = analysis of S_t;  candidate e_j = e rewritten with f_j
        measure every candidate's failure rate on the development set D (paired, raced)
        e = the lowest failure rate, the incumbent included; stop when it no longer decreases

Example:
    >>> optimizer = AutoEvolInstruct(optimizer_lm=big_lm, evol_lm=small_lm)   # doctest: +SKIP
    >>> evolver = optimizer.compile(Evolver(), trainset=instructions, run_dir="runs/math")
    >>> evolver.save("math-evolver.json")

Reference: Zeng, Xu, Zhao, Lou, Chen, "Automatic Instruction Evolving for Large Language Models",
arXiv 2406.00770 (EMNLP 2024).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from dspy.teleprompt.teleprompt import Teleprompter

from autoevol.lm.cache import CallCache
from autoevol.lm.managed import ManagedLM
from autoevol.lm.policy import BudgetExceeded
from autoevol.metrics.failure import EqualityJudge, FailureDetector
from autoevol.metrics.rate import ItemOutcome, describe_error, evaluate_item, run_program
from autoevol.optimizers.history import (
    CandidateRecord,
    MethodScore,
    RunDirectory,
    RunHeader,
    StartRecord,
    StepRecord,
    TrajectoryCase,
    UsageDelta,
    now,
)
from autoevol.optimizers.racing import DEFAULT_ALPHA, DEFAULT_LOOKS, race
from autoevol.programs.evolver import Evolver
from autoevol.programs.responder import Responder
from autoevol.records import LM_ERROR, SeedItem, Verdict, fingerprint
from autoevol.signatures.analyze import AnalyzeTrajectory, TrajectoryIssue
from autoevol.signatures.optimize import OptimizeMethod
from autoevol.threads import run_in_threads

logger = logging.getLogger(__name__)

#: The race key of the incumbent; candidates are keyed by their 1-based index.
INCUMBENT = 0
#: A proposed method shorter than this many words is not a method.
MIN_METHOD_WORDS = 5


class NotEnoughData(ValueError):
    """The training or development data has fewer distinct instructions than the settings need."""


class StopCompile(Exception):
    """Raise from a ``step_callback`` to end the loop after the current step (e.g. Optuna pruning)."""


@dataclass(frozen=True)
class StageProgress:
    """Progress of one stage of a step: ``trajectory``, ``analysis`` or ``evaluation``.

    Step 0 is the measurement of the starting method before the first step.
    """

    step: int
    stage: str
    done: int
    total: int


StepCallback = Callable[[int, StepRecord], "bool | None"]
ProgressCallback = Callable[[StageProgress], None]


class Stage:
    """Counts the work of one stage of a step and reports it to the progress callback, if any."""

    def __init__(self, step: int, name: str, progress: ProgressCallback | None, *, planned: int = 0) -> None:
        self.step, self.name, self.progress = step, name, progress
        self.done, self.total = 0, 0
        self.plan(planned)

    def plan(self, count: int) -> None:
        """Add ``count`` items of work (a stage may learn its size in parts, as racing goes on)."""
        self.total += count
        self._report()

    def advance(self, count: int = 1) -> None:
        """Mark ``count`` items done."""
        self.done += count
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(StageProgress(step=self.step, stage=self.name, done=self.done, total=self.total))


@dataclass(frozen=True)
class Item:
    """One distinct instruction of the training pool or the development set."""

    id: str
    text: str


class AutoEvolInstruct(Teleprompter):
    """Optimize an :class:`~autoevol.programs.Evolver`'s evolving method, as Auto Evol-Instruct does.

    Each step samples a mini-batch of the training pool, evolves it ``evolution_rounds`` times with
    the current method (the trajectory), lets the optimizer LLM analyse the trajectory and rewrite
    the method ``num_candidates`` times (sampled at ``temperature``/``top_p`` with distinct rollout
    ids), measures every candidate's evolution failure rate on the same development items, and keeps
    the lowest; the current method competes and is kept on ties. The loop stops after
    ``patience`` steps without improvement, when no dev item fails any more, or at ``max_steps``.

    Args:
        optimizer_lm: the optimizer LLM (trajectory analysis and method rewriting).
        evol_lm: the evol LLM (evolves and answers); default: the LM configured in DSPy.
        detector: failure detection; default: every cheap rule of :class:`FailureDetector`.
        num_candidates: m, candidates per step (paper: 5).
        batch_size: mini-batch size (paper: 10).
        dev_size: development set size |D| (paper: 50).
        max_steps: T, the most steps (paper: 10).
        evolution_rounds: l, evolutions in a row per trajectory case (the authors' code: 1).
        temperature: sampling temperature of the optimizer LLM (paper: 0.6).
        top_p: nucleus sampling of the optimizer LLM (paper: 0.95).
        evol_temperature: temperature of the evol LLM (paper: 0); ``None`` keeps the LM's own.
        patience: steps without improvement before stopping (paper: 1).
        racing: stop measuring candidates that cannot beat the best one (``False``: every
            candidate is measured on every dev item, as in the paper).
        racing_alpha: significance of the sign test that drops a candidate.
        trajectory_answers: also answer and judge each case's last stage, so the analysis sees the
            answers and the response rules' verdicts (``batch_size`` more calls per step).
        seed: seeds the dev split, the mini-batches and the optimizer's rollout ids.
        num_threads: items evaluated in parallel.
        step_callback: ``step_callback(step, record)`` after every step (replayed steps of a
            resumed run included); returning ``False`` or raising :class:`StopCompile` stops.
        progress: receives a :class:`StageProgress` as each stage advances (for displays).
    """

    def __init__(
        self,
        *,
        optimizer_lm: dspy.LM,
        evol_lm: dspy.LM | None = None,
        detector: FailureDetector | None = None,
        num_candidates: int = 5,
        batch_size: int = 10,
        dev_size: int = 50,
        max_steps: int = 10,
        evolution_rounds: int = 1,
        temperature: float = 0.6,
        top_p: float = 0.95,
        evol_temperature: float | None = 0.0,
        patience: int = 1,
        racing: bool = True,
        racing_alpha: float = DEFAULT_ALPHA,
        trajectory_answers: bool = False,
        seed: int = 0,
        num_threads: int = 4,
        step_callback: StepCallback | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        super().__init__()
        _require(num_candidates >= 1, "num_candidates must be at least 1")
        _require(batch_size >= 1, "batch_size must be at least 1")
        _require(dev_size >= 1, "dev_size must be at least 1")
        _require(max_steps >= 0, "max_steps must be at least 0")
        _require(evolution_rounds >= 1, "evolution_rounds must be at least 1")
        _require(temperature >= 0, "temperature must be at least 0")
        _require(0 < top_p <= 1, "top_p must be in (0, 1]")
        _require(patience >= 1, "patience must be at least 1")
        _require(0 < racing_alpha < 1, "racing_alpha must be in (0, 1)")
        _require(num_threads >= 1, "num_threads must be at least 1")
        self.optimizer_lm = optimizer_lm
        self.evol_lm = evol_lm
        self.detector = detector
        self.num_candidates = num_candidates
        self.batch_size = batch_size
        self.dev_size = dev_size
        self.max_steps = max_steps
        self.evolution_rounds = evolution_rounds
        self.temperature = temperature
        self.top_p = top_p
        self.evol_temperature = evol_temperature
        self.patience = patience
        self.racing = racing
        self.racing_alpha = racing_alpha
        self.trajectory_answers = trajectory_answers
        self.seed = seed
        self.num_threads = num_threads
        self.step_callback = step_callback
        self.progress = progress

    # ------------------------------------------------------------------------------ the loop

    def compile(
        self,
        student: Evolver,
        *,
        trainset: Sequence[str | dspy.Example | SeedItem],
        valset: Sequence[str | dspy.Example | SeedItem] | None = None,
        run_dir: str | Path | None = None,
    ) -> Evolver:
        """Optimize ``student``'s method; returns a new Evolver with metadata and ``compile_history``.

        Args:
            student: the evolver to start from: ``Evolver()`` for e_0, or a compiled evolver
                (a warm start on a new domain).
            trainset: instructions (strings, ``dspy.Example`` with ``instruction``, or
                ``SeedItem``); the training pool, and the dev set too when ``valset`` is None.
            valset: instructions for the dev set; ``dev_size`` of them are sampled with the seed.
            run_dir: checkpoint folder; a compile given the same folder resumes after its last
                completed step and repeats no completed LM call.

        Raises:
            NotEnoughData: fewer distinct instructions than ``batch_size`` + ``dev_size`` need.
            RunDirError: ``run_dir`` is foreign, corrupt, or belongs to other settings or data.
            BudgetExceeded: an LM budget ran out (rerun with the same ``run_dir`` to resume).
        """
        pool, dev = self.split(trainset, valset)
        header = self._run_header(student, pool, dev)
        run = RunDirectory.open(run_dir, header) if run_dir is not None else None
        context = self._context(run, dev)
        try:
            return self._optimize(student, pool, header, run, context)
        finally:
            context.close()

    def _optimize(self, student: Evolver, pool: Sequence[Item], header: RunHeader, run: RunDirectory | None,
                  context: _Context) -> Evolver:
        """The loop of the paper, resumed after the steps ``run`` has already recorded."""
        start = self._start(student, run, context)
        initial = start.score
        history = self._completed_steps(run)
        incumbent = history[-1].selected if history else initial
        stopped = self._replay(history)
        stale = _steps_without_improvement(history)

        for step in range(len(history) + 1, self.max_steps + 1):
            stopped = stopped or self._stop_reason(incumbent, stale)
            if stopped:
                break
            record = self._step(step, incumbent, pool, context)
            if run is not None:
                run.write_step(record)
            history.append(record)
            incumbent = record.selected
            stale = 0 if record.improved else stale + 1
            _log_step(record)
            stopped = self._notify(record)
        stopped = stopped or self._stop_reason(incumbent, stale) or "max_steps"

        logger.info("compile finished (%s): dev failure rate %.1f%% -> %.1f%% after %d step(s)",
                    stopped, 100 * initial.failure_rate, 100 * incumbent.failure_rate, len(history))
        return self._result(student, incumbent, start, history, header, context, stopped=stopped)

    def _step(self, step: int, incumbent: MethodScore, pool: Sequence[Item], context: _Context) -> StepRecord:
        """One step of the loop: mini-batch, trajectory, m analyses and candidates, selection."""
        clock, usage_before = time.monotonic(), context.usage()
        batch = self.mini_batch(pool, step)
        trajectory = self._trajectory(incumbent.method, batch, step, context)
        candidates = self._candidates(incumbent.method, trajectory, step, context)
        winner = self._select(incumbent, candidates, step, context)
        selected = incumbent if winner is None else candidates[winner - 1].score
        assert selected is not None
        return StepRecord(
            step=step, incumbent=incumbent, trajectory=trajectory, candidates=candidates, winner=winner,
            selected=selected, improved=winner is not None, usage=context.usage_since(usage_before),
            seconds=round(time.monotonic() - clock, 3), finished_at=now(),
        )

    # ------------------------------------------------------------------------------ data

    def split(
        self,
        trainset: Sequence[str | dspy.Example | SeedItem],
        valset: Sequence[str | dspy.Example | SeedItem] | None = None,
    ) -> tuple[list[Item], list[Item]]:
        """The training pool and the development set: distinct instructions, never overlapping.

        Without ``valset`` the dev set is ``dev_size`` items drawn from ``trainset`` with the seed
        and the pool is the rest; with it, ``dev_size`` items are drawn from ``valset`` and every
        training item equal to a dev item is left out of the pool.

        Raises:
            NotEnoughData: the message says how many distinct instructions are needed and given.
        """
        train = _distinct(_items(trainset, "train"))
        rng = random.Random(f"{self.seed}:split")
        if valset is None:
            needed = self.batch_size + self.dev_size
            if len(train) < needed:
                raise NotEnoughData(
                    f"compile needs at least {needed} distinct instructions (batch size "
                    f"{self.batch_size} + dev size {self.dev_size}), but the training data has "
                    f"{len(train)}; lower the batch or dev size, or add data")
            shuffled = rng.sample(train, len(train))
            return shuffled[self.dev_size:], shuffled[: self.dev_size]
        candidates = _distinct(_items(valset, "dev"))
        if len(candidates) < self.dev_size:
            raise NotEnoughData(
                f"the dev set needs at least {self.dev_size} distinct instructions (dev size), but the "
                f"validation data has {len(candidates)}; lower the dev size, or add data")
        dev = rng.sample(candidates, self.dev_size)
        in_dev = {_normalized(item.text) for item in dev}
        pool = [item for item in train if _normalized(item.text) not in in_dev]
        if len(pool) < self.batch_size:
            overlap = len(train) - len(pool)
            raise NotEnoughData(
                f"compile needs at least {self.batch_size} distinct training instructions outside "
                f"the dev set (batch size), but the training data has {len(pool)}"
                + (f" ({overlap} more are also dev items)" if overlap else "")
                + "; lower the batch size, or add data")
        return pool, dev

    def mini_batch(self, pool: Sequence[Item], step: int) -> list[Item]:
        """X_t: ``batch_size`` items of the pool, drawn from the seed and the step alone."""
        return random.Random(f"{self.seed}:batch:{step}").sample(list(pool), self.batch_size)

    # ------------------------------------------------------------------------------ trajectory

    def _trajectory(self, method: str, batch: Sequence[Item], step: int, context: _Context) -> list[TrajectoryCase]:
        """S_t: every mini-batch item evolved ``evolution_rounds`` times in a row with ``method``."""
        evolver = context.evolver(method)
        stage = context.stage(step, "trajectory", planned=len(batch))

        def evolve_case(numbered: tuple[int, Item]) -> TrajectoryCase:
            number, item = numbered
            return self._evolve_case(str(number), item, evolver, context)

        with dspy.context(lm=context.evol_lm):
            cases = run_in_threads(evolve_case, list(enumerate(batch, start=1)), self.num_threads, stage.advance)
        failed = sum(case.failed for case in cases)
        logger.info("step %d: trajectory of %d cases, %d failed", step, len(cases), failed)
        return cases

    def _evolve_case(self, case_id: str, item: Item, evolver: Evolver, context: _Context) -> TrajectoryCase:
        stages = [item.text]
        for round_number in range(1, self.evolution_rounds + 1):
            last = round_number == self.evolution_rounds
            if last and self.trajectory_answers:
                outcome = evaluate_item(stages[-1], evolver, responder=context.responder, detector=context.detector)
                if outcome.evolved is not None:
                    stages.append(outcome.evolved)
                return _case(case_id, item, stages, outcome.verdict, outcome.answer)
            evolved, verdict = _evolve_once(evolver, stages[-1], context.detector)
            if evolved is not None:
                stages.append(evolved)
            if verdict is not None and verdict.failed:
                return _case(case_id, item, stages, verdict, None)
        return _case(case_id, item, stages, Verdict.passed(), None)

    # ------------------------------------------------------------------------------ candidates

    def _candidates(self, method: str, trajectory: Sequence[TrajectoryCase], step: int,
                    context: _Context) -> list[CandidateRecord]:
        """m times: analyse the trajectory, then rewrite the method with the feedback."""
        cases = json.dumps([case.for_analysis() for case in trajectory], ensure_ascii=False, indent=1)
        stage = context.stage(step, "analysis", planned=self.num_candidates)

        def propose(index: int) -> CandidateRecord:
            return self._propose(index, method, cases, step, context)

        with dspy.context(lm=context.optimizer_lm):
            candidates = run_in_threads(propose, range(1, self.num_candidates + 1), self.num_threads, stage.advance)
        _mark_duplicates(candidates)
        valid = sum(not c.invalid for c in candidates)
        logger.info("step %d: %d of %d candidates are valid", step, valid, len(candidates))
        return candidates

    def _propose(self, index: int, method: str, cases: str, step: int, context: _Context) -> CandidateRecord:
        """One analysis of the trajectory and the candidate method written from its feedback."""
        config = {"temperature": self.temperature, "top_p": self.top_p,
                  "rollout_id": self.rollout_id(step, index)}
        record = CandidateRecord(index=index)
        try:
            analysis = context.analyze(method=method, trajectory=cases, config=config)
        except BudgetExceeded:
            raise
        except Exception as error:  # an optimizer fault costs one candidate, never the step
            return _invalid(record, f"the trajectory analysis failed: {describe_error(error)}")
        record.issues = list(analysis.issues or [])
        record.feedback = str(analysis.feedback or "").strip()
        try:
            proposal = context.optimize(current_method=method, feedback=feedback_text(record.issues, record.feedback),
                                        config=config)
        except BudgetExceeded:
            raise
        except Exception as error:
            return _invalid(record, f"the method rewrite failed: {describe_error(error)}")
        text = clean_method(proposal.improved_method)
        problem = method_problem(text, method)
        if problem:
            record.method = text or None
            return _invalid(record, problem)
        record.method, record.fingerprint = text, fingerprint(text)
        return record

    def rollout_id(self, step: int, index: int) -> int:
        """A distinct, replayable rollout id per (seed, step, candidate)."""
        return int(fingerprint(f"{self.seed}:{step}:{index}"), 16) % (2**31)

    # ------------------------------------------------------------------------------ selection

    def _select(self, incumbent: MethodScore, candidates: Sequence[CandidateRecord], step: int,
                context: _Context) -> int | None:
        """Measure the candidates on D (paired, raced) and return the winner's index, or None."""
        methods = {INCUMBENT: incumbent.method}
        methods.update({c.index: c.method for c in candidates if not c.invalid and c.method})
        keys = list(methods)
        stage = context.stage(step, "evaluation")

        def measure(running: Sequence[int], start: int, stop: int) -> dict[int, list[bool]]:
            return context.evaluator.failures({key: methods[key] for key in running}, start, stop, stage)

        looks = DEFAULT_LOOKS if self.racing else ()
        result = race(keys, measure, len(context.dev), looks=looks, alpha=self.racing_alpha, protected=[INCUMBENT])
        for candidate in candidates:
            if candidate.index in methods:
                measured = result.measured(candidate.index)
                candidate.score = context.evaluator.score(methods[candidate.index], measured)
                candidate.dropped = result.dropped.get(candidate.index)
        best = result.best(keys)
        return None if best == INCUMBENT else best

    def _stop_reason(self, incumbent: MethodScore, stale: int) -> str | None:
        if incumbent.failed == 0:
            return "no_failures"
        if stale >= self.patience:
            return "plateau"
        return None

    # ------------------------------------------------------------------------------ callbacks

    def _notify(self, record: StepRecord) -> str | None:
        """Call the step callback; returns "callback" when it asks to stop."""
        if self.step_callback is None:
            return None
        try:
            answer = self.step_callback(record.step, record)
        except StopCompile as stop:
            logger.info("step %d: the step callback stopped the compile (%s)", record.step, stop)
            return "callback"
        return "callback" if answer is False else None

    def _replay(self, history: Sequence[StepRecord]) -> str | None:
        for record in history:
            stopped = self._notify(record)
            if stopped:
                return stopped
        return None

    def _start(self, student: Evolver, run: RunDirectory | None, context: _Context) -> StartRecord:
        """The starting method's failure rate on the whole dev set (measured once per run)."""
        recorded = run.start() if run is not None else None
        if recorded is not None:
            return recorded
        clock, usage_before = time.monotonic(), context.usage()
        context.evaluator.failures({INCUMBENT: student.method}, 0, len(context.dev), context.stage(0, "evaluation"))
        score = context.evaluator.score(student.method, len(context.dev))
        logger.info("starting method: dev failure rate %.1f%% (%d/%d)", 100 * score.failure_rate,
                    score.failed, score.evaluated)
        start = StartRecord(score=score, usage=context.usage_since(usage_before),
                            seconds=round(time.monotonic() - clock, 3))
        if run is not None:
            run.write_start(start)
        return start

    def _completed_steps(self, run: RunDirectory | None) -> list[StepRecord]:
        if run is None:
            return []
        history = run.steps()
        if history:
            logger.info("resuming %s after step %d", run.path, min(len(history), self.max_steps))
        return history[: self.max_steps]

    # ------------------------------------------------------------------------------ setup & result

    def hyperparameters(self) -> dict[str, Any]:
        """The settings that shape the result (recorded in run.json and in the evolver's metadata)."""
        return {
            "num_candidates": self.num_candidates, "batch_size": self.batch_size, "dev_size": self.dev_size,
            "max_steps": self.max_steps, "evolution_rounds": self.evolution_rounds,
            "temperature": self.temperature, "top_p": self.top_p, "evol_temperature": self.evol_temperature,
            "patience": self.patience, "racing": self.racing, "racing_alpha": self.racing_alpha,
            "trajectory_answers": self.trajectory_answers, "seed": self.seed,
        }

    def _run_header(self, student: Evolver, pool: Sequence[Item], dev: Sequence[Item]) -> RunHeader:
        from autoevol import __version__

        settings = {key: value for key, value in self.hyperparameters().items()
                    if key not in ("max_steps", "patience")}  # a run may be extended or cut short
        detector = self.detector or FailureDetector()
        settings.update(models=self._models(), detector_rules=detector.rule_names)
        return RunHeader(autoevol_version=__version__, start_method_fingerprint=student.fingerprint,
                         settings=settings, data=_data_summary(pool, dev))

    def _evol_lm(self) -> dspy.LM:
        lm = self.evol_lm or dspy.settings.lm
        if lm is None:
            raise ValueError("no evol LM: pass evol_lm=... or configure one with dspy.configure(lm=...)")
        return lm

    def _models(self) -> dict[str, str]:
        models = {"evol": model_name(self._evol_lm()), "optimizer": model_name(self.optimizer_lm)}
        judge = self.detector.judge_lm if self.detector is not None else None
        if judge is not None:
            models["judge"] = model_name(judge)
        return models

    def _context(self, run: RunDirectory | None, dev: Sequence[Item]) -> _Context:
        caches: list[CallCache] = []
        run_cache = CallCache(run.cache_path) if run is not None else None
        if run_cache is not None:
            caches.append(run_cache)
        overrides = {} if self.evol_temperature is None else {"temperature": self.evol_temperature}
        evol_lm = _cached_copy(self._evol_lm(), run_cache, caches, **overrides)
        optimizer_lm = _cached_copy(self.optimizer_lm, run_cache, caches)
        detector = _cached_detector(self.detector or FailureDetector(), run_cache, caches)
        context = _Context(dev=list(dev), evol_lm=evol_lm, optimizer_lm=optimizer_lm, detector=detector,
                           num_threads=self.num_threads, progress=self.progress, caches=caches)
        context.evaluator = DevEvaluator(context)
        return context

    def _result(self, student: Evolver, final: MethodScore, start: StartRecord, history: list[StepRecord],
                header: RunHeader, context: _Context, *, stopped: str) -> Evolver:
        from autoevol import __version__

        initial = start.score
        metadata: dict[str, Any] = {
            "optimizer": "AutoEvolInstruct",
            "autoevol_version": __version__,
            "compiled_at": now(),
            "models": self._models(),
            "hyperparameters": self.hyperparameters(),
            "detector_rules": context.detector.rule_names,
            "dataset": header.data,
            "initial_method_fingerprint": initial.fingerprint,
            "initial_dev_failure_rate": initial.failure_rate,
            "initial_dev_failures": {"failed": initial.failed, "total": initial.evaluated},
            "dev_failure_rate": final.failure_rate,
            "dev_failures": {"failed": final.failed, "total": final.evaluated},
            "steps": len(history),
            "stopped": stopped,
            "history": [record.summary() for record in history],
            "usage": _total_usage([start.usage, *(record.usage for record in history)]),
            "seconds": round(start.seconds + sum(record.seconds for record in history), 2),
        }
        if student.metadata.get("optimizer"):
            metadata["started_from"] = {key: student.metadata.get(key) for key in
                                        ("initial_method_fingerprint", "dev_failure_rate", "dataset", "compiled_at")}
            metadata["started_from"]["method_fingerprint"] = student.fingerprint
        evolver = student.with_method(final.method)
        evolver.metadata = metadata
        evolver.compile_history = history
        return evolver


# ---------------------------------------------------------------------------------- evaluation


@dataclass
class _Context:
    """What the steps of one compile share: data, role LMs (with the call cache), detector."""

    dev: list[Item]
    evol_lm: dspy.LM
    optimizer_lm: dspy.LM
    detector: FailureDetector
    num_threads: int
    progress: ProgressCallback | None
    evaluator: DevEvaluator = field(init=False)
    responder: Responder = field(default_factory=Responder)
    analyze: dspy.Predict = field(default_factory=lambda: dspy.Predict(AnalyzeTrajectory))
    optimize: dspy.Predict = field(default_factory=lambda: dspy.Predict(OptimizeMethod))
    caches: list[CallCache] = field(default_factory=list)
    _evolvers: dict[str, Evolver] = field(default_factory=dict)

    def close(self) -> None:
        """Close the call caches this compile opened."""
        for cache in self.caches:
            cache.close()

    def evolver(self, method: str) -> Evolver:
        """An Evolver following ``method`` (one per distinct method)."""
        if method not in self._evolvers:
            self._evolvers[method] = Evolver(method)
        return self._evolvers[method]

    def stage(self, step: int, name: str, *, planned: int = 0) -> Stage:
        """The progress counter of one stage of a step."""
        return Stage(step, name, self.progress, planned=planned)

    def _lms(self) -> list[dspy.LM]:
        lms = [self.evol_lm, self.optimizer_lm]
        judge = self.detector.judge_lm
        return lms + ([judge] if judge is not None else [])

    def usage(self) -> dict[str, UsageDelta]:
        """Usage so far per role (ManagedLMs only; copies sharing a counter are counted once)."""
        seen: set[int] = set()
        totals: dict[str, UsageDelta] = {}
        for lm in self._lms():
            counter = getattr(lm, "_usage", None)
            if not isinstance(lm, ManagedLM) or id(counter) in seen:
                continue
            seen.add(id(counter))
            usage = lm.usage
            total = totals.get(usage.role) or UsageDelta(role=usage.role, model=model_name(lm))
            totals[usage.role] = total.plus(usage)
        return totals

    def usage_since(self, before: Mapping[str, UsageDelta]) -> list[UsageDelta]:
        return [after.minus(before[role]) if role in before else after for role, after in self.usage().items()]


class DevEvaluator:
    """Failure outcomes of methods on the dev items; each (method, item) is evaluated at most once.

    Evaluation runs under the evol LM in ``num_threads`` threads; a failing LM call is a failed
    item (see :func:`~autoevol.metrics.rate.evaluate_item`), never an aborted compile.
    """

    def __init__(self, context: _Context) -> None:
        self.context = context
        self._outcomes: dict[tuple[str, int], ItemOutcome] = {}

    def failures(self, methods: Mapping[int, str], start: int, stop: int, stage: Stage) -> dict[int, list[bool]]:
        """Whether each dev item in ``start:stop`` failed, for every method (paired: same items)."""
        todo = sorted({(method, index) for method in methods.values() for index in range(start, stop)
                       if (fingerprint(method), index) not in self._outcomes})
        stage.plan(len(todo))
        context = self.context
        for method in methods.values():
            context.evolver(method)  # built here, not concurrently in the worker threads

        def evaluate(task: tuple[str, int]) -> ItemOutcome:
            method, index = task
            return _safe_evaluate(context.dev[index].text, context.evolver(method), context)

        with dspy.context(lm=context.evol_lm):
            outcomes = run_in_threads(evaluate, todo, context.num_threads, stage.advance)
        for (method, index), outcome in zip(todo, outcomes):
            self._outcomes[(fingerprint(method), index)] = outcome
        return {key: [self._outcomes[(fingerprint(method), index)].verdict.failed for index in range(start, stop)]
                for key, method in methods.items()}

    def score(self, method: str, measured: int) -> MethodScore:
        """The failure rate of ``method`` on the first ``measured`` dev items (already evaluated)."""
        key = fingerprint(method)
        outcomes = [self._outcomes[(key, index)] for index in range(measured)]
        failed = [outcome for outcome in outcomes if outcome.verdict.failed]
        by_rule: dict[str, int] = {}
        for outcome in failed:
            rule = outcome.verdict.rule or "unknown"
            by_rule[rule] = by_rule.get(rule, 0) + 1
        return MethodScore(method=method, fingerprint=key, failure_rate=len(failed) / measured if measured else 0.0,
                           failed=len(failed), evaluated=measured, by_rule=by_rule)


def _safe_evaluate(instruction: str, evolver: Evolver, context: _Context) -> ItemOutcome:
    try:
        return evaluate_item(instruction, evolver, responder=context.responder, detector=context.detector)
    except BudgetExceeded:
        raise
    except Exception as error:  # a detector or adapter fault fails the item, not the compile
        return ItemOutcome(original=instruction, verdict=Verdict.failure(LM_ERROR, describe_error(error)))


# ---------------------------------------------------------------------------------- helpers


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def model_name(lm: Any) -> str:
    """A display name for an LM (never a key)."""
    return str(getattr(lm, "display_name", None) or getattr(lm, "model", None) or type(lm).__name__)


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def _items(data: Iterable[str | dspy.Example | SeedItem], prefix: str) -> list[Item]:
    """Plain items from strings, ``dspy.Example`` (field ``instruction``) or ``SeedItem``."""
    items = []
    for position, entry in enumerate(data):
        if isinstance(entry, SeedItem):
            if entry.problem is None:
                items.append(Item(id=entry.id, text=entry.instruction))
            continue
        if isinstance(entry, str):
            text, item_id = entry, f"{prefix}-{position}"
        elif isinstance(entry, (dspy.Example, Mapping)):
            if "instruction" not in entry:
                raise TypeError(f"{prefix} item {position} has no 'instruction' field")
            text, item_id = entry["instruction"], str(entry.get("id", f"{prefix}-{position}"))
        else:
            raise TypeError(f"{prefix} item {position}: expected a string, a dspy.Example or a SeedItem, "
                            f"not {type(entry).__name__}")
        if isinstance(text, str) and text.strip():
            items.append(Item(id=item_id, text=text))
    return items


def _distinct(items: Iterable[Item]) -> list[Item]:
    seen: set[str] = set()
    distinct = []
    for item in items:
        key = _normalized(item.text)
        if key not in seen:
            seen.add(key)
            distinct.append(item)
    return distinct


def _data_summary(pool: Sequence[Item], dev: Sequence[Item]) -> dict[str, Any]:
    pool_texts = [item.text for item in pool]
    dev_texts = [item.text for item in dev]
    return {
        "fingerprint": fingerprint(json.dumps([sorted(pool_texts + dev_texts)], ensure_ascii=False)),
        "train_fingerprint": fingerprint(json.dumps(sorted(pool_texts), ensure_ascii=False)),
        "dev_fingerprint": fingerprint(json.dumps(dev_texts, ensure_ascii=False)),
        "size": len(pool) + len(dev),
        "train_pool_size": len(pool),
        "dev_size": len(dev),
    }


def _cached_copy(lm: dspy.LM, cache: CallCache | None, created: list[CallCache], **overrides: Any) -> dspy.LM:
    """A copy of ``lm`` that records its calls in ``cache`` (ManagedLMs; copies share usage).

    Without a run cache, a ManagedLM keeps its own cache, or gets a new in-memory one (added to
    ``created``, to be closed with the compile).
    """
    copy = lm.copy(**overrides) if overrides else lm.copy()
    if isinstance(copy, ManagedLM):
        if cache is not None:
            copy.call_cache = cache
        elif copy.call_cache is None:
            copy.call_cache = CallCache()
            created.append(copy.call_cache)
    return copy


def _cached_detector(detector: FailureDetector, cache: CallCache | None, created: list[CallCache]) -> FailureDetector:
    """The detector, its information-gain judge (if any) recording calls in ``cache``."""
    if detector.judge_lm is None:
        return detector
    judge = _cached_copy(detector.judge_lm, cache, created)
    rules = [EqualityJudge(judge) if isinstance(rule, EqualityJudge) else rule for rule in detector.rules]
    return FailureDetector(rules, judge_lm=judge)


def _evolve_once(evolver: Evolver, text: str, detector: FailureDetector) -> tuple[str | None, Verdict | None]:
    """Evolve once and run the cheap evolution rules; an LM fault is a failed verdict."""
    evolved, problem = run_program(evolver, "evolution", text, "evolved_instruction")
    if problem is not None:
        return None, problem
    return evolved, detector.detect_evolution(text, evolved)


def _case(case_id: str, item: Item, stages: list[str], verdict: Verdict, answer: str | None) -> TrajectoryCase:
    description = "passed" if not verdict.failed else f"failed ({verdict.rule}): {verdict.reason}"
    return TrajectoryCase(case_id=case_id, item_id=item.id, stages=stages, answer=answer,
                          failed=verdict.failed, verdict=description)


def feedback_text(issues: Sequence[TrajectoryIssue], feedback: str) -> str:
    """The analysis as the method rewrite reads it: the failed cases, then the suggested changes."""
    lines = [f"- case {issue.case_id} ({issue.category}): {issue.reason}" for issue in issues]
    found = "Failed cases:\n" + "\n".join(lines) if lines else "No case was found to fail."
    return f"{found}\n\nWhat to change:\n{feedback or '(no suggestion)'}"


def clean_method(text: Any) -> str:
    """A proposed method without surrounding whitespace, code fences or quotes."""
    method = str(text or "").strip()
    if method.startswith("```") and method.endswith("```") and len(method) > 6:
        method = method[3:-3].strip()
        first, _, rest = method.partition("\n")
        if rest and first.strip().isalpha() and len(first.split()) == 1:  # a language tag
            method = rest.strip()
    if len(method) >= 2 and method[0] == method[-1] and method[0] in "\"'":
        method = method[1:-1].strip()
    return method


def method_problem(text: str, current: str) -> str | None:
    """Why a proposed method is not a usable candidate, or ``None``."""
    if not text:
        return "the optimizer gave no method"
    if len(text.split()) < MIN_METHOD_WORDS:
        return f"the proposed method is too short ({len(text.split())} words)"
    if _normalized(text) == _normalized(current):
        return "the proposed method is identical to the current one"
    if "[[ ##" in text:
        return "the proposed method contains the prompt's field markers"
    return None


def _invalid(record: CandidateRecord, reason: str) -> CandidateRecord:
    record.invalid, record.invalid_reason = True, reason
    logger.info("candidate %d is invalid: %s", record.index, reason)
    return record


def _mark_duplicates(candidates: Sequence[CandidateRecord]) -> None:
    first: dict[str, int] = {}
    for candidate in candidates:
        if candidate.invalid or candidate.method is None:
            continue
        key = _normalized(candidate.method)
        if key in first:
            _invalid(candidate, f"the same method as candidate {first[key]}")
        else:
            first[key] = candidate.index


def _steps_without_improvement(history: Sequence[StepRecord]) -> int:
    stale = 0
    for record in history:
        stale = 0 if record.improved else stale + 1
    return stale


def _total_usage(parts: Iterable[Sequence[UsageDelta]]) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = {}
    for part in parts:
        for usage in part:
            total = totals.setdefault(usage.role, {"calls": 0, "cache_hits": 0, "input_tokens": 0,
                                                   "output_tokens": 0})
            for name in total:
                total[name] += getattr(usage, name)
    return totals


def _describe(candidate: CandidateRecord) -> str:
    if candidate.invalid:
        return "invalid"
    if candidate.score is None:
        return "-"
    return f"{100 * candidate.score.failure_rate:.0f}%" + (" (dropped)" if candidate.dropped else "")


def _log_step(record: StepRecord) -> None:
    rates = ", ".join(_describe(candidate) for candidate in record.candidates)
    outcome = "incumbent kept" if record.winner is None else f"candidate {record.winner} wins"
    logger.info("step %d: incumbent %.1f%%, candidates [%s]: %s, dev failure rate %.1f%% (%.1fs)",
                record.step, 100 * record.incumbent.failure_rate, rates, outcome,
                100 * record.selected.failure_rate, record.seconds)
