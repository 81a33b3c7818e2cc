"""`autoevol tune --optimizer ...` through the console entry point: the optimizer as a hyperparameter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoevol.optimizers.tuning import best_evolver, load_study
from autoevol.testing.fake_openai import FakeOpenAIServer
from autoevol.testing.study import both_roles, seed_instructions
from tests.test_cli_tune import autoevol




@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A fake server of this test's own (its study world draws from a fresh random state)."""
    with FakeOpenAIServer(responder=both_roles()) as fake:
        yield fake


def write_seed(tmp_path: Path) -> Path:
    path = tmp_path / "seed.jsonl"
    path.write_text("".join(json.dumps({"instruction": text}) + "\n" for text in seed_instructions(30)))
    space = {"num_candidates": 1, "max_steps": 1, "batch_size": 2, "dev_size": 6, "evolution_rounds": 1}
    (tmp_path / "space.yaml").write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in space.items()) + "\n")
    return path


def test_tune_with_both_optimizers_records_the_choice_per_trial(tmp_path, server):
    seed = write_seed(tmp_path)
    storage = f"sqlite:///{tmp_path}/studies.db"
    result = autoevol("tune", seed, "--trials", "3", "--storage", storage, "--study", "opt",
                      "--space", tmp_path / "space.yaml", "--optimizer", "auto-evol", "--optimizer", "gepa",
                      "--evol-lm", "openai/fake", "--api-base", server.url, "--heartbeat", "0", "--threads", "2",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_study("opt", storage)
    assert len(study.trials) == 3
    assert all(trial.state.name == "COMPLETE" for trial in study.trials)
    chosen = {trial.number: trial.params["optimizer"] for trial in study.trials}
    assert sorted(chosen.values()) == ["auto-evol", "gepa", "gepa"]  # the seeded sampler's choices
    for number, optimizer in chosen.items():  # each trial's evolver was compiled by the optimizer chosen
        metadata = best_evolver(study, trial_number=number).metadata
        assert metadata["optimizer"] == {"auto-evol": "AutoEvolInstruct", "gepa": "gepa"}[optimizer]
        assert (metadata.get("gepa", {}).get("total_metric_calls", 0) > 0) == (optimizer == "gepa")


def test_an_unknown_optimizer_is_one_line_and_exit_2(tmp_path, server):
    seed = write_seed(tmp_path)
    result = autoevol("tune", seed, "--trials", "1", "--storage", f"sqlite:///{tmp_path}/s.db",
                      "--optimizer", "simba", "--evol-lm", "openai/fake", "--api-base", server.url, cwd=tmp_path)
    assert result.returncode == 2 and "unknown optimizer 'simba'" in result.stderr
    assert "Traceback" not in result.stderr
