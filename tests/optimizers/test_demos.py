"""Demonstrations as the evolver's second parameter, in a scripted world where they matter.

The evol LM rewrites item ``n`` by its residue ``n % 4`` and by the demonstrations in its prompt
(as a small model imitates its examples): residue 2 comes out as a good harder rewrite (GOOD),
residue 3 as a rewrite that passes every rule yet teaches a bad habit (BAD); residue 1 always
fails (unchanged), residue 0 fails unless a GOOD demonstration is shown, and residue 2 fails when a
BAD one is shown. So on the dev set: no demonstrations 50%, only good ones 25%, good and bad 50%,
only bad 75%. The method edits the optimizer proposes change nothing, so only demonstrations can
improve the evolver, and selection has to find a set without a bad one.
"""

from __future__ import annotations

import json
import re
import threading

import dspy
import pytest

from autoevol.lm import CallPolicy
from autoevol.optimizers import AutoEvolInstruct
from autoevol.metrics._text import normalize
from autoevol.programs.demonstration import Demo
from autoevol.programs.evolver import Evolver
from autoevol.programs.pipeline import EvolveJob
from autoevol.signatures.evolve import INITIAL_METHOD
from autoevol.testing.scripted import ScriptedRequest, edit_reply, scripted_lm

GOOD = "Count them per row and explain the total."
BAD = "Round every count to the nearest ten first."


def items(numbers, prefix: str = "Job") -> list[str]:
    return [f"{prefix} #{n}: how many crates does shelf {n} hold?" for n in numbers]


def number_of(text: str) -> int:
    return int(re.search(r"#(\d+)", text).group(1))


class Evol:
    """The evol LM and its answer role; records which demonstrations each evolution was shown."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: ScriptedRequest) -> dict[str, str]:
        if request.plain:
            return {"answer": "Shelf by shelf: four rows of six crates, so twenty-four crates in all."}
        text = request.inputs["instruction"]
        demos = "\n".join(request.history)
        with self._lock:
            self.shown.append(demos)
        good, bad = GOOD in demos, BAD in demos
        residue = number_of(text) % 4
        if residue == 1 or (residue == 0 and not good) or (residue == 2 and bad):
            return {"working_notes": "nothing to add", "evolved_instruction": text}
        mark = BAD if residue == 3 else GOOD
        return {"working_notes": f"add a step: {mark.lower()}", "evolved_instruction": f"{text} {mark}"}


class Optimizer:
    """Analyses, method edits that change nothing in this world, and (as teacher) good rewrites."""

    def __init__(self) -> None:
        self.teacher_calls = 0
        self._lock = threading.Lock()

    def __call__(self, request: ScriptedRequest) -> dict[str, str]:
        if "evolved_instruction" in request.outputs:  # the teacher rewriting a failed case
            with self._lock:
                self.teacher_calls += 1
            text = request.inputs["instruction"]
            return {"working_notes": "a second counting step", "evolved_instruction": f"{text} {GOOD}"}
        if "trajectory" in request.user:
            issues = [{"case_id": "1", "category": "unimproved_complexity", "reason": "unchanged"}]
            return {"issues": json.dumps(issues), "feedback": "Rewrites stay unchanged."}
        with self._lock:
            rule = f"Keep the task's numbers and units exactly (variant {self.teacher_calls})."
        return edit_reply([rule])


DEV = items(range(32))  # eight of each residue
TRAIN = items(range(100, 180))


def compile_world(student: Evolver | None = None, *, trainset=None, valset=None, evol: Evol | None = None,
                  optimizer: Optimizer | None = None, **settings):
    policy = CallPolicy(max_retries=0)
    evol_lm = scripted_lm(evol or Evol(), role="evol", policy=policy)
    optimizer_lm = scripted_lm(optimizer or Optimizer(), role="optimizer", policy=policy)
    options = {"num_candidates": 1, "batch_size": 6, "dev_size": 32, "max_steps": 4, "patience": 4, "num_threads": 1,
               "seed": 0, "racing": False, "max_demos": 2, "demo_candidates": 3, "keep_unchanged": True}
    options.update(settings)
    tele = AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, **options)
    return tele, tele.compile(student or Evolver(), trainset=TRAIN if trainset is None else trainset,
                              valset=DEV if valset is None else valset)


def is_good(demo: Demo) -> bool:
    return demo.evolved_instruction.endswith(GOOD)


def is_bad(demo: Demo) -> bool:
    return demo.evolved_instruction.endswith(BAD)


# ---------------------------------------------------------------------------------- selection


def test_selection_finds_a_demonstration_set_without_a_bad_one():
    _, result = compile_world()
    history = result.compile_history
    assert history[0].incumbent.failure_rate == 0.5 and not history[0].incumbent.demos
    assert result.method == INITIAL_METHOD  # the method edits changed nothing here
    assert len(result.demos) == 2 and all(is_good(demo) for demo in result.demos)
    assert result.metadata["dev_failure_rate"] == 0.25
    measured = [c for record in history for c in record.candidates if c.kind == "demos" and c.score]
    # a bad demonstration hurts: every set carrying one measured worse than the good set that won
    carrying_bad = [c for c in measured if any(is_bad(demo) for demo in c.candidate.demos)]
    assert carrying_bad and all(c.score.failure_rate >= 0.5 for c in carrying_bad)
    assert any(c.score.failure_rate == 0.75 for c in carrying_bad)  # only bad ones: worse than none at all


def test_the_step_record_says_which_demonstrations_each_candidate_carried_and_where_they_came_from():
    _, result = compile_world()
    first = result.compile_history[0]
    method_candidates = [c for c in first.candidates if c.kind == "method"]
    demo_candidates = [c for c in first.candidates if c.kind == "demos"]
    assert method_candidates and all(c.candidate.demos == () for c in method_candidates)  # the incumbent's (none)
    assert demo_candidates and all(c.candidate.method == INITIAL_METHOD and len(c.candidate.demos) == 2
                                   for c in demo_candidates)
    assert first.new_demos and all(d.origin == "observed" and d.step == 1 and d.item_id for d in first.new_demos)
    assert all(c.change.startswith("demonstrations: ") for c in demo_candidates)
    winner_step = next(record for record in result.compile_history if record.improved)
    later = result.compile_history[winner_step.step:]  # after the win, method candidates carry the new set
    assert all(c.candidate.demos == winner_step.selected.demos for record in later for c in record.candidates
               if c.kind == "method")


def test_with_max_demos_0_the_compile_is_the_papers_method_search():
    _, result = compile_world(max_demos=0)
    assert result.demos == []
    for record in result.compile_history:
        assert record.new_demos == [] and all(c.kind == "method" and not c.candidate.demos for c in record.candidates)


def test_no_dev_item_ever_becomes_a_demonstration():
    dev_texts = {normalize(text) for text in DEV}
    # the training data contains the dev items too; the teacher writes rewrites of failed cases
    _, result = compile_world(trainset=TRAIN + DEV, teacher_demos=True, max_steps=3)
    seen = [demo for record in result.compile_history
            for demo in [*record.new_demos, *(d for c in record.candidates for d in c.candidate.demos)]]
    assert seen and {demo.origin for demo in seen} == {"observed", "teacher"}
    assert not any(normalize(demo.instruction) in dev_texts for demo in [*seen, *result.demos])
    # a student's demonstration that is a dev item is not used either, even with keep_demos
    leaked = Demo(instruction=DEV[4], evolved_instruction=f"{DEV[4]} {GOOD}")
    _, kept = compile_world(Evolver(demos=[leaked]), keep_demos=True, max_steps=1)
    assert kept.compile_history[0].incumbent.demos == ()


def test_teacher_rewrites_join_the_pool_only_when_they_pass_every_rule():
    optimizer = Optimizer()
    _, result = compile_world(optimizer=optimizer, teacher_demos=True, max_steps=1)
    teacher = [d for d in result.compile_history[0].new_demos if d.origin == "teacher"]
    assert optimizer.teacher_calls > 0 and teacher
    assert all(number_of(d.instruction) % 4 in (0, 1) and is_good(d) for d in teacher)  # failed cases


# ---------------------------------------------------------------------------------- warm start, files, use


def test_a_warm_start_keeps_the_method_and_draws_new_demonstrations_unless_told_to_keep_them():
    _, first = compile_world()
    assert first.demos
    other_train, other_dev = items(range(200, 280), "Box"), items(range(32), "Box")
    _, redrawn = compile_world(first, trainset=other_train, valset=other_dev)
    assert redrawn.compile_history[0].incumbent.demos == ()  # the start shows none of the old ones
    assert redrawn.demos and all(demo.instruction.startswith("Box #") for demo in redrawn.demos)
    assert redrawn.metadata["started_from"]["demos"] == 2 and redrawn.metadata["started_from"]["demos_kept"] == 0
    _, kept = compile_world(first, trainset=other_train, valset=other_dev, keep_demos=True, max_steps=1)
    assert list(kept.compile_history[0].incumbent.demos) == first.demos
    assert kept.metadata["initial_dev_failure_rate"] == 0.25  # the old good demonstrations help here too


def test_a_compiled_evolver_with_demonstrations_round_trips_through_its_file(tmp_path):
    _, result = compile_world(max_steps=4)
    path = result.save(tmp_path / "evolver.json")
    loaded = Evolver().load(path)
    assert loaded.demos == result.demos and loaded.fingerprint == result.fingerprint
    assert loaded.metadata["hyperparameters"]["max_demos"] == 2


def test_a_resumed_run_rebuilds_the_same_pool_and_result(tmp_path):
    _, first = compile_world(max_steps=2)
    run_dir = tmp_path / "run"
    policy = CallPolicy(max_retries=0)
    options = {"num_candidates": 1, "batch_size": 6, "dev_size": 32, "patience": 4, "num_threads": 1, "seed": 0,
               "racing": False, "max_demos": 2, "demo_candidates": 3, "keep_unchanged": True}
    for steps in (1, 2):  # one step, then the same run extended by a second one
        evol_lm = scripted_lm(Evol(), role="evol", policy=policy)
        optimizer_lm = scripted_lm(Optimizer(), role="optimizer", policy=policy)
        resumed = AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, max_steps=steps, **options).compile(
            Evolver(), trainset=TRAIN, valset=DEV, run_dir=run_dir)
    assert resumed.demos == first.demos
    assert [r.model_dump(include={"candidates", "new_demos"}) for r in resumed.compile_history] == \
        [r.model_dump(include={"candidates", "new_demos"}) for r in first.compile_history]


def test_evolving_with_a_loaded_evolver_shows_its_demonstrations(tmp_path):
    demo = Demo(instruction=TRAIN[2], evolved_instruction=f"{TRAIN[2]} {GOOD}", working_notes="count per row")
    path = Evolver(demos=[demo]).save(tmp_path / "evolver.json")
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"id": str(n), "instruction": text}) + "\n"
                            for n, text in enumerate(items([4, 8]))))
    evol = Evol()
    with dspy.context(lm=scripted_lm(evol, role="evol")):
        summary = EvolveJob(Evolver().load(path), concurrency=1, evol_model="scripted").run(seed, tmp_path / "o.jsonl")
    assert evol.shown and all(GOOD in shown for shown in evol.shown)
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert summary and all(not row["failed"] for row in rows)  # residue 0 passes only with the good demo


@pytest.mark.parametrize("value", [-1])
def test_negative_demo_settings_are_refused(value):
    with pytest.raises(ValueError, match="max_demos must be at least 0"):
        AutoEvolInstruct(optimizer_lm=scripted_lm(Optimizer()), max_demos=value)


def test_bootstrapping_keeps_the_first_successes_that_pass_every_rule():
    from autoevol.optimizers.auto_evol.demos import bootstrap_demos

    with dspy.context(lm=scripted_lm(Evol(), role="evol")):
        demos = bootstrap_demos(Evolver(), items(range(100, 120)), 3)
    # items 100, 101 fail (residues 0 and 1 without a good demonstration); 102 and 103 pass, then 106
    assert [number_of(demo.instruction) for demo in demos] == [102, 103, 106]
    assert all(demo.origin == "observed" for demo in demos)
