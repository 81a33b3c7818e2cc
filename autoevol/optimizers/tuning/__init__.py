"""Hyperparameter studies of :class:`AutoEvolInstruct` with Optuna; Optuna stays outside the teleprompter.

Each trial builds an ``AutoEvolInstruct`` from suggested hyperparameters, compiles it with a step
callback that reports the dev failure rate (so hopeless trials are pruned), uploads the compiled
evolver as an Optuna artifact, and returns the failure rate of that evolver on **held-out** items
that took no part in selecting candidates inside the compile.

The search space is in :mod:`~autoevol.optimizers.tuning.search_space`, one trial in
:mod:`~autoevol.optimizers.tuning.objective`, the storage in :mod:`~autoevol.optimizers.tuning.storage`,
creating and loading a study in :mod:`~autoevol.optimizers.tuning.study`, running it in
:mod:`~autoevol.optimizers.tuning.run`, and reading its results in :mod:`~autoevol.optimizers.tuning.results`.

Example:
    >>> study = tune(items, n_trials=20, study_name="math", evol_lm=evol, optimizer_lm=opt)  # doctest: +SKIP
    >>> best = best_evolver(study)                                                          # doctest: +SKIP
"""

from autoevol.optimizers.tuning.results import best_evolver, best_trial, plot_study, trial_rows
from autoevol.optimizers.tuning.run import DEFAULT_STUDY, tune
from autoevol.optimizers.tuning.search_space import PAPER_DEFAULTS, SearchSpace, SearchSpaceError
from autoevol.optimizers.tuning.storage import DEFAULT_STORAGE, StudyError, mask_url, open_storage
from autoevol.optimizers.tuning.study import load_study

__all__ = [
    "DEFAULT_STORAGE", "DEFAULT_STUDY", "PAPER_DEFAULTS", "SearchSpace", "SearchSpaceError", "StudyError",
    "best_evolver", "best_trial", "load_study", "mask_url", "open_storage", "plot_study", "trial_rows", "tune",
]
