"""--dry-run on compile and tune plans calls without contacting any LM (the endpoint is unreachable).

One test runs the installed ``autoevol`` entry point; the others call the CLI app in-process. The
expected numbers follow the plan of ``autoevol.estimate.compile_plan``: every evolution of the dev
measurements and each trajectory case's last stage is answered, every answer judged (compile's
judge defaults to the optimizer LM), and each candidate costs one analysis and up to 3 proposals.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoevol.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seed.jsonl"
UNREACHABLE = ["--evol-lm", "openai/nowhere", "--api-base", "http://127.0.0.1:9/v1"]
#: A small compile: 2 steps of 3 candidates, mini-batches of 2, 4 dev items.
SMALL = ["--steps", "2", "--candidates", "3", "--batch-size", "2", "--dev-size", "4"]
#: Its evolutions: e_0 on the 4 dev items, then per step 2 trajectory cases and 3 candidates x 4 dev items,
#: then e_0 and the result on the 4 items of the confirmation split (its default size is the dev size).
EVOLUTIONS = 4 + 2 * (2 + 3 * 4) + 2 * 4


def planned_calls(output: str, role: str) -> int:
    """The calls the dry run plans for ``role`` (0 when it has no row)."""
    found = re.search(rf"^\s*{role} \((.*?)\): (\d+) calls", output, re.MULTILINE)
    return int(found.group(2)) if found else 0


def planned_model(output: str, role: str) -> str:
    return re.search(rf"^\s*{role} \((.*?)\): ", output, re.MULTILINE).group(1)


def dry_run(*args: str) -> str:
    """Output of ``autoevol ARGS`` run in-process (its exit code must be 0)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    return tmp_path


def test_the_entry_point_plans_the_compile_and_writes_nothing(tmp_path):
    # a generous limit: the test checks the plan, not how fast a loaded machine starts Python
    result = subprocess.run(["autoevol", "compile", str(EXAMPLE), "--out", "evolver.json", "--dry-run", *SMALL,
                             *UNREACHABLE], capture_output=True, text=True, cwd=tmp_path, timeout=600, check=False,
                            env={**os.environ, "OPENAI_API_KEY": "x", "NO_COLOR": "1"})
    assert result.returncode == 0, result.stderr
    assert planned_calls(result.stdout, "evol") == 2 * EVOLUTIONS  # each evolution and its answer
    assert planned_calls(result.stdout, "judge") == EVOLUTIONS
    assert planned_model(result.stdout, "judge") == "openai/nowhere"  # the optimizer LM, here the evol LM
    assert planned_calls(result.stdout, "optimizer") == 2 * 3 * (1 + 3)
    assert not any(tmp_path.iterdir())


def test_compile_plans_the_confirmation_split_and_the_starting_methods_it_is_given(workdir):
    compile_args = ["compile", str(EXAMPLE), "--out", "evolver.json", "--dry-run", *SMALL, *UNREACHABLE]
    smaller = dry_run(*compile_args, "--confirm-size", "1")
    assert planned_calls(smaller, "judge") == EVOLUTIONS - 2 * 3
    raced = dry_run(*compile_args, "--start", "weak", "--start", "deepen")
    assert planned_calls(raced, "judge") == EVOLUTIONS + 2 * 4  # each start on the 4 dev items
    everything = dry_run(*compile_args, "--start", "all")
    assert planned_calls(everything, "judge") == EVOLUTIONS + 7 * 4


def test_compile_plans_the_judge_it_is_given_and_none_when_turned_off(workdir):
    compile_args = ["compile", str(EXAMPLE), "--out", "evolver.json", "--dry-run", *SMALL, *UNREACHABLE]
    other = dry_run(*compile_args, "--judge-lm", "openai/referee")
    assert planned_model(other, "judge") == "openai/referee" and planned_calls(other, "judge") == EVOLUTIONS
    for off in (["--judge-lm", "none"], ["--disable-rule", "judge"]):
        output = dry_run(*compile_args, *off)
        assert planned_calls(output, "judge") == 0 and "judge (" not in output, off
        assert planned_calls(output, "evol") == 2 * EVOLUTIONS, off
    assert not any(workdir.iterdir())


def test_compile_without_trajectory_answers_plans_fewer_answers_and_judge_calls(workdir):
    output = dry_run("compile", str(EXAMPLE), "--out", "evolver.json", "--dry-run", *SMALL, *UNREACHABLE,
                     "--no-trajectory-answers", "--proposal-attempts", "1")
    # the 2 cases of each step are evolved but not answered, nor judged
    assert planned_calls(output, "evol") == 2 * EVOLUTIONS - 2 * 2
    assert planned_calls(output, "judge") == EVOLUTIONS - 2 * 2
    assert planned_calls(output, "optimizer") == 2 * 3 * (1 + 1)


@pytest.mark.parametrize("trials", [1, 3])
def test_tune_plans_max_demos_at_the_top_of_the_space_and_creates_no_study(workdir, trials):
    space = workdir / "space.json"
    space.write_text('{"max_steps": 1, "num_candidates": 2, "batch_size": 4, "dev_size": 10, "evolution_rounds": 1}')
    output = dry_run("tune", str(EXAMPLE), "--trials", str(trials), "--dry-run", "--space", str(space),
                     "--storage", "sqlite:///studies.db", *UNREACHABLE)
    # per trial, max_demos 3 (the default space's top), 2 demonstration sets per step (the
    # teleprompter's default): 10 (e_0) + 1 step x (4 trajectory + (2 + 2) x 10) = 54 evolutions,
    # + 1 held-out item (8 // 5), each answered; the teleprompter has no judge in a study
    assert planned_calls(output, "evol") == trials * 2 * 55
    assert planned_calls(output, "optimizer") == trials * 2 * (1 + 3)
    assert planned_calls(output, "judge") == planned_calls(output, "teacher") == 0
    assert "max_demos at the upper end of the search space (3)" in output
    assert not (workdir / "studies.db").exists()


def test_tune_with_max_demos_fixed_at_zero_plans_no_demonstration_sets(workdir):
    space = workdir / "space.json"
    space.write_text('{"max_steps": 1, "num_candidates": 2, "batch_size": 4, "dev_size": 10, "evolution_rounds": 1, '
                     '"max_demos": 0}')
    output = dry_run("tune", str(EXAMPLE), "--trials", "1", "--dry-run", "--space", str(space),
                     "--storage", "sqlite:///studies.db", *UNREACHABLE)
    # 10 (e_0) + 1 step x (4 trajectory + 2 x 10) + 1 held-out = 35 evolutions, each answered
    assert planned_calls(output, "evol") == 2 * 35
    assert "demonstrations:" not in output
