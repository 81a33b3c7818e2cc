"""What a study produced: its best trial, the evolver a trial saved as an artifact, a table of trials and plots."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.trial import TrialState

from autoevol.optimizers.tuning.storage import StudyError
from autoevol.optimizers.tuning.study import STUDY_ATTR

logger = logging.getLogger(__name__)


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
    """Optimization history, parameter importances and slice plots as PNG files in ``out_dir``.

    Optuna draws them with matplotlib, an optional dependency: ``pip install "autoevol[study-plots]"``.

    Raises:
        StudyError: matplotlib is not installed, or the study has no completed trial.
    """
    try:
        import matplotlib
    except ImportError:
        raise StudyError('plotting a study needs matplotlib: pip install "autoevol[study-plots]"') from None

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
