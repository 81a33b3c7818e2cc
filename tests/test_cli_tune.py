"""`autoevol tune` and `autoevol study show|best|plot` through the console entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoevol.optimizers.tuning import best_evolver, load_study
from autoevol.programs.evolver import Evolver
from autoevol.testing.fake_openai import FakeOpenAIServer
from autoevol.testing.study import both_roles, seed_instructions

SPACE = {"num_candidates": {"low": 1, "high": 4}, "max_steps": {"low": 1, "high": 2}, "batch_size": 2,
         "dev_size": {"low": 6, "high": 8}, "evolution_rounds": 1}


def autoevol(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from autoevol.cli import main; main()", *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "OPENAI_API_KEY": "x",
                               "DSPY_CACHEDIR": str(cwd / "dspy-cache")})


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(responder=both_roles) as fake:
        yield fake


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    return write_seed(tmp_path)


def write_seed(tmp_path: Path) -> Path:
    """30 seed instructions and the small search space (space.yaml) next to them."""
    path = tmp_path / "seed.jsonl"
    path.write_text("".join(json.dumps({"instruction": text}) + "\n" for text in seed_instructions(30)))
    (tmp_path / "space.yaml").write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in SPACE.items()) + "\n")
    return path


def lm_options(server) -> list[str]:
    return ["--evol-lm", "openai/fake", "--api-base", server.url, "--heartbeat", "0", "--threads", "2"]


def tune_command(seed: Path, storage: str, study: str, server, *extra: str) -> list[str]:
    return [sys.executable, "-c", "from autoevol.cli import main; main()", "tune", str(seed), "--storage", storage,
            "--study", study, "--space", str(seed.parent / "space.yaml"), *lm_options(server), *extra]


def start_together(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Start every command at once (independent processes, as separate shells would), wait for all."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "OPENAI_API_KEY": "x", "DSPY_CACHEDIR": str(cwd / "dspy-cache")}
    started = [subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for command in commands]
    results = []
    for process in started:
        out, err = process.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def assert_one_study_from_workers(results: list[subprocess.CompletedProcess], study, trials: int) -> None:
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "not created by autoevol" not in result.stderr
    assert sorted(t.number for t in study.trials) == list(range(trials))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    assert sum(bool(t.user_attrs.get("paper_defaults")) for t in study.trials) == 1


WORKERS, REPETITIONS = 2, 3


@pytest.mark.parametrize("storage_kind", ["journal", "sqlite"])
def test_tune_processes_started_together_share_one_study(tmp_path, seed, server, storage_kind):
    """Independent workers on a new storage: any of them may create the study, and both race for the
    queued paper-defaults trial; none fails and the queued trial runs once."""
    from autoevol.optimizers.tuning import load_study

    for repetition in range(REPETITIONS):  # each time a new storage file: every worker may be its creator
        storage = (f"journal:{tmp_path}/studies-{repetition}.log" if storage_kind == "journal"
                   else f"sqlite:///{tmp_path}/studies-{repetition}.db")
        results = start_together([tune_command(seed, storage, "together", server, "--trials", "1")
                                  for _ in range(WORKERS)], tmp_path)
        assert_one_study_from_workers(results, load_study("together", storage), WORKERS)


def test_tune_show_best_plot(tmp_path, seed, server):
    db = f"sqlite:///{tmp_path}/s.db"
    done = autoevol("tune", seed, "--trials", "3", "--storage", db, "--study", "cli", "--space",
                    tmp_path / "space.yaml", "--workers", "2", *lm_options(server), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = autoevol("study", "show", "--study", "cli", "--storage", db, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "3 trial(s)" in shown.stdout and "num_candidates" in shown.stdout
    assert shown.stdout.count("COMPLETE") + shown.stdout.count("PRUNED") == 3
    best = autoevol("study", "best", "--study", "cli", "--storage", db, "--out", tmp_path / "best.json", cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    written = Evolver().load(tmp_path / "best.json")
    study = load_study("cli", db)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    lowest = min(t.value for t in done)
    chosen = written.metadata["study"]["trial"]
    assert written.metadata["study"]["heldout_failure_rate"] == lowest  # a trial with the lowest rate...
    assert next(t for t in done if t.number == chosen).value == lowest
    assert written.method == best_evolver(study, trial_number=chosen).method  # ...and its own evolver
    assert f"trial {chosen} " in best.stderr + best.stdout
    plotted = autoevol("study", "plot", "--study", "cli", "--storage", db, "--out", tmp_path / "plots", cwd=tmp_path)
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / "plots" / "optimization-history.png").stat().st_size > 1000


def test_bad_inputs(tmp_path, seed, server):
    (tmp_path / "bad.json").write_text(json.dumps({"max_step": 3}))
    bad = autoevol("tune", seed, "--trials", "1", "--space", tmp_path / "bad.json", cwd=tmp_path)
    assert bad.returncode == 2 and "'max_step'" in bad.stderr
    unreachable = autoevol("tune", seed, "--trials", "1", "--storage", "postgresql://me:hunter2@127.0.0.1:1/x",
                           "--space", tmp_path / "space.yaml", cwd=tmp_path)
    assert unreachable.returncode == 2
    assert "postgresql://me:***@127.0.0.1:1/x" in unreachable.stderr and "hunter2" not in unreachable.stderr
    missing = autoevol("study", "show", "--study", "nope", "--storage", f"sqlite:///{tmp_path}/e.db", cwd=tmp_path)
    assert missing.returncode == 2 and "no study 'nope'" in missing.stderr
