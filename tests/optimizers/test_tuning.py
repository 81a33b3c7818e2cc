"""Optuna studies of AutoEvolInstruct: search space, objective, pruning, artifacts, resume, budgets, errors."""

from __future__ import annotations

import json
import sys
import warnings

import optuna
import pytest

from autoevol.optimizers.tuning.search_space import PAPER_DEFAULTS, SearchSpace, SearchSpaceError
from autoevol.optimizers.tuning import (
    StudyError, best_evolver, best_trial, load_study, mask_url, open_storage, plot_study, trial_rows, tune,
)
from autoevol.programs.evolver import Evolver
from autoevol.testing.study import MARK, StudyWorld, bucket, level_of, seed_instructions

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

TINY = {"num_candidates": {"low": 1, "high": 8}, "max_steps": {"low": 1, "high": 3},
        "batch_size": {"low": 2, "high": 4}, "dev_size": {"low": 12, "high": 16}, "evolution_rounds": 1,
        "temperature": {"low": 0.3, "high": 1.2}}


def run(tmp_path, *, n_trials=3, name="s", space=TINY, world=None, **options):
    world = world or StudyWorld(seed=0)
    evol, optimizer = world.lms()
    items = seed_instructions(60)
    options.setdefault("num_threads", 1)
    options.setdefault("catch", ())
    return tune(items[:30], heldout=items[30:], n_trials=n_trials, storage=f"sqlite:///{tmp_path}/studies.db",
                study_name=name, search_space=space, evol_lm=evol, optimizer_lm=optimizer, **options)


class FakeTeleprompter:
    """Reports a dev failure rate per step that depends on num_candidates only; returns e_0."""

    def __init__(self, params, step_callback):
        self.params, self.callback = params, step_callback
        self.steps = 0

    def compile(self, student, *, trainset, valset=None):
        rate = 1.0 - 0.1 * self.params["num_candidates"]
        for step in range(1, self.params["max_steps"] + 1):
            self.steps = step
            if self.callback(step, {"selected": {"failure_rate": rate}}) is False:
                break
        return student


# ----------------------------------------------------------------------------- search space


def test_search_space_overrides_fixed_values_and_ranges():
    space = SearchSpace.from_mapping({"max_steps": 3, "temperature": {"low": 0.5, "high": 0.7},
                                      "num_candidates": {"low": 2, "high": 4}})
    assert space.params["max_steps"].fixed == 3
    assert space.params["temperature"].kind == "float"
    assert space.params["num_candidates"].kind == "int"
    assert space.enqueueable(PAPER_DEFAULTS)["num_candidates"] == 4   # clipped into the narrower range
    assert "max_steps" not in space.enqueueable(PAPER_DEFAULTS)


@pytest.mark.parametrize("mapping, key", [
    ({"num_candidate": 3}, "num_candidate"),
    ({"max_steps": {"low": 3}}, "max_steps"),
    ({"batch_size": {"low": 9, "high": 2}}, "batch_size"),
    ({"dev_size": "many"}, "dev_size"),
    ({"num_candidates": 2.5}, "num_candidates"),
    ({"evolution_rounds": {"low": 0, "high": 2}}, "evolution_rounds"),
])
def test_invalid_search_space_names_the_key(mapping, key):
    with pytest.raises(SearchSpaceError, match=f"'{key}'"):
        SearchSpace.from_mapping(mapping)


def test_search_space_files(tmp_path):
    (tmp_path / "space.yaml").write_text("max_steps: 2\nnum_candidates: {low: 1, high: 3}\n")
    assert SearchSpace.from_file(tmp_path / "space.yaml").params["max_steps"].fixed == 2
    (tmp_path / "space.json").write_text(json.dumps({"temperature": {"low": 0.2, "high": 0.4}}))
    assert SearchSpace.from_file(tmp_path / "space.json").params["temperature"].high == 0.4
    (tmp_path / "bad.yaml").write_text("max_steps: [1, 2\n")
    with pytest.raises(SearchSpaceError, match="not valid YAML"):
        SearchSpace.from_file(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text(json.dumps({"rounds": 2}))
    with pytest.raises(SearchSpaceError, match="'rounds'"):
        SearchSpace.from_file(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- the objective


def heldout_failure_rate(world: StudyWorld, method: str, heldout: list[str]) -> float:
    """The share of ``heldout`` that ``method`` fails in ``world``: its law, computed without any LM."""
    share = world.fail_share(level_of(method))
    return sum(bucket(text) < share for text in heldout) / len(heldout)


def test_paper_defaults_first_heldout_objective_and_usage(tmp_path):
    study = run(tmp_path, n_trials=2)
    first, second = study.trials
    assert first.user_attrs["paper_defaults"] is True
    assert first.params["num_candidates"] == 5 and first.params["temperature"] == 0.6
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        method = best_evolver(study, trial_number=trial.number).method  # the trial's own evolver, on held-out items
        assert trial.value == pytest.approx(heldout_failure_rate(StudyWorld(), method, seed_instructions(60)[30:]))
        assert trial.user_attrs["calls"] > 0 and trial.user_attrs["tokens"] > 0
        assert set(trial.user_attrs["calls_by_role"]) == {"evol", "optimizer"}
        assert trial.user_attrs["artifact_id"]
        assert trial.intermediate_values  # the step callback reported the dev failure rate


def test_short_study_finds_the_better_region(tmp_path):
    study = run(tmp_path, n_trials=12, pruner="none", enqueue_defaults=False,
                teleprompter_options={"patience": 3, "proposal_mode": "rewrite"})  # the world's calibration
    rows = [r for r in trial_rows(study) if r["state"] == "COMPLETE"]
    strong = [r["value"] for r in rows if r["params"]["num_candidates"] >= 4 and r["params"]["max_steps"] >= 2]
    weak = [r["value"] for r in rows if r["params"]["num_candidates"] <= 2 or r["params"]["max_steps"] == 1]
    assert strong and weak
    assert sum(strong) / len(strong) < sum(weak) / len(weak)
    best = best_trial(study)
    assert best.params["num_candidates"] >= 3 and best.params["max_steps"] >= 2
    assert best.value < 0.9  # e_0's held-out failure rate in this world is ~0.9


def test_pruning_prunes_a_clearly_worse_trial(tmp_path):
    items = seed_instructions(20)
    storage = f"sqlite:///{tmp_path}/p.db"
    space = {"num_candidates": {"low": 1, "high": 9}, "max_steps": 4, "batch_size": 2, "dev_size": 2}
    tune(items, n_trials=0, storage=storage, study_name="p", search_space=space, evol_lm=None,
         optimizer_lm=None, enqueue_defaults=False, teleprompter_factory=FakeTeleprompter)
    for n in (8, 8, 9, 1):
        load_study("p", storage).enqueue_trial({"num_candidates": n})
    study = tune(items, n_trials=4, storage=storage, study_name="p", search_space=space, evol_lm=None,
                 optimizer_lm=None, enqueue_defaults=False, teleprompter_factory=FakeTeleprompter,
                 pruner="median", catch=(), heldout=["Say hi."])
    states = [t.state.name for t in study.trials]
    assert states[:3] == ["COMPLETE"] * 3
    assert states[3] == "PRUNED"
    assert max(study.trials[3].intermediate_values) == 1   # stopped after its first reported step


def test_artifacts_extract_and_load_as_evolvers(tmp_path):
    study = run(tmp_path, n_trials=2)
    out = tmp_path / "best.json"
    evolver = best_evolver(study, out)
    assert isinstance(evolver, Evolver) and Evolver().load(out).method == evolver.method
    assert evolver.metadata["study"]["trial"] == best_trial(study).number
    # another process (or machine) sees only the storage URL
    again = load_study("s", f"sqlite:///{tmp_path}/studies.db")
    for trial in again.trials:
        assert isinstance(best_evolver(again, trial_number=trial.number), Evolver)
    assert (tmp_path / "studies.db-artifacts").is_dir()


class MarkingTeleprompter:
    """Returns the student with one ``[refined]`` mark per candidate: held-out failures fall with it."""

    def __init__(self, params, step_callback):
        self.params, self.callback = params, step_callback

    def compile(self, student, *, trainset, valset=None):
        self.callback(1, {"selected": {"failure_rate": 0.5}})
        return student.with_method(student.method + f" {MARK}" * self.params["num_candidates"])


def test_the_extracted_evolver_is_the_best_trials(tmp_path):
    world = StudyWorld(seed=0)
    evol, _ = world.lms()
    items = seed_instructions(60)
    storage = f"sqlite:///{tmp_path}/best.db"
    space = {"num_candidates": {"low": 1, "high": 3}, "max_steps": 1, "batch_size": 2, "dev_size": 2}
    options = dict(storage=storage, study_name="best", search_space=space, evol_lm=evol, optimizer_lm=None,
                   enqueue_defaults=False, teleprompter_factory=MarkingTeleprompter, pruner="none", catch=(),
                   heldout=items[30:], num_threads=1)
    tune(items[:30], n_trials=0, **options)
    for n in (1, 3, 2):
        load_study("best", storage).enqueue_trial({"num_candidates": n})
    study = tune(items[:30], n_trials=3, **options)
    values = {t.params["num_candidates"]: t.value for t in study.trials}
    assert values[3] < values[2] < values[1]  # more marks, fewer held-out failures: the trials differ
    evolver = best_evolver(study, tmp_path / "best.json")
    assert level_of(evolver.method) == 3 and level_of(Evolver().load(tmp_path / "best.json").method) == 3
    assert evolver.metadata["study"]["trial"] == 1  # the second enqueued trial, num_candidates 3
    assert evolver.metadata["study"]["heldout_failure_rate"] == values[3]
    other = best_evolver(study, trial_number=0)
    assert level_of(other.method) == 1 and other.metadata["study"]["heldout_failure_rate"] == values[1]


def test_resumed_study_continues_numbering(tmp_path):
    run(tmp_path, n_trials=2)
    study = run(tmp_path, n_trials=2)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert sum(bool(t.user_attrs.get("paper_defaults")) for t in study.trials) == 1


def test_plots(tmp_path):
    study = run(tmp_path, n_trials=3, pruner="none")
    written = plot_study(study, tmp_path / "plots")
    names = {p.name for p in written}
    assert {"optimization-history.png", "param-importances.png", "slice.png"} <= names
    assert all(p.stat().st_size > 1000 for p in written)


def test_plots_without_matplotlib_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with pytest.raises(StudyError, match=r'pip install "autoevol\[study-plots\]"'):
        plot_study(optuna.create_study(), tmp_path / "plots")
    assert not (tmp_path / "plots").exists()


# ----------------------------------------------------------------------------- budgets


def test_trial_budget_is_a_constraint_and_study_budget_stops(tmp_path):
    study = run(tmp_path, n_trials=2, max_trial_calls=10, name="b1")
    for trial in study.trials:
        assert trial.user_attrs["over_budget"] or trial.user_attrs["calls"] > 10
        assert trial.user_attrs["constraints"][1] > 0   # infeasible: spent more than 10 calls
    study = run(tmp_path, n_trials=6, max_study_calls=1, name="b2")
    assert len(study.trials) == 1 and study.user_attrs["budget_stopped"] is True
    again = run(tmp_path, n_trials=6, max_study_calls=1, name="b2")
    assert len(again.trials) == 1   # the spent budget stops a resumed study before any trial


# ----------------------------------------------------------------------------- bad input


def test_unreachable_storage_names_url_and_masks_password():
    with pytest.raises(StudyError) as error:
        open_storage("postgresql://alice:s3cret@127.0.0.1:1/nowhere")
    message = str(error.value)
    assert "postgresql://alice:***@127.0.0.1:1/nowhere" in message and "s3cret" not in message


def test_missing_driver_is_named():
    with pytest.raises(StudyError, match=r"mysql://bob:\*\*\*@localhost/db.*driver"):
        open_storage("mysql://bob:pw@localhost/db")
    assert mask_url("postgresql://u:p@h/d") == "postgresql://u:***@h/d"
    assert mask_url("postgresql://u:pa/ss@h/d") == "postgresql://u:***@h/d"  # a password may hold a "/"
    assert mask_url("cannot reach postgresql://u:s/3@h/d (timeout)") == "cannot reach postgresql://u:***@h/d (timeout)"


def test_existing_study_with_other_direction_or_space_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path}/studies.db"
    optuna.create_study(storage=storage, study_name="up", direction="maximize")
    with pytest.raises(StudyError, match="direction maximize"):
        run(tmp_path, name="up")
    run(tmp_path, n_trials=1, name="same")
    with pytest.raises(StudyError, match="different search space.*max_steps"):
        run(tmp_path, n_trials=1, name="same", space={**TINY, "max_steps": 2})
    assert len(load_study("same", storage).trials) == 1   # no trial was mixed in


def test_too_little_data_for_the_space_is_refused(tmp_path):
    with pytest.raises(StudyError, match="dev_size"):
        run(tmp_path, space={**TINY, "dev_size": {"low": 10, "high": 40}})


# ----------------------------------------------------------------------------- workers started together


@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_a_worker_that_loads_a_study_before_its_creator_marked_it_waits_for_the_mark(tmp_path, monkeypatch, request,
                                                                                      kind):
    """Worker B loads the study in the moment between A's create_study and A's mark: B must not fail."""
    import threading

    from autoevol.optimizers.tuning import study as tuning_study

    storage = {"sqlite": lambda: f"sqlite:///{tmp_path}/s.db", "journal": lambda: f"journal:{tmp_path}/s.log",
               "postgresql": lambda: request.getfixturevalue("postgres_server")("mark")}[kind]()
    created, looked = threading.Event(), threading.Event()
    real_create, real_attrs = optuna.create_study, optuna.Study.user_attrs.fget

    def create_then_stall(**kwargs):
        study = real_create(**kwargs)  # B's create_study raises DuplicatedStudyError here
        created.set()
        assert looked.wait(30), "worker B never read the study's attributes"
        return study  # only now does A go on to mark it

    def attrs_and_tell(study):
        attrs = real_attrs(study)
        if threading.current_thread().name == "b":
            looked.set()  # B has seen the study as it is before A marks it
        return attrs

    monkeypatch.setattr(optuna, "create_study", create_then_stall)
    monkeypatch.setattr(optuna.Study, "user_attrs", property(attrs_and_tell))
    results: dict[str, object] = {}

    def worker() -> None:
        name = threading.current_thread().name
        try:
            results[name] = tuning_study.open_study("race", storage=storage, search_space=SearchSpace.from_mapping(TINY))
        except Exception as error:  # reported below
            results[name] = error

    first = threading.Thread(target=worker, name="a")
    first.start()
    assert created.wait(30)
    second = threading.Thread(target=worker, name="b")
    second.start()
    first.join(60)
    second.join(60)
    assert not isinstance(results["a"], Exception), results["a"]
    assert not isinstance(results["b"], Exception), results["b"]
    study = load_study("race", storage)
    assert study.user_attrs[tuning_study.STUDY_ATTR]["objective"] == tuning_study.OBJECTIVE
    assert sum(bool(t.user_attrs.get("paper_defaults")) for t in study.trials) == 1


def test_a_foreign_empty_study_is_still_refused(tmp_path, monkeypatch):
    from autoevol.optimizers.tuning import study as tuning_study

    monkeypatch.setattr(tuning_study, "MARK_WAIT_SECONDS", 0.3)
    storage = f"journal:{tmp_path}/s.log"
    optuna.create_study(storage=open_storage(storage), study_name="theirs", direction="minimize")
    with pytest.raises(StudyError, match="not created by autoevol"):
        tuning_study.open_study("theirs", storage=storage)
