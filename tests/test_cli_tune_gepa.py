"""`autoevol tune --optimizer ...` through the console entry point: the optimizer as a hyperparameter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoevol.optimizers.tuning import load_study
from autoevol.testing.fake_openai import FakeOpenAIServer
from autoevol.testing.study import both_roles, seed_instructions


def autoevol(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from autoevol.cli import main; main()", *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "OPENAI_API_KEY": "x",
                               "DSPY_CACHEDIR": str(cwd / "dspy-cache")})


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(responder=both_roles) as fake:
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
    assert {trial.params["optimizer"] for trial in study.trials} <= {"auto-evol", "gepa"}
    assert all(trial.state.name == "COMPLETE" for trial in study.trials)


def test_an_unknown_optimizer_is_one_line_and_exit_2(tmp_path, server):
    seed = write_seed(tmp_path)
    result = autoevol("tune", seed, "--trials", "1", "--storage", f"sqlite:///{tmp_path}/s.db",
                      "--optimizer", "simba", "--evol-lm", "openai/fake", "--api-base", server.url, cwd=tmp_path)
    assert result.returncode == 2 and "unknown optimizer 'simba'" in result.stderr
    assert "Traceback" not in result.stderr
