"""`autoevol tune` and `autoevol study show|best|plot` through the console entry point."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import autoevol as autoevol_package
from autoevol.optimizers.tuning import best_evolver, load_study
from autoevol.programs.evolver import Evolver
from autoevol.testing.fake_openai import FakeOpenAIServer
from autoevol.testing.study import both_roles, seed_instructions

SPACE = {"num_candidates": {"low": 1, "high": 4}, "max_steps": {"low": 1, "high": 2}, "batch_size": 2,
         "dev_size": {"low": 6, "high": 8}, "evolution_rounds": 1}


#: Where the autoevol this test imported lives: its subprocesses import the same copy.
PACKAGE_ROOT = str(Path(autoevol_package.__file__).resolve().parents[1])


def cli_env(cwd: Path) -> dict[str, str]:
    """A small environment for a command run in ``cwd``: its home and DSPy cache are there too."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "OPENAI_API_KEY": "x", "DSPY_CACHEDIR": str(cwd / "dspy-cache"),
            "PYTHONPATH": PACKAGE_ROOT}


def autoevol(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from autoevol.cli import main; main()", *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=cli_env(cwd))


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A fake server of this test's own (its study world draws from a fresh random state)."""
    with FakeOpenAIServer(responder=both_roles()) as fake:
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


def tune_arguments(seed: Path, storage: str, study: str, server, *extra: str) -> list[str]:
    """The arguments of an ``autoevol tune`` run of ``study`` in ``storage`` against the fake ``server``."""
    return ["tune", str(seed), "--storage", storage, "--study", study, "--space", str(seed.parent / "space.yaml"),
            *lm_options(server), *extra]


def start_together(runs: list[list[str]], cwd: Path, gate: Path) -> list[subprocess.CompletedProcess]:
    """Run the command lines ``runs`` as independent processes (as separate shells would) that open their
    study, and later claim their first trial, at the same moment (:func:`autoevol.testing.together.cli_together`
    with the barrier folder ``gate``); wait for all of them.

    A worker that fails leaves the others waiting for it at the barrier: they are stopped then.
    """
    code = f"from autoevol.testing.together import cli_together; cli_together({str(gate)!r}, {len(runs)})"
    gate.mkdir()
    outputs = [(gate / f"worker-{i}.out", gate / f"worker-{i}.err") for i in range(len(runs))]
    started = []
    for arguments, (out, err) in zip(runs, outputs):
        with out.open("w") as stdout, err.open("w") as stderr:
            started.append(subprocess.Popen([sys.executable, "-c", code, *arguments], cwd=cwd, stdout=stdout,
                                            stderr=stderr, env=cli_env(cwd)))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        codes = [process.poll() for process in started]
        if None not in codes or any(codes):  # all done, or one failed
            break
        time.sleep(0.1)
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
    return [subprocess.CompletedProcess(process.args, process.returncode, out.read_text(), err.read_text())
            for process, (out, err) in zip(started, outputs)]


def assert_one_study_from_workers(results: list[subprocess.CompletedProcess], study, trials: int) -> None:
    failed = [f"worker {i}: exit {result.returncode}: {result.stderr[-2000:]}" for i, result in enumerate(results)
              if result.returncode or "not created by autoevol" in result.stderr]
    assert not failed, "\n".join(failed)
    assert sorted(t.number for t in study.trials) == list(range(trials))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    assert sum(bool(t.user_attrs.get("paper_defaults")) for t in study.trials) == 1


WORKERS, REPETITIONS = 2, 3


@pytest.mark.parametrize("storage_kind", ["journal", "sqlite"])
def test_tune_processes_started_together_share_one_study(tmp_path, seed, server, storage_kind):
    """Independent workers released at the same moment on a new storage: any of them may create the study,
    and both race for the queued paper-defaults trial; none fails and the queued trial runs once."""
    from autoevol.optimizers.tuning import load_study

    for repetition in range(REPETITIONS):  # each time a new storage file: every worker may be its creator
        storage = (f"journal:{tmp_path}/studies-{repetition}.log" if storage_kind == "journal"
                   else f"sqlite:///{tmp_path}/studies-{repetition}.db")
        results = start_together([tune_arguments(seed, storage, "together", server, "--trials", "1")
                                  for _ in range(WORKERS)], tmp_path, tmp_path / f"gate-{repetition}")
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
