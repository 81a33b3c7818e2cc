"""Running a study: :func:`tune` opens (or resumes) a study and runs its trials until they are done
or the study's budget of LM calls or tokens is spent (:class:`StudyBudget`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore

from autoevol.optimizers.tuning.objective import (
    Objective,
    TrialBudget,
    check_data_fits,
    instruction_text,
    split_heldout,
)
from autoevol.optimizers.tuning.search_space import SearchSpace
from autoevol.optimizers.tuning.storage import StudyError, is_journal
from autoevol.optimizers.tuning.study import open_study

logger = logging.getLogger(__name__)

DEFAULT_STUDY = "autoevol"

__all__ = ["DEFAULT_STUDY", "StudyBudget", "tune"]


class StudyBudget:
    """Stops the study cleanly (``study.stop()``) once all its trials together spent the budget."""

    def __init__(self, max_calls: int | None = None, max_tokens: int | None = None) -> None:
        self.max_calls = max_calls
        self.max_tokens = max_tokens

    def spent(self, study: optuna.Study) -> tuple[int, int]:
        trials = study.get_trials(deepcopy=False)
        return (sum(int(t.user_attrs.get("calls", 0)) for t in trials),
                sum(int(t.user_attrs.get("tokens", 0)) for t in trials))

    def exhausted(self, study: optuna.Study) -> bool:
        calls, tokens = self.spent(study)
        return ((self.max_calls is not None and calls >= self.max_calls)
                or (self.max_tokens is not None and tokens >= self.max_tokens))

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.exhausted(study):
            logger.info("study budget spent: stopping the study")
            study.set_user_attr("budget_stopped", True)
            study.stop()


def tune(
    trainset: Sequence[Any],
    *,
    valset: Sequence[Any] | None = None,
    heldout: Sequence[Any] | None = None,
    n_trials: int,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str = DEFAULT_STUDY,
    search_space: SearchSpace | dict[str, Any] | None = None,
    evol_lm: Any,
    optimizer_lm: Any,
    seed: int = 0,
    pruner: str = "median",
    n_startup_trials: int = 3,
    max_trial_calls: int | None = None,
    max_trial_tokens: int | None = None,
    max_study_calls: int | None = None,
    max_study_tokens: int | None = None,
    artifact_dir: str | Path | None = None,
    num_threads: int = 4,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    retry_failed: int = 0,
    enqueue_defaults: bool = True,
    detector: Any = None,
    timeout: float | None = None,
    catch: tuple[type[BaseException], ...] = (Exception,),
    teleprompter_options: dict[str, Any] | None = None,
    teleprompter_factory: Callable[..., Any] | None = None,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> optuna.Study:
    """Run ``n_trials`` trials of the study ``study_name`` (created, or resumed where it stopped).

    Args:
        trainset: items the teleprompter trains on (and carves its dev set from unless ``valset``).
        valset: the dev items candidates are selected on inside each compile.
        heldout: items scored by the objective only; default: a seeded 20% of ``trainset``, set aside.
        n_trials: trials this call runs (other workers may run more of the same study).
        storage: an Optuna storage URL (default ``sqlite:///autoevol-studies.db``), a journal file
            (``journal:PATH``), or a storage object.
        search_space: a :class:`SearchSpace` or a mapping of overrides (fixed values or ``{low, high}``).
        max_trial_calls / max_trial_tokens: per-trial budget, an Optuna constraint.
        max_study_calls / max_study_tokens: once the study's trials spent this, the study stops cleanly.
        artifact_dir: the file-system artifact store (default: next to a SQLite/journal file).
        heartbeat_interval / grace_period: RDB only; a dead worker's trial is failed after the grace period.
    """
    space = search_space if isinstance(search_space, SearchSpace) else SearchSpace.from_mapping(search_space)
    storage_options = ({"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                        "retry_failed": retry_failed} if heartbeat_interval else {})
    if isinstance(storage, str) and is_journal(storage):
        storage_options = {}
    study, artifacts = open_study(study_name, storage=storage, search_space=space, artifact_dir=artifact_dir,
                                  seed=seed, pruner=pruner, n_startup_trials=n_startup_trials,
                                  enqueue_defaults=enqueue_defaults, storage_options=storage_options)
    if heldout is None:
        trainset, held = split_heldout(trainset, seed=seed)
    else:
        held = list(heldout)
    if not held:
        raise StudyError("the held-out set is empty")
    check_data_fits(space, trainset, valset)
    artifacts.mkdir(parents=True, exist_ok=True)
    objective = Objective(trainset=trainset, valset=valset, heldout=[instruction_text(x) for x in held], space=space,
                          evol_lm=evol_lm, optimizer_lm=optimizer_lm,
                          artifact_store=FileSystemArtifactStore(str(artifacts)), seed=seed,
                          num_threads=num_threads, trial_budget=TrialBudget(max_trial_calls, max_trial_tokens),
                          detector=detector, teleprompter_options=teleprompter_options,
                          teleprompter_factory=teleprompter_factory)
    budget = StudyBudget(max_study_calls, max_study_tokens)
    if (max_study_calls or max_study_tokens) and budget.exhausted(study):
        logger.info("study budget already spent: no trial run")
        return study
    all_callbacks = list(callbacks) + ([budget] if (max_study_calls or max_study_tokens) else [])
    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=catch, callbacks=all_callbacks,
                   gc_after_trial=False)
    return study
