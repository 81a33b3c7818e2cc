"""Hyperparameter studies of :class:`AutoEvolInstruct` with Optuna; Optuna stays outside the teleprompter.

Each trial builds an ``AutoEvolInstruct`` from suggested hyperparameters, compiles it with a step
callback that reports the dev failure rate (so hopeless trials are pruned), uploads the compiled
evolver as an Optuna artifact, and returns the failure rate of that evolver on **held-out** items
that took no part in selecting candidates inside the compile.

Example:
    >>> study = tune(items, n_trials=20, study_name="math", evol_lm=evol, optimizer_lm=opt)  # doctest: +SKIP
    >>> best = best_evolver(study)                                                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import random
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.trial import TrialState

from autoevol.optimizers.gepa import build_teleprompter
from autoevol.optimizers.search_space import OPTIMIZER_PARAM, PAPER_DEFAULTS, SearchSpace, SearchSpaceError

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///autoevol-studies.db"
DEFAULT_STUDY = "autoevol"
#: Study user attribute holding what makes a study an autoevol study (objective, space, artifacts).
STUDY_ATTR = "autoevol"
OBJECTIVE = "heldout_failure_rate"
#: How long a worker waits for a study another worker has just created to receive its autoevol mark.
MARK_WAIT_SECONDS = 20.0
#: Attempts at opening an RDB storage whose schema other workers may be creating at the same moment.
SCHEMA_ATTEMPTS = 8
PRUNERS = ("median", "halving", "none")

__all__ = [
    "DEFAULT_STORAGE", "PAPER_DEFAULTS", "SearchSpace", "SearchSpaceError", "StudyError", "best_evolver",
    "best_trial", "load_study", "mask_url", "open_storage", "plot_study", "trial_rows", "tune",
]


class StudyError(ValueError):
    """A study cannot be opened or used: unreachable storage, missing driver, or a mismatched study."""


# --------------------------------------------------------------------------- storage


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


def is_journal(url: str) -> bool:
    return url.startswith("journal:") or url.endswith((".log", ".journal"))


def _journal_path(url: str) -> Path:
    return Path(url[len("journal:"):] if url.startswith("journal:") else url)


def _driver_url(url: str) -> str:
    """``postgresql://`` with the psycopg2 driver when psycopg 3 (SQLAlchemy 2.1's default) is absent."""
    import importlib.util

    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme) and importlib.util.find_spec("psycopg") is None \
                and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len(scheme):]
    return url


def open_storage(url: str | None = None, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, retry_failed: int = 0) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``: any RDB URL (SQLite, PostgreSQL, MySQL) or a journal file.

    A journal file is ``journal:PATH`` or a path ending in ``.log``/``.journal`` (Optuna's
    ``JournalFileBackend``: no database, works on a shared file system). With ``heartbeat_interval``
    (seconds), a trial whose worker died is marked FAIL after ``grace_period`` seconds; with
    ``retry_failed`` > 0 it is also re-queued that many times.
    """
    url = url or DEFAULT_STORAGE
    callback = (optuna.storages.RetryFailedTrialCallback(max_retry=retry_failed) if retry_failed else None)
    try:
        if is_journal(url):
            from optuna.storages.journal import JournalFileBackend

            path = _journal_path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"pool_pre_ping": True} if not url.startswith("sqlite") else None
        if url.startswith(("postgresql", "mysql")):
            engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
        return _rdb_storage(_driver_url(url), engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                            grace_period=grace_period, failed_trial_callback=callback)
    except (ImportError, ModuleNotFoundError) as error:
        raise StudyError(f"storage {mask_url(url)}: the database driver is missing "
                         f"({error}); install it, e.g. pip install psycopg2-binary for PostgreSQL") from None
    except Exception as error:  # sqlalchemy errors, bad URLs, unreachable servers
        detail = " ".join(str(error).split())
        detail = mask_url(detail)[:300]
        raise StudyError(f"cannot open study storage {mask_url(url)}: {type(error).__name__}: {detail}") from None


def _rdb_storage(url: str, **options: Any) -> optuna.storages.RDBStorage:
    """``RDBStorage(url)``, retried when another worker is creating the same schema at this moment.

    Optuna creates its tables on first use with check-then-create statements; on a fresh database
    two workers started at the same instant can both see a table missing, and the slower one's
    ``CREATE`` then fails on a duplicate catalog entry. Once the faster one has finished, the schema
    exists and the next attempt succeeds.
    """
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, **options)
        except Exception as error:
            if attempt + 1 >= SCHEMA_ATTEMPTS or not _is_schema_race(error):
                raise
            logger.info("storage schema is being created by another worker (%s); retrying", type(error).__name__)
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _is_schema_race(error: BaseException) -> bool:
    """Whether ``error`` is a concurrent ``CREATE`` of the same table, type, index or version row."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    text = str(error).lower()
    return isinstance(error, (IntegrityError, ProgrammingError)) and (
        "already exists" in text or "duplicate key" in text or "duplicate entry" in text)


def default_artifact_dir(url: str | None) -> Path:
    """Where trial artifacts go by default: a folder next to a SQLite or journal file, else ./."""
    url = url or DEFAULT_STORAGE
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):])
        return path.with_name(path.name + "-artifacts")
    if is_journal(url):
        path = _journal_path(url)
        return path.with_name(path.name + "-artifacts")
    return Path("autoevol-artifacts")


# --------------------------------------------------------------------------- studies


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
    backend = storage if isinstance(storage, optuna.storages.BaseStorage) else open_storage(url, **(storage_options or {}))
    artifacts = Path(artifact_dir) if artifact_dir else default_artifact_dir(url)
    if hasattr(optuna.trial.Trial, "set_constraint"):  # Optuna >= 5: constraints live on the trial
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
    else:  # pragma: no cover - Optuna 4
        sampler = optuna.samplers.TPESampler(seed=seed, constraints_func=_constraints, n_startup_trials=n_startup_trials)
    where = mask_url(url or DEFAULT_STORAGE) if url is not None or storage is None else type(backend).__name__
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
    backend = storage if isinstance(storage, optuna.storages.BaseStorage) else open_storage(url)
    try:
        return optuna.load_study(study_name=study_name, storage=backend)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(backend)]
        where = mask_url(url or DEFAULT_STORAGE) if url or storage is None else type(backend).__name__
        raise StudyError(f"no study '{study_name}' in {where} (studies: {', '.join(names) or 'none'})") from None


# --------------------------------------------------------------------------- the objective


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


def _text(item: Any) -> str:
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
        from autoevol.optimizers.auto_evol import AutoEvolInstruct

        # a trial that found nothing better is still a measurement: its held-out rate is e_0's
        options = {"optimizer_lm": self.optimizer_lm, "evol_lm": self.evol_lm, "seed": self.seed,
                   "num_threads": self.num_threads, "keep_unchanged": True, **self.options}
        if self.detector is not None:
            options["detector"] = self.detector
        settings = dict(params)
        optimizer = settings.pop(OPTIMIZER_PARAM, "auto-evol")
        if optimizer != "auto-evol":  # GEPA has no steps to report: its trials are not pruned
            return build_teleprompter(optimizer, **options, **settings)
        return AutoEvolInstruct(**options, **settings, step_callback=on_step)


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
    objective = Objective(trainset=trainset, valset=valset, heldout=[_text(x) for x in held], space=space,
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


def check_data_fits(space: SearchSpace, trainset: Sequence[Any], valset: Sequence[Any] | None) -> None:
    """Fail before any trial when the largest batch and dev sizes of the space need more data than given."""
    train = len({_text(x).strip().casefold() for x in trainset})
    batch, dev = int(space.high("batch_size")), int(space.high("dev_size"))
    if valset is None and batch + dev > train:
        raise StudyError(f"the search space reaches batch_size {batch} + dev_size {dev} = {batch + dev} "
                         f"training instructions, but only {train} are left after setting the held-out items "
                         "aside; narrow 'batch_size'/'dev_size' in the search space (--space) or add data")
    if valset is not None:
        dev_items = len({_text(x).strip().casefold() for x in valset})
        if dev > dev_items:
            raise StudyError(f"the search space reaches dev_size {dev}, but the dev set has {dev_items} "
                             "instructions; narrow 'dev_size' in the search space (--space) or add data")
        if batch > train:
            raise StudyError(f"the search space reaches batch_size {batch}, but the training data has {train} "
                             "instructions; narrow 'batch_size' in the search space (--space) or add data")


# --------------------------------------------------------------------------- results


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The completed, feasible trial with the lowest held-out failure rate (that has an artifact)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("artifact_id") and t.value is not None]
    feasible = [t for t in done if all(c <= 0 for c in t.user_attrs.get("constraints", [0.0]))]
    pool = feasible or done
    if not pool:
        raise StudyError(f"study '{study.study_name}' has no completed trial with an evolver yet")
    return min(pool, key=lambda t: (t.value, t.user_attrs.get("calls", 0), t.number))


def artifact_dir_of(study: optuna.Study) -> Path:
    attrs = study.user_attrs.get(STUDY_ATTR) or {}
    if not attrs.get("artifact_dir"):
        raise StudyError(f"study '{study.study_name}' records no artifact folder (not an autoevol study?)")
    return Path(attrs["artifact_dir"])


def best_evolver(study: optuna.Study, out: str | Path | None = None, *, artifact_dir: str | Path | None = None,
                 trial_number: int | None = None) -> Any:
    """Download the best (or the given) trial's evolver; writes it to ``out`` when given."""
    from autoevol.programs.evolver import Evolver

    if trial_number is None:
        trial = best_trial(study)
    else:
        matches = [t for t in study.get_trials(deepcopy=False) if t.number == trial_number]
        if not matches or not matches[0].user_attrs.get("artifact_id"):
            raise StudyError(f"study '{study.study_name}' has no trial {trial_number} with an evolver")
        trial = matches[0]
    folder = Path(artifact_dir) if artifact_dir else artifact_dir_of(study)
    store = FileSystemArtifactStore(str(folder))
    with tempfile.TemporaryDirectory(prefix="autoevol-best-") as tmp:
        target = Path(tmp) / "evolver.json"
        try:
            download_artifact(artifact_store=store, file_path=str(target), artifact_id=trial.user_attrs["artifact_id"])
        except Exception as error:
            raise StudyError(f"cannot read the evolver of trial {trial.number} from the artifact store {folder}: "
                             f"{type(error).__name__}: {error}") from None
        evolver = Evolver().load(target)
        if out is not None:
            evolver.save(out)
    return evolver


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One plain dict per trial: number, state, value, hyperparameters, calls, tokens, seconds."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        params = dict(t.user_attrs.get("hyperparameters") or t.params)
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "params": params,
                     "calls": t.user_attrs.get("calls"), "tokens": t.user_attrs.get("tokens"),
                     "seconds": t.user_attrs.get("seconds"),
                     "last_step": max(t.intermediate_values) if t.intermediate_values else None,
                     "feasible": all(c <= 0 for c in t.user_attrs.get("constraints", [0.0]))})
    return rows


def plot_study(study: optuna.Study, out_dir: str | Path) -> list[Path]:
    """Optimization history, parameter importances and slice plots as PNG files in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        raise StudyError(f"study '{study.study_name}' has no completed trial to plot")
    written = []
    plots: list[tuple[str, Callable[[], Any]]] = [("optimization-history", lambda: vis.plot_optimization_history(study))]
    varying = sorted({name for t in completed for name in t.params})
    if len(completed) >= 2 and varying:
        plots.append(("param-importances", lambda: vis.plot_param_importances(study)))
    if varying:
        plots.append(("slice", lambda: vis.plot_slice(study)))
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        plots.append(("intermediate-values", lambda: vis.plot_intermediate_values(study)))
    import warnings

    for name, make in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                axes = make()
            except (ValueError, RuntimeError) as error:  # e.g. importances need parameters that vary
                logger.warning("plot %s skipped: %s", name, error)
                continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        figure.set_size_inches(max(figure.get_size_inches()[0], 8), max(figure.get_size_inches()[1], 5))
        path = out / f"{name}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written
