"""``GEPAEvolInstruct``: DSPy's GEPA optimizing an Evolver's method, on the same job as Auto Evol-Instruct.

GEPA (Agrawal et al., 2025, arXiv 2507.19457) evolves a program's instructions by reflection: it
runs the program on a small mini-batch, shows the reflection LM the inputs, outputs and the
metric's textual feedback, takes the new instruction it writes, and keeps it when it does better
on the mini-batch and then on the validation set (a Pareto front over validation items). Here the
program is the :class:`~autoevol.programs.Evolver`, the metric is
:class:`~autoevol.metrics.feedback.EvolutionFeedback` (1 for an evolution that passed every failure
rule, 0 with the rule and its reason otherwise), the reflection LM is the optimizer LM, and the
training pool and the dev set are exactly the split :class:`AutoEvolInstruct` uses with the same
seed and sizes. As there, a method better on the dev set is measured against the starting method
on a confirmation split that GEPA never saw, and is the result only when the paired test supports
its gain there. The result is an ordinary compiled evolver: the same file, metadata and history
shape (one history entry per candidate GEPA accepted), so ``show``, ``report``, ``compare``,
``evolve --program`` and warm starts read it unchanged.

Budget: GEPA counts metric calls (one evolution answered and judged: 1 to 3 LM calls, the same
unit as one dev item of Auto Evol-Instruct). The default is what Auto Evol-Instruct's schedule
would measure with the same settings (:func:`matched_metric_calls`).

Example: ``GEPAEvolInstruct(optimizer_lm=big, evol_lm=small).compile(Evolver(), trainset=texts).save("e.json")``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

import dspy
from dspy.teleprompt.teleprompt import Teleprompter
from gepa.strategies.eval_policy import FullEvaluationPolicy

from autoevol.lm.cache import CallCache
from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.feedback import EvolutionFeedback
from autoevol.optimizers.auto_evol.evaluation import DevEvaluator, EvolRole, Item
from autoevol.optimizers.auto_evol.found_nothing import CompileFoundNothing, NoImprovement, unconfirmed
from autoevol.optimizers.auto_evol.records import CandidateRecord, MethodScore, StartRecord, StepRecord
from autoevol.optimizers.auto_evol.result import compiled_evolver
from autoevol.optimizers.auto_evol.roles import CompileLMs, configured_evol_lm, evol_answer_settings, role_models
from autoevol.optimizers.auto_evol.run_dir import RunDirectory, RunHeader, now
from autoevol.optimizers.auto_evol.selection import CONFIRM_ALPHA, PairedComparison, compare
from autoevol.optimizers.auto_evol.settings import CompileSettings
from autoevol.optimizers.auto_evol.split import DataSplit, Instructions, data_summary, split_pool_and_dev
from autoevol.optimizers.auto_evol.spending import Spending
from autoevol.optimizers.gepa.stops import SPENDING_RECORD, CallLimit, FatalErrors, matched_metric_calls
from autoevol.programs.demonstration import Candidate
from autoevol.programs.evolver import Evolver
from autoevol.version import __version__

logger = logging.getLogger(__name__)

__all__ = ["OPTIMIZERS", "GEPAEvolInstruct", "build_teleprompter", "matched_metric_calls"]

#: The optimizers ``compile --optimizer`` and ``tune`` choose from.
OPTIMIZERS = ("auto-evol", "gepa")
OptimizerName = Literal["auto-evol", "gepa"]
#: The file GEPA saves its state to, in its run directory.
GEPA_STATE_FILE = "gepa_state.bin"


class GEPAEvolInstruct(Teleprompter):
    """Optimize an Evolver's evolving method with ``dspy.GEPA`` and autoevol's failure feedback.

    Args:
        optimizer_lm: GEPA's reflection LM (reads the feedback, writes new methods).
        evol_lm: evolves and answers; default: the LM configured in DSPy.
        detector: failure detection; build it with ``judge_lm=...`` to add the judge.
        dev_size: |D|, GEPA's validation set (the same items Auto Evol-Instruct's dev set holds).
        batch_size, num_candidates, max_steps, evolution_rounds: Auto Evol-Instruct's settings;
            here they only set the default budget (:func:`matched_metric_calls`); ``batch_size``
            also checks the pool is large enough, as the split does for Auto Evol-Instruct.
        max_metric_calls: GEPA's budget in metric calls (default: matched, see above).
        max_lm_calls: also stop once the compile made this many LM calls, every role counted
            (calls answered from the run's cache are free and not counted); for comparisons at
            equal LM-call budgets. Checked between GEPA iterations, so the last one may pass it.
        reflection_minibatch_size: training items per GEPA iteration (GEPA's default 3).
        candidate_selection_strategy: ``"pareto"`` (GEPA's default) or ``"current_best"``.
        evol_temperature: temperature of the evol LM (0 as in the paper); ``None`` keeps the LM's.
        answer_max_tokens: caps the answers used for failure detection.
        keep_unchanged: return the starting method when nothing beat it, instead of raising
            :class:`CompileFoundNothing`.
        seed: seeds the split and GEPA.
        num_threads: items evaluated in parallel.
    """

    def __init__(
        self,
        *,
        optimizer_lm: dspy.LM,
        evol_lm: dspy.LM | None = None,
        detector: FailureDetector | None = None,
        dev_size: int = 50,
        confirm_size: int | None = None,
        confirm_alpha: float = CONFIRM_ALPHA,
        batch_size: int = 10,
        num_candidates: int = 5,
        max_steps: int = 10,
        evolution_rounds: int = 1,
        max_metric_calls: int | None = None,
        max_lm_calls: int | None = None,
        reflection_minibatch_size: int = 3,
        candidate_selection_strategy: Literal["pareto", "current_best"] = "pareto",
        evol_temperature: float | None = 0.0,
        answer_max_tokens: int | None = None,
        keep_unchanged: bool = False,
        seed: int = 0,
        num_threads: int = 4,
    ) -> None:
        super().__init__()
        confirm_size = dev_size if confirm_size is None else confirm_size
        if confirm_size < 0:
            raise ValueError("confirm_size must be at least 0")
        if not 0 < confirm_alpha < 1:
            raise ValueError("confirm_alpha must be between 0 and 1")
        for name, value in (("dev_size", dev_size), ("batch_size", batch_size), ("num_candidates", num_candidates),
                            ("evolution_rounds", evolution_rounds), ("reflection_minibatch_size",
                                                                     reflection_minibatch_size),
                            ("num_threads", num_threads)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if max_steps < 0:
            raise ValueError("max_steps must be at least 0")
        if max_metric_calls is not None and max_metric_calls < dev_size:
            raise ValueError(f"max_metric_calls must be at least dev_size ({dev_size}): GEPA first measures "
                             "the starting method on the whole dev set")
        if max_lm_calls is not None and max_lm_calls < 1:
            raise ValueError("max_lm_calls must be at least 1")
        if candidate_selection_strategy not in ("pareto", "current_best"):
            raise ValueError("candidate_selection_strategy must be 'pareto' or 'current_best'")
        self.optimizer_lm, self.evol_lm, self.detector = optimizer_lm, evol_lm, detector
        self.dev_size, self.batch_size, self.num_candidates = dev_size, batch_size, num_candidates
        self.confirm_size, self.confirm_alpha = confirm_size, confirm_alpha
        self.max_steps, self.evolution_rounds = max_steps, evolution_rounds
        self.max_metric_calls = max_metric_calls if max_metric_calls is not None else matched_metric_calls(
            dev_size=dev_size, batch_size=batch_size, num_candidates=num_candidates, max_steps=max_steps,
            evolution_rounds=evolution_rounds)
        self.max_lm_calls = max_lm_calls
        self.reflection_minibatch_size = reflection_minibatch_size
        self.candidate_selection_strategy = candidate_selection_strategy
        self.evol_temperature, self.answer_max_tokens = evol_temperature, answer_max_tokens
        self.keep_unchanged, self.seed, self.num_threads = keep_unchanged, seed, num_threads

    def hyperparameters(self) -> dict[str, Any]:
        """The settings that shape the result (in run.json and the evolver's metadata)."""
        return {"dev_size": self.dev_size, "confirm_size": self.confirm_size, "confirm_alpha": self.confirm_alpha,
                "batch_size": self.batch_size, "num_candidates": self.num_candidates,
                "max_steps": self.max_steps, "evolution_rounds": self.evolution_rounds,
                "max_metric_calls": self.max_metric_calls, "max_lm_calls": self.max_lm_calls,
                "reflection_minibatch_size": self.reflection_minibatch_size,
                "candidate_selection_strategy": self.candidate_selection_strategy,
                "evol_temperature": self.evol_temperature, "answer_max_tokens": self.answer_max_tokens,
                "seed": self.seed}

    def split(self, trainset: Instructions, valset: Instructions | None = None) -> DataSplit:
        """The training pool, the dev set and the confirmation split: the split :class:`AutoEvolInstruct` makes."""
        return split_pool_and_dev(trainset, valset, batch_size=self.batch_size, dev_size=self.dev_size,
                                  seed=self.seed, confirm_size=self.confirm_size)

    def compile(self, student: Evolver, *, trainset: Instructions, valset: Instructions | None = None,
                run_dir: str | Path | None = None) -> Evolver:
        """Optimize ``student``'s method with GEPA; returns a new Evolver with metadata and ``compile_history``.

        ``run_dir`` holds GEPA's own state (``gepa/``) and the call cache: rerunning with it
        resumes after the last completed GEPA iteration and repeats no completed LM call (a
        larger ``max_metric_calls`` continues a finished run).

        Raises:
            NotEnoughData, RunDirError: as :meth:`AutoEvolInstruct.compile`.
            CompileFoundNothing: no candidate beat the starting method on the dev set, or its gain
                did not hold on the confirmation split (not raised with ``keep_unchanged=True``,
                which returns the starting method).
            BudgetExceeded, or a permanent LM error: GEPA is stopped and the error re-raised.
        """
        pool, dev, confirm = self.split(trainset, valset)
        header = self._run_header(student, pool, dev, confirm)
        run = RunDirectory.open(run_dir, header) if run_dir is not None else None
        lms = CompileLMs(self._evol_lm(), self.optimizer_lm, self.detector or FailureDetector(),
                         CallCache(run.cache_path) if run is not None else None,
                         **({} if self.evol_temperature is None else {"temperature": self.evol_temperature}))
        spending = Spending(lms, run.path / SPENDING_RECORD if run is not None else None,
                            earlier=run.start() if run is not None else None)  # with earlier runs' spending
        try:
            metric = EvolutionFeedback(detector=lms.detector, evol_lm=lms.evol, answer_max_tokens=self.answer_max_tokens)
            result, stopped = self._run_gepa(student, pool, dev, metric, lms, run, spending)
            role = EvolRole(evol_lm=lms.evol, detector=lms.detector, num_threads=self.num_threads,
                            answer_max_tokens=self.answer_max_tokens)
            log = run.measurements(dev=dev, confirm=confirm) if run is not None else None
            start, final = _rescore(student, _method_of(result.candidates[result.best_idx]),
                                    DevEvaluator(role, dev, log=log))
            if not _better(final, start):
                final = start
            confirmation = self._confirm(start, final, DevEvaluator(role, confirm, log=log, split="confirm"))
            history = _history(result, start, final)
            spending.save()
            usage, seconds = spending.usage(), spending.seconds()
        finally:
            lms.close()
        start_record = StartRecord(score=start, usage=usage, seconds=seconds)
        if run is not None:
            run.write_start(start_record)
            for record in history:
                run.write_step(record)
            if confirmation is not None:
                run.write_confirmation(confirmation, start=start.fingerprint, result=final.fingerprint)
        chosen = start if confirmation is not None and not confirmation.supported else final
        evolver = compiled_evolver(student, chosen, start_record, history, hyperparameters=self.hyperparameters(),
                                   models=self._models(), detector_rules=lms.detector.rule_ids,
                                   data=header.data, stopped=stopped, confirmation=confirmation)
        evolver.metadata["optimizer"] = "gepa"
        evolver.metadata["gepa"] = _gepa_summary(result, self.max_metric_calls)
        found_nothing = _found_nothing(start, final, result, evolver, confirmation)
        if found_nothing is not None and not self.keep_unchanged:
            raise found_nothing
        return evolver

    def _run_gepa(self, student: Evolver, pool: Sequence[Item], dev: Sequence[Item], metric: EvolutionFeedback,
                  lms: CompileLMs, run: RunDirectory | None, spending: Spending) -> tuple[Any, str]:
        """GEPA's detailed results, and why it stopped (``max_metric_calls`` or ``max_lm_calls``)."""
        fatal = FatalErrors()
        limit = CallLimit(spending, self.max_lm_calls)
        stoppers: list[Any] = [fatal, limit]
        optimizer = dspy.GEPA(
            metric=metric, max_metric_calls=self.max_metric_calls, reflection_lm=lms.optimizer,
            reflection_minibatch_size=self.reflection_minibatch_size,
            candidate_selection_strategy=self.candidate_selection_strategy, use_merge=False,
            num_threads=self.num_threads, log_dir=str(run.path / "gepa") if run is not None else None,
            track_stats=True, warn_on_score_mismatch=False, seed=self.seed,
            gepa_kwargs={"stop_callbacks": stoppers,
                         "val_evaluation_policy": ResumingEvaluation(run.path / "gepa" if run is not None else None)})
        logger.info("GEPA: %d training items, %d dev items, at most about %d metric calls", len(pool), len(dev),
                    self.max_metric_calls)
        callbacks = [*(dspy.settings.get("callbacks") or []), fatal]
        try:
            with dspy.context(lm=lms.evol, callbacks=callbacks):
                optimized = optimizer.compile(student, trainset=_examples(pool), valset=_examples(dev))
        except Exception as error:
            if fatal.error is not None:
                raise fatal.error from error
            raise
        if fatal.error is not None:
            raise fatal.error
        return optimized.detailed_results, "max_lm_calls" if limit.fired else "max_metric_calls"

    def _confirm(self, start: MethodScore, final: MethodScore, confirm: DevEvaluator) -> PairedComparison | None:
        """The final method against the starting method on the confirmation split (``None``: nothing
        to confirm, or no confirmation split). Items either measurement could not judge are left out."""
        if final.fingerprint == start.fingerprint or not confirm.dev:
            return None
        _measure(confirm, {0: start, 1: final})
        size = len(confirm.dev)
        comparison = compare(confirm.flags(final, size), confirm.flags(start, size), level=self.confirm_alpha)
        logger.info("confirmation on %d held-out items: %s: the gain %s", comparison.items, comparison.describe(),
                    "holds" if comparison.supported else "does not hold")
        return comparison

    def _run_header(self, student: Evolver, pool: Sequence[Item], dev: Sequence[Item],
                    confirm: Sequence[Item]) -> RunHeader:
        settings: dict[str, Any] = {"optimizer": "gepa"}
        settings.update((key, value) for key, value in self.hyperparameters().items()
                        if key not in ("max_metric_calls", "max_lm_calls", "max_steps", "num_candidates"))  # budgets may grow
        detector = self.detector or FailureDetector()
        settings.update(models=self._models(), **evol_answer_settings(self._evol_lm()),
                        detector_rules=detector.rule_ids)
        return RunHeader(autoevol_version=__version__, start_method_fingerprint=student.fingerprint,
                         settings=settings, data=data_summary(pool, dev, confirm))

    def _evol_lm(self) -> dspy.LM:
        return configured_evol_lm(self.evol_lm)

    def _models(self) -> dict[str, str]:
        return role_models(self._evol_lm(), self.optimizer_lm, self.detector)


def build_teleprompter(optimizer: OptimizerName, *, settings: CompileSettings | None = None,
                       **keywords: Any) -> Teleprompter:
    """An ``AutoEvolInstruct`` or a ``GEPAEvolInstruct`` from Auto Evol-Instruct's settings.

    ``settings`` is a :class:`~autoevol.optimizers.auto_evol.settings.CompileSettings`; ``keywords``
    are the LMs, the detector, the callbacks and settings that override its fields, as
    :class:`~autoevol.optimizers.auto_evol.loop.AutoEvolInstruct` takes them. For ``"gepa"``, the
    settings GEPA has no use for (racing, proposals, patience, the optimizer's sampling, step
    callbacks, progress) are left out, and ``max_metric_calls`` (GEPA only) is honoured; for
    ``"auto-evol"`` a ``max_metric_calls`` of ``None`` is ignored.
    """
    from autoevol.optimizers.auto_evol import AutoEvolInstruct

    if optimizer == "gepa":
        shared = {} if settings is None else {field.name: getattr(settings, field.name) for field in fields(settings)}
        accepted = set(inspect.signature(GEPAEvolInstruct.__init__).parameters) - {"self"}
        return GEPAEvolInstruct(**{key: value for key, value in {**shared, **keywords}.items() if key in accepted})
    if optimizer == "auto-evol":
        if keywords.pop("max_metric_calls", None) is not None:
            raise ValueError("max_metric_calls is a GEPA budget; Auto Evol-Instruct's budget is its steps")
        return AutoEvolInstruct(settings=settings, **keywords)
    raise ValueError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")


# ---------------------------------------------------------------------------------- helpers


class ResumingEvaluation(FullEvaluationPolicy):
    """GEPA's full validation policy, except that a resumed run measures its seed on one dev item only.

    GEPA evaluates the seed candidate before it looks for saved state, and discards that evaluation
    when it loads a state from ``state_dir``; without the call cache (another machine) the whole dev
    set's calls would be spent for nothing. One item, because dspy refuses to evaluate none.
    """

    def __init__(self, state_dir: Path | None) -> None:
        self.state_dir = state_dir

    def get_seed_eval_batch(self, loader: Any) -> list[Any]:  # GEPA's optional policy hook
        if self.state_dir is not None and (self.state_dir / GEPA_STATE_FILE).exists():
            return list(loader.all_ids())[:1]
        return list(loader.all_ids())


def _rescore(student: Evolver, best: str, dev: DevEvaluator) -> tuple[MethodScore, MethodScore]:
    """The starting method's and GEPA's best method's dev verdicts by rule, measured as a compile
    measures (paired: an item either measurement could not judge is left out of both)."""
    methods = {0: Candidate(method=student.method, demos=tuple(student.demos)),
               1: Candidate(method=best, demos=tuple(student.demos))}
    _measure(dev, methods)
    return dev.score(methods[0], len(dev.dev)), dev.score(methods[1], len(dev.dev))


def _measure(evaluator: DevEvaluator, methods: dict[int, Candidate]) -> None:
    """Every method on every item of ``evaluator`` (those its measurement log holds are not measured again)."""
    evaluator.failures(methods, 0, len(evaluator.dev), on_planned=lambda count: None, on_done=lambda count: None)


def _examples(items: Sequence[Item]) -> list[dspy.Example]:
    return [dspy.Example(instruction=item.text, id=item.id).with_inputs("instruction") for item in items]


def _method_of(program: Any) -> str:
    return program.evolve.signature.instructions


def _score(evolver: Evolver, *, failed: int, evaluated: int, by_rule: dict[str, int] | None = None) -> MethodScore:
    """A MethodScore of ``evolver``: its method and demonstrations."""
    return MethodScore(method=evolver.method, demos=tuple(evolver.demos),
                       failure_rate=failed / evaluated if evaluated else 0.0, failed=failed, evaluated=evaluated,
                       by_rule=by_rule or {})


def _candidate_score(result: Any, index: int) -> MethodScore:
    scores = list(result.val_subscores[index].values())
    return _score(result.candidates[index], failed=sum(score < 1.0 for score in scores), evaluated=len(scores))


def _history(result: Any, start: MethodScore, final: MethodScore) -> list[StepRecord]:
    """One step per candidate GEPA accepted, in the order it found them, against the best so far."""
    best = start
    history = []
    for index in range(1, len(result.candidates)):
        score = final if _method_of(result.candidates[index]) == final.method else _candidate_score(result, index)
        parents = [parent for parent in (result.parents[index] or []) if parent is not None]
        change = (f"GEPA reflection on candidate {parents[0]}" if len(parents) == 1
                  else f"GEPA merge of candidates {', '.join(map(str, parents))}" if parents else "GEPA proposal")
        candidate = CandidateRecord(index=1, candidate=result.candidates[index].candidate, change=change,
                                    score=score)
        improved = score.failure_rate < best.failure_rate
        selected = score if improved else best
        history.append(StepRecord(step=index, incumbent=best, trajectory=[], candidates=[candidate],
                                  winner=1 if improved else None, selected=selected,
                                  finished_at=now()))
        best = selected
    return history


def _gepa_summary(result: Any, budget: int) -> dict[str, Any]:
    """GEPA's per-candidate scores for the evolver's metadata."""
    return {
        "max_metric_calls": budget, "total_metric_calls": result.total_metric_calls,
        "num_full_val_evals": result.num_full_val_evals, "best_idx": result.best_idx,
        "candidates": [
            {"index": index, "method_fingerprint": program.fingerprint,
             "parents": list(result.parents[index] or []),
             "dev_score": round(result.val_aggregate_scores[index], 4),
             "dev_failure_rate": round(1.0 - result.val_aggregate_scores[index], 4),
             "discovered_at_metric_calls": result.discovery_eval_counts[index]}
            for index, program in enumerate(result.candidates)
        ],
    }


def _better(final: MethodScore, start: MethodScore) -> bool:
    return final.fingerprint != start.fingerprint and final.failure_rate < start.failure_rate


def _found_nothing(start: MethodScore, final: MethodScore, result: Any, evolver: Evolver,
                   confirmation: PairedComparison | None) -> CompileFoundNothing | None:
    if confirmation is not None and not confirmation.supported:
        return unconfirmed(start, final, confirmation, evolver)
    if _better(final, start):
        return None
    if start.failed == 0:
        return NoImprovement("the starting method fails no dev item: there is nothing to optimize", evolver)
    accepted = len(result.candidates) - 1
    if accepted == 0:
        return NoImprovement(f"GEPA accepted no candidate method in {result.total_metric_calls} metric calls (none "
                             "beat its parent on a reflection mini-batch)", evolver)
    return NoImprovement(f"none of the {accepted} candidate methods GEPA accepted beat the starting method's dev "
                         f"failure rate of {100 * start.failure_rate:.0f}%", evolver)
