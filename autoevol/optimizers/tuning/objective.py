"""The study objective: one trial compiles a teleprompter with suggested hyperparameters and returns
the held-out failure rate of the compiled evolver (reporting the dev rate per step, for pruning, and
uploading the evolver as the trial's artifact).
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from autoevol.optimizers.gepa import build_teleprompter
from autoevol.optimizers.tuning.search_space import OPTIMIZER_PARAM, SearchSpace
from autoevol.optimizers.tuning.storage import StudyError


@dataclass
class TrialBudget:
    """Per-trial limits, enforced as Optuna constraints (a trial above them is infeasible) and by
    stopping its compile at the next step."""

    max_calls: int | None = None
    max_tokens: int | None = None

    def constraints(self, calls: int, tokens: int) -> list[float]:
        values = [0.0]
        if self.max_calls is not None:
            values.append(float(calls - self.max_calls))
        if self.max_tokens is not None:
            values.append(float(tokens - self.max_tokens))
        return values

    def exceeded(self, calls: int, tokens: int) -> bool:
        return any(value > 0 for value in self.constraints(calls, tokens))


def instruction_text(item: Any) -> str:
    """The instruction of a plain string or of an item with an ``instruction`` field."""
    return item if isinstance(item, str) else getattr(item, "instruction", str(item))


def split_heldout(trainset: Sequence[Any], *, share: float = 0.2, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """(train, heldout): a seeded ``share`` of ``trainset`` (at least one item) set aside for the objective."""
    items = list(trainset)
    if len(items) < 2:
        raise StudyError("a study needs at least 2 items to set some aside as held-out; give heldout=...")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    count = max(1, round(len(items) * share))
    held = set(order[:count])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


def _usage(lms: Sequence[Any]) -> tuple[int, int, dict[str, int]]:
    calls = tokens = 0
    by_role: dict[str, int] = {}
    for lm in lms:
        usage = getattr(lm, "usage", None)
        if usage is None or callable(usage):
            continue
        calls += usage.calls
        tokens += usage.input_tokens + usage.output_tokens
        by_role[usage.role] = by_role.get(usage.role, 0) + usage.calls
    return calls, tokens, by_role


def record_rate(record: Any) -> float | None:
    """The dev failure rate of the incumbent after a step, from the teleprompter's step record."""
    for path in (("selected", "failure_rate"), ("incumbent_rate",), ("failure_rate",), ("incumbent", "failure_rate")):
        value: Any = record
        for name in path:
            value = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
            if value is None:
                break
        if isinstance(value, (int, float)):
            return float(value)
    return None


class Objective:
    """The study objective: compile with suggested hyperparameters, return the held-out failure rate."""

    def __init__(self, *, trainset: Sequence[Any], valset: Sequence[Any] | None, heldout: Sequence[str],
                 space: SearchSpace, evol_lm: Any, optimizer_lm: Any, artifact_store: FileSystemArtifactStore,
                 seed: int, num_threads: int, trial_budget: TrialBudget, detector: Any = None,
                 teleprompter_options: dict[str, Any] | None = None,
                 teleprompter_factory: Callable[..., Any] | None = None) -> None:
        self.trainset = list(trainset)
        self.valset = list(valset) if valset is not None else None
        self.heldout = list(heldout)
        self.space = space
        self.evol_lm = evol_lm
        self.optimizer_lm = optimizer_lm
        self.store = artifact_store
        self.seed = seed
        self.num_threads = num_threads
        self.budget = trial_budget
        self.detector = detector
        self.options = dict(teleprompter_options or {})
        self.factory = teleprompter_factory

    def _lms(self) -> list[Any]:
        return [lm for lm in {id(self.evol_lm): self.evol_lm, id(self.optimizer_lm): self.optimizer_lm}.values()
                if lm is not None]

    def __call__(self, trial: optuna.Trial) -> float:
        from autoevol.metrics.rate import failure_rate
        from autoevol.programs.evolver import Evolver

        params = self.space.suggest(trial)
        trial.set_user_attr("hyperparameters", params)
        lms = self._lms()
        calls0, tokens0, roles0 = _usage(lms)
        started = time.perf_counter()
        state = {"pruned": False, "over_budget": False, "steps": 0}

        def spent() -> tuple[int, int, dict[str, int]]:
            calls, tokens, roles = _usage(lms)
            return calls - calls0, tokens - tokens0, {r: n - roles0.get(r, 0) for r, n in roles.items()}

        def on_step(step: int, record: Any) -> bool:
            state["steps"] = step
            rate = record_rate(record)
            if rate is not None:
                trial.report(rate, step)
                if trial.should_prune():
                    state["pruned"] = True
                    return False
            calls, tokens, _ = spent()
            if self.budget.exceeded(calls, tokens):
                state["over_budget"] = True
                return False
            return True

        teleprompter = self._teleprompter(params, on_step)
        compiled = teleprompter.compile(Evolver(), trainset=self.trainset, valset=self.valset)

        def finish(value: float | None) -> None:
            calls, tokens, roles = spent()
            trial.set_user_attr("calls", calls)
            trial.set_user_attr("tokens", tokens)
            trial.set_user_attr("calls_by_role", roles)
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
            trial.set_user_attr("steps", state["steps"])
            trial.set_user_attr("over_budget", state["over_budget"])
            constraints = self.budget.constraints(calls, tokens)
            trial.set_user_attr("constraints", constraints)
            if hasattr(trial, "set_constraint"):
                for key, value in zip(("budget", "calls", "tokens"), constraints, strict=False):
                    trial.set_constraint(key, value)

        if state["pruned"]:
            finish(None)
            raise optuna.TrialPruned(f"pruned at step {state['steps']}")
        with dspy.context(lm=self.evol_lm):
            result = failure_rate(compiled, self.heldout, num_threads=self.num_threads,
                                  **({"detector": self.detector} if self.detector is not None else {}))
        finish(result.rate)
        compiled.metadata.setdefault("study", {}).update(
            {"study": trial.study.study_name, "trial": trial.number, "hyperparameters": params,
             "heldout_failure_rate": result.rate, "heldout_items": len(self.heldout)})
        with tempfile.TemporaryDirectory(prefix="autoevol-trial-") as folder:
            path = compiled.save(Path(folder) / f"trial-{trial.number}-evolver.json")
            artifact_id = upload_artifact(artifact_store=self.store, file_path=str(path), study_or_trial=trial,
                                          mimetype="application/json")
        trial.set_user_attr("artifact_id", artifact_id)
        trial.set_user_attr("heldout_failed", result.failed)
        return result.rate

    def _teleprompter(self, params: dict[str, Any], on_step: Callable[[int, Any], bool]) -> Any:
        if self.factory is not None:
            return self.factory(params=params, step_callback=on_step)
        # a trial that found nothing better is still a measurement: its held-out rate is e_0's. The
        # study measures every trial's evolver on its own held-out items, so a trial spends no data
        # on a confirmation split of its own. The settings (these, the study's teleprompter options
        # and the trial's values) become the teleprompter's CompileSettings.
        options = {"optimizer_lm": self.optimizer_lm, "evol_lm": self.evol_lm, "seed": self.seed,
                   "num_threads": self.num_threads, "keep_unchanged": True, "confirm_size": 0, **self.options}
        if self.detector is not None:
            options["detector"] = self.detector
        settings = dict(params)
        optimizer = settings.pop(OPTIMIZER_PARAM, "auto-evol")
        # GEPA has no steps to report: build_teleprompter leaves the step callback out, and its trials are not pruned
        return build_teleprompter(optimizer, **options, **settings, step_callback=on_step)


def check_data_fits(space: SearchSpace, trainset: Sequence[Any], valset: Sequence[Any] | None) -> None:
    """Fail before any trial when the largest batch and dev sizes of the space need more data than given."""
    train = len({instruction_text(x).strip().casefold() for x in trainset})
    batch, dev = int(space.high("batch_size")), int(space.high("dev_size"))
    if valset is None and batch + dev > train:
        raise StudyError(f"the search space reaches batch_size {batch} + dev_size {dev} = {batch + dev} "
                         f"training instructions, but only {train} are left after setting the held-out items "
                         "aside; narrow 'batch_size'/'dev_size' in the search space (--space) or add data")
    if valset is not None:
        dev_items = len({instruction_text(x).strip().casefold() for x in valset})
        if dev > dev_items:
            raise StudyError(f"the search space reaches dev_size {dev}, but the dev set has {dev_items} "
                             "instructions; narrow 'dev_size' in the search space (--space) or add data")
        if batch > train:
            raise StudyError(f"the search space reaches batch_size {batch}, but the training data has {train} "
                             "instructions; narrow 'batch_size' in the search space (--space) or add data")
