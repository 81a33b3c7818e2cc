"""--dry-run on compile and tune plans calls without contacting any LM (the endpoint is unreachable)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seed.jsonl"
UNREACHABLE = ["--evol-lm", "openai/nowhere", "--api-base", "http://127.0.0.1:9/v1"]


def autoevol(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["autoevol", *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "OPENAI_API_KEY": "x", "NO_COLOR": "1"})


def planned_calls(output: str, role: str) -> int:
    return int(re.search(rf"^\s*{role} \(.*?\): (\d+) calls", output, re.M).group(1))


def test_compile_dry_run_plans_the_paper_schedule(tmp_path):
    result = autoevol("compile", str(EXAMPLE), "--out", "evolver.json", "--dry-run", "--steps", "2",
                      "--candidates", "3", "--batch-size", "2", "--dev-size", "4", *UNREACHABLE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # evaluations: 4 (e_0) + 2 steps x (1 trajectory + 3 x 4) = 30, two evol calls each
    assert planned_calls(result.stdout, "evol") == 60
    assert planned_calls(result.stdout, "optimizer") == 2 * 2 * 3
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("trials", [1, 3])
def test_tune_dry_run_scales_with_trials_and_creates_no_study(tmp_path, trials):
    space = tmp_path / "space.json"
    space.write_text('{"max_steps": 1, "num_candidates": 2, "batch_size": 4, "dev_size": 10, "evolution_rounds": 1}')
    result = autoevol("tune", str(EXAMPLE), "--trials", str(trials), "--dry-run", "--space", str(space),
                      "--storage", "sqlite:///studies.db", *UNREACHABLE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # per trial: 10 (e_0) + 1 step x (2 trajectory + 2 x 10) = 32 evaluations, + 1 held-out (8 // 5)
    assert planned_calls(result.stdout, "evol") == trials * 2 * 33
    assert planned_calls(result.stdout, "optimizer") == trials * 4
    assert not (tmp_path / "studies.db").exists()
