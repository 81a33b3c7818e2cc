"""Demonstrations through the installed entry point: ``show``, ``report`` and ``compare``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from autoevol.lm import CallPolicy
from autoevol.optimizers import AutoEvolInstruct
from autoevol.programs.demonstration import Demo
from autoevol.programs.evolver import Evolver
from autoevol.testing.fake_openai import FakeOpenAIServer, chat_adapter_responder
from autoevol.testing.scripted import scripted_lm
from tests.optimizers.test_demos import DEV, GOOD, TRAIN, Evol, Optimizer

DEMO = Demo(instruction="Add 4 and 5.", working_notes="add a second step",
            evolved_instruction="Add 4 and 5, then double the sum and say whether it is even.",
            origin="observed", item_id="train-7", step=2)


def autoevol(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [shutil.which("autoevol") or "autoevol", *map(str, args)]
    env = {**os.environ, "OPENAI_API_KEY": "test", "COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=300)


def test_show_lists_the_demonstrations_and_where_they_came_from(tmp_path: Path) -> None:
    path = Evolver("Make it harder.", demos=[DEMO]).save(tmp_path / "e.json")
    result = autoevol("show", path)
    assert result.returncode == 0, result.stderr
    assert "Add 4 and 5, then double the sum" in result.stdout and "observed, item train-7, step 2" in result.stdout
    plain = autoevol("show", Evolver("Make it harder.").save(tmp_path / "plain.json"))
    assert plain.returncode == 0 and "no demonstrations" in plain.stdout


def test_report_of_a_run_shows_candidate_kinds_and_the_final_demonstrations(tmp_path: Path) -> None:
    policy = CallPolicy(max_retries=0)
    AutoEvolInstruct(
        optimizer_lm=scripted_lm(Optimizer(), role="optimizer", policy=policy),
        evol_lm=scripted_lm(Evol(), role="evol", policy=policy), num_candidates=1, batch_size=6, dev_size=32,
        max_steps=3, patience=3, num_threads=1, racing=False, max_demos=2, demo_candidates=3, keep_unchanged=True,
    ).compile(Evolver(), trainset=TRAIN, valset=DEV, run_dir=tmp_path / "run")
    result = autoevol("report", tmp_path / "run", "--out", tmp_path / "run.html")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "run.html").read_text()
    assert "Final demonstrations" in page and GOOD in page and "found during the compile: observed" in page
    assert "0.250 d" in page  # the winning demonstration set (a rate of 25%), marked as one among the candidates


def test_compare_reports_each_evolvers_demonstrations(tmp_path: Path) -> None:
    data = tmp_path / "held.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Add {i} and {i + 2}, then explain the sum."}) + "\n"
                            for i in range(4)))
    shown = Evolver(demos=[DEMO]).save(tmp_path / "shown.json")
    out = tmp_path / "cmp.json"
    with FakeOpenAIServer(responder=chat_adapter_responder) as server:
        result = autoevol("compare", "e0", shown, "--data", data, "--evol-lm", "openai/fake", "--api-base",
                          server.url, "--no-quality", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "shown 1 (observed 1)" in result.stdout + result.stderr
    document = json.loads(out.read_text())
    assert document["demos"]["e0"] == [] and document["demos"]["shown"][0]["instruction"] == "Add 4 and 5."
