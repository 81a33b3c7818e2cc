"""Tests for autoevol.estimate: what a compile plans (trajectory answers, the judge, proposal
attempts, demonstrations) and what ``compile --dry-run`` prints.

The plan is checked against scripted compiles too: every role's real calls (evol, judge,
optimizer) stay within the plan, and a compile choosing demonstrations costs more than one without
them by no more than the plan adds for them.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoevol.cli import app
from autoevol.estimate import compile_plan, estimate_compile
from autoevol.lm import CallPolicy
from autoevol.metrics.failure import FailureDetector
from autoevol.optimizers import AutoEvolInstruct, CompileSettings
from autoevol.programs.demonstration import Demo
from autoevol.programs.evolver import Evolver
from autoevol.testing.scripted import ScriptedRequest, edit_reply, scripted_lm


def shelf(number: int) -> str:
    return f"Shelf {number} holds four rows of crates; how many crates are on it?"


SAMPLE = [shelf(n) for n in range(8)]
SCHEDULE = {"steps": 2, "candidates": 2, "batch_size": 3, "dev_size": 4, "rounds": 1}
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seed.jsonl"
#: Evolutions at SCHEDULE: e_0 on the 4 dev items, then per step 3 trajectory cases and 2 candidates x 4 dev items.
EVOLUTIONS = 4 + 2 * (3 + 2 * 4)


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
    assert compile_plan(**SCHEDULE, max_demos=0, demo_candidates=5, teacher_demos=True) == compile_plan(**SCHEDULE)
    assert compile_plan(**SCHEDULE).teacher_calls == compile_plan(**SCHEDULE).demos_shown == 0
    assert {r.role for r in paper.roles} == {"evol", "optimizer"}


def test_the_trajectorys_last_stage_is_answered_by_default():
    # every evolution is answered: the dev measurements and each trajectory case's last stage
    assert calls(plan(), "evol") == 2 * EVOLUTIONS
    # without trajectory answers the 3 cases of each step are only evolved
    assert calls(plan(trajectory_answers=False), "evol") == 2 * EVOLUTIONS - 2 * 3
    # with more rounds only the last stage is answered: 3 more evolutions per step, no more answers
    assert calls(plan(rounds=2), "evol") == 2 * EVOLUTIONS + 2 * 3


def test_the_judge_has_its_own_row_and_judges_every_answer():
    judged = plan(judge_model="openai/judge")
    judge = next(r for r in judged.roles if r.role == "judge")
    assert judge.model == "openai/judge" and judge.calls == EVOLUTIONS
    assert judge.output_tokens_max == EVOLUTIONS * 160  # the compile's judge token limit
    assert calls(judged, "evol") == calls(plan(), "evol")  # the judge adds calls of its own only
    assert calls(plan(judge_model="openai/judge", trajectory_answers=False), "judge") == EVOLUTIONS - 2 * 3
    assert any("judged" in note for note in judged.notes)


@pytest.mark.parametrize("attempts", [1, 3])
def test_every_proposal_attempt_is_an_optimizer_call(attempts):
    # per step and candidate: one analysis and up to `attempts` proposals
    assert calls(plan(proposal_attempts=attempts), "optimizer") == 2 * 2 * (1 + attempts)


def test_the_plans_defaults_are_the_teleprompters():
    teleprompter = inspect.signature(CompileSettings).parameters  # AutoEvolInstruct's settings and defaults
    planned = inspect.signature(estimate_compile).parameters
    for name in ("trajectory_answers", "proposal_attempts", "max_demos", "demo_candidates", "teacher_demos",
                 "keep_demos"):
        assert planned[name].default == teleprompter[name].default, name


def test_demonstrations_add_the_demo_sets_measured_on_dev():
    paper, with_demos = plan(), plan(max_demos=2, demo_candidates=1)
    # per step: one demonstration set on the 4 dev items (evolved and answered)
    assert calls(with_demos, "evol") == calls(paper, "evol") + 2 * (2 * 4)
    assert calls(with_demos, "optimizer") == calls(paper, "optimizer")  # analyses and proposals unchanged
    assert any("demonstrations" in note for note in with_demos.notes)
    # demonstrations answer the trajectory even with --no-trajectory-answers
    assert calls(plan(max_demos=2, demo_candidates=1, trajectory_answers=False), "evol") == calls(with_demos, "evol")


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
    judged = {flag: plan(max_demos=2, demo_candidates=1, teacher_demos=flag, judge_model="openai/judge")
              for flag in (False, True)}
    assert calls(judged[True], "judge") - calls(judged[False], "judge") == SCHEDULE["steps"] * SCHEDULE["batch_size"]


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
    # per step: 2 teacher answers and one demonstration set on the 4 dev items (the trajectory is
    # answered either way), each answer judged by the judge (the optimizer LM's model)
    assert planned(demos, "evol") == planned(paper, "evol") + 2 * (2 + 2 * 4)
    assert planned(demos, "judge") == planned(paper, "judge") + 2 * (2 + 4)
    assert planned(demos, "teacher") == 2 * 2 and planned(paper, "teacher") == 0
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------- against a compile


class World:
    """Every shelf comes out as a rewrite that passes the cheap rules, worded after the method; the
    judge finds the rewrites of odd-numbered shelves no harder (a failure), so every evolution is
    answered and judged.

    Every other method proposal adds nothing (unusable: resampled). The evol LM ignores
    demonstrations, so a compile with them differs from one without only by what choosing
    demonstrations costs.
    """

    def __init__(self) -> None:
        self.proposals = self.teacher_calls = 0
        self._lock = threading.Lock()

    def evol(self, request: ScriptedRequest) -> dict[str, str]:
        if request.plain:
            return {"answer": "Four rows of six crates each: twenty-four crates."}
        text = request.inputs["instruction"]
        # each method rewrites differently, so no answer or verdict is a repeated (cached) request
        rows = 5 + sum(int(n) for n in re.findall(r"variant (\d+)", request.instructions))
        return {"working_notes": "add a second shelf",
                "evolved_instruction": f"{text} Add a second shelf of {rows} rows."}

    def judge(self, request: ScriptedRequest) -> dict[str, str]:
        if int(re.search(r"Shelf (\d+)", request.inputs["original_instruction"]).group(1)) % 2:
            return {"verdict": "not_harder", "reason": "only a shelf was added"}
        return {"verdict": "harder", "reason": "a second shelf to count"}

    def optimizer(self, request: ScriptedRequest) -> dict[str, str]:
        if "evolved_instruction" in request.outputs:  # the teacher rewriting a failed case
            with self._lock:
                self.teacher_calls += 1
            text = request.inputs["instruction"]
            return {"working_notes": "a second shelf", "evolved_instruction": f"{text} Then count a second shelf."}
        if "trajectory" in request.user:
            issues = [{"case_id": "1", "category": "unimproved_complexity", "reason": "not harder"}]
            return {"issues": json.dumps(issues), "feedback": "Odd shelves get no harder."}
        with self._lock:
            self.proposals += 1
            number = self.proposals
        if number % 2:
            return edit_reply()  # adds nothing: the proposal is resampled
        return edit_reply([f"Keep every number of the task (variant {number})."])


def compiled_calls(**settings) -> tuple[dict[str, int], World]:
    """Requests per role of a scripted compile at SCHEDULE with a judge, without racing."""
    world, policy = World(), CallPolicy(max_retries=0)
    lms = {role: scripted_lm(getattr(world, role), role=role, policy=policy) for role in ("evol", "optimizer", "judge")}
    teleprompter = AutoEvolInstruct(
        optimizer_lm=lms["optimizer"], evol_lm=lms["evol"], detector=FailureDetector(judge_lm=lms["judge"]),
        num_candidates=SCHEDULE["candidates"], batch_size=SCHEDULE["batch_size"], dev_size=SCHEDULE["dev_size"],
        max_steps=SCHEDULE["steps"], evolution_rounds=SCHEDULE["rounds"], patience=SCHEDULE["steps"], racing=False,
        num_threads=1, seed=0, keep_unchanged=True, **settings)
    compiled = teleprompter.compile(Evolver(), trainset=[shelf(n) for n in range(100, 140)],
                                    valset=[shelf(n) for n in range(10, 14)])
    assert len(compiled.compile_history) == SCHEDULE["steps"]
    return {role: lm.engine.calls for role, lm in lms.items()}, world


def test_a_compiles_calls_stay_within_the_plan_of_every_role():
    real, world = compiled_calls()
    planned = plan(judge_model="openai/judge")
    for role in ("evol", "judge", "optimizer"):
        assert 0 < real[role] <= calls(planned, role), role
    # the trajectory's answers and judge calls and the resampled proposals are real: a plan without
    # them would fall short
    assert real["evol"] > calls(plan(trajectory_answers=False), "evol")
    assert real["judge"] > calls(plan(judge_model="openai/judge", trajectory_answers=False), "judge")
    assert real["optimizer"] > calls(plan(proposal_attempts=1), "optimizer")
    assert world.teacher_calls == 0


def test_a_compile_choosing_demonstrations_costs_more_but_stays_within_the_plan():
    settings = {"max_demos": 1, "demo_candidates": 2, "teacher_demos": True}
    paper, _ = compiled_calls()
    demos, world = compiled_calls(**settings)
    planned, planned_paper = plan(**settings, judge_model="openai/judge"), plan(judge_model="openai/judge")
    assert world.teacher_calls > 0
    for role in ("evol", "judge"):
        assert demos[role] <= calls(planned, role), role
        # what demonstrations cost: more calls than without them, but no more than planned for them
        assert 0 < demos[role] - paper[role] <= calls(planned, role) - calls(planned_paper, role), role
    assert demos["optimizer"] <= calls(planned, "optimizer") + calls(planned, "teacher")
    assert 0 < demos["optimizer"] - paper["optimizer"] == world.teacher_calls <= calls(planned, "teacher")


def test_the_plan_counts_the_confirmation_and_the_raced_starting_methods():
    base = compile_plan(**SCHEDULE)
    planned = compile_plan(**SCHEDULE, confirm_size=5, starts=3)
    assert planned.evolutions - base.evolutions == planned.answers - base.answers == 2 * 5 + 3 * SCHEDULE["dev_size"]
    assert planned.optimizer_calls == base.optimizer_calls
