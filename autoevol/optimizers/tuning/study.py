"""Opening autoevol studies: create or resume one, mark it as autoevol's, and refuse a mismatched one.

Workers started together may open the same new study; the one that loses the race to create it
waits for the creator's mark (:func:`open_study`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

from autoevol.optimizers.tuning.search_space import PAPER_DEFAULTS, SearchSpace
from autoevol.optimizers.tuning.storage import (
    DEFAULT_STORAGE,
    StudyError,
    default_artifact_dir,
    mask_url,
    open_storage,
    with_atomic_claim,
)

#: Study user attribute holding what makes a study an autoevol study (objective, space, artifacts).
STUDY_ATTR = "autoevol"
OBJECTIVE = "heldout_failure_rate"
#: How long a worker waits for a study another worker has just created to receive its autoevol mark.
MARK_WAIT_SECONDS = 20.0
PRUNERS = ("median", "halving", "none")


def _storage_name(storage: str | optuna.storages.BaseStorage | None) -> str:
    """The storage as messages name it: the caller's URL, or the storage object the caller passed
    (its class, and its URL for an RDB storage), never with a password.

    Named from the caller's object, not from the :func:`with_atomic_claim` wrapper over it.
    """
    if not isinstance(storage, optuna.storages.BaseStorage):
        return mask_url(storage or DEFAULT_STORAGE)
    if isinstance(storage, optuna.storages.RDBStorage):
        return f"{type(storage).__name__} {mask_url(storage.url)}"
    return type(storage).__name__


def _study_attrs(space: SearchSpace, artifact_dir: Path) -> dict[str, Any]:
    return {"objective": OBJECTIVE, "search_space": space.to_dict(), "artifact_dir": str(artifact_dir.resolve())}


def _pruner(name: str, *, n_startup_trials: int = 3) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise StudyError(f"unknown pruner '{name}' (choose one of {', '.join(PRUNERS)})")


def _constraints(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    return trial.user_attrs.get("constraints", [0.0])


def open_study(
    study_name: str,
    *,
    storage: str | optuna.storages.BaseStorage | None = None,
    search_space: SearchSpace | None = None,
    artifact_dir: str | Path | None = None,
    seed: int = 0,
    pruner: str = "median",
    n_startup_trials: int = 3,
    enqueue_defaults: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> tuple[optuna.Study, Path]:
    """Create or resume (load_if_exists) the autoevol study ``study_name``; returns it and its artifact folder.

    Raises :class:`StudyError` when a study of that name exists with another direction, another
    search space, or was not made by autoevol.
    """
    space = search_space or SearchSpace()
    url = storage if isinstance(storage, str) or storage is None else None
    backend = (with_atomic_claim(storage) if isinstance(storage, optuna.storages.BaseStorage)
               else open_storage(url, **(storage_options or {})))
    artifacts = Path(artifact_dir) if artifact_dir else default_artifact_dir(url)
    if hasattr(optuna.trial.Trial, "set_constraint"):  # Optuna >= 5: constraints live on the trial
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
    else:  # pragma: no cover - Optuna 4
        sampler = optuna.samplers.TPESampler(seed=seed, constraints_func=_constraints, n_startup_trials=n_startup_trials)
    where = _storage_name(storage)
    try:
        study = optuna.create_study(storage=backend, study_name=study_name, direction="minimize",
                                    sampler=sampler, pruner=_pruner(pruner, n_startup_trials=n_startup_trials))
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=backend, study_name=study_name, sampler=sampler,
                                  pruner=_pruner(pruner, n_startup_trials=n_startup_trials))
        created = False
    except StudyError:
        raise
    except Exception as error:
        raise StudyError(f"cannot open study '{study_name}' in {where}: {type(error).__name__}: "
                         f"{mask_url(' '.join(str(error).split()))[:300]}") from None
    if created:
        study.set_user_attr(STUDY_ATTR, _study_attrs(space, artifacts))
        if enqueue_defaults:
            study.enqueue_trial(space.enqueueable(PAPER_DEFAULTS), user_attrs={"paper_defaults": True})
        return study, artifacts
    _await_mark(study)
    _check_existing(study, space, where)
    recorded = study.user_attrs.get(STUDY_ATTR, {})
    return study, Path(artifact_dir) if artifact_dir else Path(recorded.get("artifact_dir") or artifacts)


def _await_mark(study: optuna.Study) -> None:
    """Wait until a study that another worker has only just created carries the autoevol mark.

    ``create_study`` and setting the mark are two writes: a worker that loads the study between
    them finds no mark. A study without the mark and without any trial is such a newborn, so the
    worker polls until the mark appears (or the study gets trials, or ``MARK_WAIT_SECONDS`` pass,
    after which :func:`_check_existing` reports a study that autoevol did not make).
    """
    if len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MINIMIZE:
        return  # not an autoevol study in the making: refused at once
    deadline = time.monotonic() + MARK_WAIT_SECONDS
    pause = 0.02
    while STUDY_ATTR not in study.user_attrs and not study.get_trials(deepcopy=False):
        if time.monotonic() >= deadline:
            return
        time.sleep(pause)
        pause = min(0.5, pause * 2)


def _check_existing(study: optuna.Study, space: SearchSpace, where: str) -> None:
    name = study.study_name
    if len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MINIMIZE:
        directions = ", ".join(d.name.lower() for d in study.directions)
        raise StudyError(f"study '{name}' in {where} exists with direction {directions}; autoevol studies "
                         "minimize the failure rate: choose another --study name")
    attrs = study.user_attrs.get(STUDY_ATTR)
    if not isinstance(attrs, dict) or attrs.get("objective") != OBJECTIVE:
        raise StudyError(f"study '{name}' in {where} exists but was not created by autoevol tune; "
                         "choose another --study name")
    recorded = attrs.get("search_space") or {}
    wanted = space.to_dict()
    if recorded != wanted:
        keys = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
        details = "; ".join(f"{k}: study has {recorded.get(k)}, asked {wanted.get(k)}" for k in keys)
        raise StudyError(f"study '{name}' in {where} exists with a different search space ({details}); "
                         "use the same space to resume it, or another --study name")


def load_study(study_name: str, storage: str | optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Load an existing study (read-only use: show, best, plot)."""
    url = storage if isinstance(storage, str) or storage is None else None
    backend = with_atomic_claim(storage) if isinstance(storage, optuna.storages.BaseStorage) else open_storage(url)
    try:
        return optuna.load_study(study_name=study_name, storage=backend)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(backend)]
        raise StudyError(f"no study '{study_name}' in {_storage_name(storage)} "
                         f"(studies: {', '.join(names) or 'none'})") from None
