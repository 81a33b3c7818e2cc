"""The optimizer as a categorical hyperparameter of a study: the search space and GEPA trials."""

from __future__ import annotations

import warnings

import optuna
import pytest

from autoevol.optimizers.tuning.search_space import SearchSpace, SearchSpaceError
from autoevol.optimizers.tuning import best_evolver, tune
from autoevol.testing.study import StudyWorld, seed_instructions
from tests.optimizers.test_tuning import heldout_failure_rate

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

SMALL = {"num_candidates": {"low": 1, "high": 2}, "max_steps": 1, "batch_size": 2, "dev_size": 12,
         "evolution_rounds": 1, "temperature": 0.6}


def test_the_optimizer_is_fixed_or_categorical_and_absent_by_default():
    assert "optimizer" not in SearchSpace().to_dict()  # spaces of existing studies are unchanged
    both = SearchSpace.from_mapping({"optimizer": {"choices": ["auto-evol", "gepa"]}})
    assert both.to_dict()["optimizer"] == {"choices": ["auto-evol", "gepa"]}
    assert SearchSpace.from_mapping({"optimizer": "gepa"}).params["optimizer"].fixed == "gepa"
    assert SearchSpace().with_optimizers(["gepa", "auto-evol"]).params["optimizer"].choices == ("gepa", "auto-evol")
    assert SearchSpace().with_optimizers(["gepa"]).params["optimizer"].fixed == "gepa"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {both.suggest(study.ask())["optimizer"] for _ in range(20)}
    assert seen == {"auto-evol", "gepa"}


@pytest.mark.parametrize("value", ["simba", {"choices": ["gepa", "mipro"]}, {"choices": []}, 3])
def test_an_unknown_optimizer_is_refused_by_name(value):
    with pytest.raises(SearchSpaceError, match="optimizer"):
        SearchSpace.from_mapping({"optimizer": value}, source="space.yaml")


def test_a_gepa_trial_compiles_with_gepa_and_stores_its_evolver(tmp_path):
    world = StudyWorld(seed=0)
    evol, optimizer = world.lms()
    items = seed_instructions(60)
    study = tune(items[:30], heldout=items[30:], n_trials=1, storage=f"sqlite:///{tmp_path}/studies.db",
                 study_name="g", search_space={**SMALL, "optimizer": "gepa"}, evol_lm=evol, optimizer_lm=optimizer,
                 num_threads=1, catch=(), enqueue_defaults=False)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.user_attrs["hyperparameters"]["optimizer"] == "gepa"
    assert trial.user_attrs["calls_by_role"]["evol"] > 12  # at least the start on the whole dev set
    evolver = best_evolver(study, tmp_path / "best.json")
    assert trial.value == pytest.approx(heldout_failure_rate(StudyWorld(), evolver.method, items[30:]))
    assert evolver.metadata["optimizer"] == "gepa" and evolver.metadata["gepa"]["total_metric_calls"] >= 12
