"""Tests for autoevol.estimate: what a compile plans, with and without demonstrations.

The plan is checked against scripted compiles too: what a compile choosing demonstrations really
sends stays within its plan, and its extra calls over the same compile without them stay within
what the plan adds for them.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoevol.cli import app
from autoevol.estimate import compile_evaluations, demo_plan, estimate_compile
from autoevol.lm import CallPolicy
from autoevol.optimizers import AutoEvolInstruct
from autoevol.programs.demonstration import Demo
from autoevol.programs.evolver import Evolver
from autoevol.testing.scripted import ScriptedRequest, scripted_lm


def shelf(number: int) -> str:
    return f"Shelf {number} holds four rows of crates; how many crates are on it?"


SAMPLE = [shelf(n) for n in range(8)]
SCHEDULE = {"steps": 2, "candidates": 2, "batch_size": 3, "dev_size": 4, "rounds": 1}
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seed.jsonl"


def plan(**settings):
    return estimate_compile(SAMPLE, **{**SCHEDULE, **settings}, evolver=Evolver(), model="openai/evol",
                            optimizer_model="openai/optimizer")


def calls(estimate, role: str) -> int:
    return sum(r.calls for r in estimate.roles if r.role == role)


def evol_input_per_call(estimate) -> float:
    evol = next(r for r in estimate.roles if r.role == "evol")
    return evol.input_tokens / evol.calls


# ---------------------------------------------------------------------------------- the plan


def test_without_demonstrations_the_demo_settings_change_nothing():
    paper = plan()
    assert plan(max_demos=0, demo_candidates=5, teacher_demos=True) == paper
    assert demo_plan(**SCHEDULE, max_demos=0, demo_candidates=5, teacher_demos=True).model_dump() == {
        "answer_calls": 0, "evaluations": 0, "teacher_calls": 0, "demos_shown": 0}
    assert {r.role for r in paper.roles} == {"evol", "optimizer"}


def test_demonstrations_add_trajectory_answers_and_the_demo_sets_measured_on_dev():
    paper, with_demos = plan(), plan(max_demos=2, demo_candidates=1)
    evaluations, _ = compile_evaluations(**SCHEDULE)
    # per step: 3 trajectory answers (1.5 evaluations) and one demonstration set on the 4 dev items
    assert calls(paper, "evol") == 2 * evaluations
    assert calls(with_demos, "evol") == 2 * evaluations + 2 * (3 + 2 * 4)
    assert calls(with_demos, "optimizer") == calls(paper, "optimizer")  # analyses and rewrites unchanged
    assert any("demonstrations" in note for note in with_demos.notes)


@pytest.mark.parametrize("demo_candidates", [0, 1, 3])
def test_each_demo_candidate_costs_one_dev_measurement_per_step(demo_candidates):
    base = calls(plan(max_demos=2, demo_candidates=0), "evol")
    grown = calls(plan(max_demos=2, demo_candidates=demo_candidates), "evol")
    assert grown - base == demo_candidates * SCHEDULE["steps"] * SCHEDULE["dev_size"] * 2


def test_teacher_demos_plan_a_rewrite_and_an_answer_per_trajectory_case():
    without, teacher = plan(max_demos=2, demo_candidates=1), plan(max_demos=2, demo_candidates=1, teacher_demos=True)
    assert calls(without, "teacher") == 0
    assert calls(teacher, "teacher") == SCHEDULE["steps"] * SCHEDULE["batch_size"]
    assert calls(teacher, "evol") - calls(without, "evol") == SCHEDULE["steps"] * SCHEDULE["batch_size"]
    assert next(r for r in teacher.roles if r.role == "teacher").model == "openai/optimizer"


def test_demonstrations_in_the_prompt_cost_input_tokens_on_every_evolution():
    one, three = plan(max_demos=1, demo_candidates=0), plan(max_demos=3, demo_candidates=0)
    assert calls(one, "evol") == calls(three, "evol")
    assert evol_input_per_call(three) > evol_input_per_call(one) > evol_input_per_call(plan())


def test_a_students_demonstrations_count_only_when_the_compile_keeps_them():
    demo = Demo(instruction=SAMPLE[0], working_notes="add a second shelf",
                evolved_instruction=f"{SAMPLE[0]} Then add the crates of a second shelf twice as large.")
    student = Evolver(demos=[demo])

    def student_plan(keep_demos: bool):
        return estimate_compile(SAMPLE, **SCHEDULE, evolver=student, model="openai/evol",
                                optimizer_model="openai/optimizer", keep_demos=keep_demos)

    assert student_plan(keep_demos=False) == plan()
    assert evol_input_per_call(student_plan(keep_demos=True)) > evol_input_per_call(plan())


def test_compile_dry_run_plans_the_demonstrations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "x")

    def dry_run(*extra: str) -> str:
        result = CliRunner().invoke(app, [
            "compile", str(EXAMPLE), "--out", "evolver.json", "--dry-run", "--steps", "2", "--candidates", "3",
            "--batch-size", "2", "--dev-size", "4", "--evol-lm", "openai/nowhere", "--api-base",
            "http://127.0.0.1:9/v1", *extra])
        assert result.exit_code == 0, result.output
        return result.output

    def planned(output: str, role: str) -> int:
        found = re.search(rf"^\s*{role} \(.*?\): (\d+) calls", output, re.MULTILINE)
        return int(found.group(1)) if found else 0

    paper, demos = dry_run(), dry_run("--max-demos", "2", "--demo-candidates", "1", "--teacher-demos")
    # per step: 2 trajectory answers, 2 teacher answers and one demonstration set on the 4 dev items
    assert planned(demos, "evol") == planned(paper, "evol") + 2 * (2 + 2 + 2 * 4)
    assert planned(demos, "teacher") == 2 * 2 and planned(paper, "teacher") == 0
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------- against a compile


class World:
    """Even-numbered shelves come out as good harder rewrites, odd ones unchanged (a failure).

    The evol LM ignores demonstrations, so a compile with them differs from one without only by
    what choosing demonstrations costs.
    """

    def __init__(self) -> None:
        self.proposals = self.teacher_calls = 0
        self._lock = threading.Lock()

    def evol(self, request: ScriptedRequest) -> dict[str, str]:
        if request.plain:
            return {"answer": "Four rows of six crates each: twenty-four crates."}
        text = request.inputs["instruction"]
        if int(re.search(r"Shelf (\d+)", text).group(1)) % 2:
            return {"working_notes": "nothing to add", "evolved_instruction": text}
        return {"working_notes": "add a second shelf", "evolved_instruction": f"{text} Add a second shelf of five rows."}

    def optimizer(self, request: ScriptedRequest) -> dict[str, str]:
        if "evolved_instruction" in request.outputs:  # the teacher rewriting a failed case
            with self._lock:
                self.teacher_calls += 1
            text = request.inputs["instruction"]
            return {"working_notes": "a second shelf", "evolved_instruction": f"{text} Then count a second shelf."}
        if "trajectory" in request.user:
            issues = [{"case_id": "1", "category": "unimproved_complexity", "reason": "unchanged"}]
            return {"issues": json.dumps(issues), "feedback": "Odd shelves stay unchanged."}
        with self._lock:
            self.proposals += 1
            rule = f"Keep every number of the task (variant {self.proposals})."
        return {"new_rules": json.dumps([rule]), "revised_step": ""}


def compiled_calls(**settings) -> tuple[int, int, World]:
    """Evol-LM and optimizer-LM requests of a scripted compile at SCHEDULE, without racing or trajectory answers."""
    world, policy = World(), CallPolicy(max_retries=0)
    evol_lm = scripted_lm(world.evol, role="evol", policy=policy)
    optimizer_lm = scripted_lm(world.optimizer, role="optimizer", policy=policy)
    teleprompter = AutoEvolInstruct(
        optimizer_lm=optimizer_lm, evol_lm=evol_lm, num_candidates=SCHEDULE["candidates"],
        batch_size=SCHEDULE["batch_size"], dev_size=SCHEDULE["dev_size"], max_steps=SCHEDULE["steps"],
        evolution_rounds=SCHEDULE["rounds"], patience=SCHEDULE["steps"], racing=False, trajectory_answers=False,
        num_threads=1, seed=0, keep_unchanged=True, **settings)
    compiled = teleprompter.compile(Evolver(), trainset=[shelf(n) for n in range(100, 140)],
                                    valset=[shelf(n) for n in range(10, 14)])
    assert len(compiled.compile_history) == SCHEDULE["steps"]
    return evol_lm.engine.calls, optimizer_lm.engine.calls, world


def test_a_compile_choosing_demonstrations_costs_more_but_stays_within_the_plan():
    settings = {"max_demos": 1, "demo_candidates": 2, "teacher_demos": True}
    evol_paper, optimizer_paper, _ = compiled_calls()
    evol_demos, optimizer_demos, world = compiled_calls(**settings)
    planned, paper = plan(**settings), plan()
    assert world.teacher_calls > 0
    assert evol_paper <= calls(paper, "evol") and evol_demos <= calls(planned, "evol")
    # what demonstrations cost: more evol calls than without them, but no more than planned for them
    assert 0 < evol_demos - evol_paper <= calls(planned, "evol") - calls(paper, "evol")
    assert 0 < optimizer_demos - optimizer_paper == world.teacher_calls <= calls(planned, "teacher")
