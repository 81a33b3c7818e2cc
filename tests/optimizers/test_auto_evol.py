"""AutoEvolInstruct with scripted LMs whose failure rate depends on marker phrases in the method.

The evol LM fails an item (returns it unchanged, rule ``unchanged``) when the item's number modulo 10
is below the method's "tenths": 6 for a method without a marker, 3 for BALANCED, 1 for CAREFUL, 8 for
SLOPPY, 0 for PERFECT. Failures are nested (CAREFUL's failures are a subset of BALANCED's), so the
ranking of methods is the same on any dev sample. The optimizer LM proposes, for its k-th analysis,
the k-th method of a list the test gives.
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import time

import dspy
import pytest

import autoevol
from autoevol.lm import CallPolicy
from autoevol.metrics.failure import FailureDetector, FunctionRule
from autoevol.metrics.rate import failure_rate
from autoevol.optimizers import AutoEvolInstruct, NotEnoughData, RunDirError, StepRecord, StopCompile
from autoevol.optimizers.auto_evol.proposal import rollout_id
from autoevol.optimizers.auto_evol.run_dir import RunDirectory
from autoevol.programs.evolver import Evolver
from autoevol.signatures.evolve import INITIAL_METHOD
from autoevol.testing.scripted import ScriptedRequest, scripted_lm

TENTHS = {"PERFECT": 0, "CAREFUL": 1, "BALANCED": 3, "SLOPPY": 8}
DEFAULT_TENTHS = 6


def method(marker: str) -> str:
    return f"Rewrite the instruction into a harder version of itself, keeping its task. Marker {marker}."


def tenths(text: str) -> int:
    for marker, value in TENTHS.items():
        if f"Marker {marker}." in text:
            return value
    return DEFAULT_TENTHS


def items(count: int, start: int = 0) -> list[str]:
    return [f"Task #{n}: describe item {n} in detail." for n in range(start, start + count)]


class Crash(BaseException):
    """Simulates the process dying in the middle of a call."""


class EvolScript:
    """The evol LM: fails items by the method's marker; can crash or raise on chosen calls."""

    def __init__(self, *, crash_at: int | None = None, broken_items: frozenset[int] = frozenset()) -> None:
        self.crash_at = crash_at
        self.broken_items = broken_items
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, request: ScriptedRequest) -> dict[str, str]:
        with self._lock:
            self.calls += 1
            if self.crash_at is not None and self.calls >= self.crash_at:
                raise Crash()
        if "evolved_instruction" not in request.outputs:
            return {"answer": "A complete answer that covers every requirement with worked examples."}
        text = request.inputs["instruction"]
        number = int(re.search(r"#(\d+)", text).group(1))
        if number in self.broken_items:
            raise RuntimeError("the evol endpoint broke")
        if number % 10 < tenths(request.instructions):
            return {"working_notes": "nothing to add", "evolved_instruction": text}
        return {"working_notes": "add a constraint",
                "evolved_instruction": f"{text} Also justify every step with a concrete example."}


class OptimizerScript:
    """The optimizer LM: its k-th analysis leads to ``proposals[k]`` (a method text, or an exception)."""

    def __init__(self, proposals: list[str | Exception], *, crash_at: int | None = None,
                 analysis: str | None = None) -> None:
        self.proposals = proposals
        self.crash_at = crash_at
        self.analysis = analysis
        self.analyses = 0
        self.calls = 0
        self.trajectories: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: ScriptedRequest) -> dict[str, str] | str:
        with self._lock:
            if self.crash_at is not None and self.calls + 1 >= self.crash_at:
                raise Crash()
            self.calls += 1
            if "issues" in request.outputs:
                number = self.analyses
                self.analyses += 1
                self.trajectories.append(request.inputs["trajectory"])
        if "issues" in request.outputs:
            if self.analysis is not None:
                return self.analysis
            issues = [{"case_id": "1", "category": "Unimproved complexity", "reason": "the rewrite is unchanged"}]
            return {"issues": json.dumps(issues), "feedback": f"apply proposal {number}"}
        number = int(re.search(r"proposal (\d+)", request.inputs["feedback"]).group(1))
        proposal = self.proposals[number % len(self.proposals)]
        if isinstance(proposal, Exception):
            raise proposal
        return {"improved_method": proposal}


def lms(evol: EvolScript, optimizer: OptimizerScript):
    policy = CallPolicy(max_retries=0)
    return (scripted_lm(evol, role="evol", policy=policy),
            scripted_lm(optimizer, role="optimizer", policy=policy))


def teleprompter(evol_lm, optimizer_lm, **settings) -> AutoEvolInstruct:
    options = dict(num_candidates=3, batch_size=4, dev_size=20, confirm_size=16, max_steps=1, num_threads=2, seed=0,
                   proposal_mode="rewrite", proposal_attempts=1, trajectory_answers=False, keep_unchanged=True,
                   max_demos=0)  # the paper's method-only search; demonstrations: tests/optimizers/test_demos.py
    options.update(settings)
    return AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, **options)


def compile_with(proposals, *, student: Evolver | None = None, data: list[str] | None = None,
                 evol: EvolScript | None = None, **settings):
    evol = evol or EvolScript()
    optimizer = OptimizerScript(proposals)
    evol_lm, optimizer_lm = lms(evol, optimizer)
    run_dir = settings.pop("run_dir", None)
    result = teleprompter(evol_lm, optimizer_lm, **settings).compile(
        student or Evolver(), trainset=data or items(40), run_dir=run_dir)
    return result, evol_lm, optimizer_lm, optimizer


def comparable(history: list[StepRecord]) -> list[dict]:
    """Step records without times and usage (which differ between otherwise equal runs)."""
    return [record.model_dump(exclude={"seconds", "finished_at", "usage"}) for record in history]


# ---------------------------------------------------------------------------------- selection


def test_compile_picks_the_candidate_with_the_lowest_failure_rate():
    result, *_ = compile_with([method("BALANCED"), method("CAREFUL"), method("SLOPPY")])
    assert result.method == method("CAREFUL")
    record = result.compile_history[0]
    assert record.incumbent.method == INITIAL_METHOD
    winner = record.candidates[record.winner - 1]
    assert winner.candidate.method == method("CAREFUL") and record.improved
    rates = {c.candidate.method: c.score.failure_rate for c in record.candidates}
    assert rates[method("CAREFUL")] < rates[method("BALANCED")] < record.incumbent.failure_rate
    assert record.selected.failure_rate == winner.score.failure_rate
    assert result.metadata["initial_dev_failure_rate"] == record.incumbent.failure_rate
    assert result.metadata["dev_failure_rate"] == winner.score.failure_rate < 0.2
    assert all(issue.category == "not_harder" for c in record.candidates for issue in c.issues)


def test_the_incumbent_is_kept_when_every_candidate_is_worse():
    start = Evolver(method("CAREFUL"))
    result, *_ = compile_with([method("BALANCED"), method("SLOPPY"), method("PLAIN")], student=start, max_steps=3)
    assert result.method == method("CAREFUL")
    assert len(result.compile_history) == 1  # patience 1: one step without improvement ends the loop
    record = result.compile_history[0]
    assert record.winner is None and not record.improved
    assert record.selected == record.incumbent
    assert result.metadata["stopped"] == "plateau"
    assert result.metadata["history"][0]["winner"] == "incumbent kept"


def test_ties_keep_the_incumbent():
    start = Evolver(method("BALANCED"))
    other = "A different wording of the same procedure, which fails the same items. Marker BALANCED."
    result, *_ = compile_with([other], student=start, num_candidates=1)
    record = result.compile_history[0]
    assert record.candidates[0].score.failed == record.incumbent.failed
    assert record.winner is None and result.method == method("BALANCED")


def test_compile_stops_early_on_a_plateau():
    proposals = [method("BALANCED")] * 3 + [method("SLOPPY"), method("PLAIN"), method("SLOPPY")] * 3
    result, _, optimizer_lm, optimizer = compile_with(proposals, max_steps=10, patience=2, num_threads=1)
    history = result.compile_history
    assert [record.improved for record in history] == [True, False, False]
    assert result.metadata["stopped"] == "plateau" and result.metadata["steps"] == 3
    assert optimizer.analyses == 3 * 3  # no fourth step was started
    assert result.method == method("BALANCED")


def test_compile_stops_when_no_dev_item_fails():
    result, *_ = compile_with([method("PERFECT")] * 3, max_steps=5, patience=3, num_threads=1)
    assert result.metadata["dev_failure_rate"] == 0.0
    assert result.metadata["stopped"] == "no_failures" and len(result.compile_history) == 1


# ---------------------------------------------------------------------------------- efficient evaluation


def test_racing_picks_the_same_winner_as_full_evaluation_with_fewer_calls():
    proposals = [method("SLOPPY"), method("PLAIN"), method("BALANCED"), method("CAREFUL")]
    settings = dict(num_candidates=4, dev_size=50, data=items(70))
    raced, raced_evol, *_ = compile_with(proposals, racing=True, **settings)
    full, full_evol, *_ = compile_with(proposals, racing=False, **settings)
    assert raced.method == full.method == method("CAREFUL")
    raced_record, full_record = raced.compile_history[0], full.compile_history[0]
    assert raced_record.selected.failure_rate == full_record.selected.failure_rate
    assert {c.dropped is not None for c in full_record.candidates} == {False}
    dropped = [c.candidate.method for c in raced_record.candidates if c.dropped]
    assert method("SLOPPY") in dropped and method("CAREFUL") not in dropped
    assert all(c.score.evaluated == 50 for c in full_record.candidates)
    assert raced_evol.engine.calls < full_evol.engine.calls
    assert _calls(raced_record, "evol") < _calls(full_record, "evol")


def _calls(record: StepRecord, role: str) -> int:
    return sum(usage.calls for usage in record.usage if usage.role == role)


def test_the_incumbent_and_repeated_requests_are_never_paid_twice():
    start = Evolver(method("CAREFUL"))
    proposals = [method("BALANCED"), method("BALANCED"), method("SLOPPY")]
    result, evol_lm, *_ = compile_with(proposals, student=start, racing=False, num_threads=1)
    record = result.compile_history[0]
    assert record.candidates[1].invalid and "same method as candidate 1" in record.candidates[1].invalid_reason
    incumbent = record.incumbent
    assert evol_lm.engine.calls - _calls(record, "evol") == 2 * incumbent.evaluated - incumbent.failed
    # in the step: the trajectory (4 evolutions) and one evolution per dev item for each new method;
    # the incumbent is not measured again, and every passing rewrite equals one the incumbent made,
    # so its answer comes from the cache
    assert _calls(record, "evol") == 4 + 20 + 20
    assert sum(u.cache_hits for u in record.usage if u.role == "evol") == (
        (20 - record.candidates[0].score.failed) + (20 - record.candidates[2].score.failed))


def test_optimizer_samples_candidates_at_its_temperature_with_distinct_rollouts():
    result, evol_lm, optimizer_lm, optimizer = compile_with([method("BALANCED"), method("CAREFUL"), method("SLOPPY")])
    analyses = [r for r in optimizer_lm.engine.requests if "issues" in r.outputs]
    # the three analyses have the same prompt: only distinct rollout ids keep them from one cache entry
    assert len(analyses) == 3 and len({r.user for r in analyses}) == 1
    assert {r.temperature for r in optimizer_lm.engine.requests} == {0.6}
    assert {r.temperature for r in evol_lm.engine.requests} == {0.0}
    tele = teleprompter(evol_lm, optimizer_lm, seed=3)
    assert len({rollout_id(tele.settings.seed, step, j) for step in (1, 2) for j in (1, 2, 3)}) == 6


def test_the_analysis_sees_the_trajectory_with_stages_and_verdicts():
    result, _, _, optimizer = compile_with([method("CAREFUL")], num_candidates=1, evolution_rounds=2, batch_size=6,
                                           data=items(42))
    view = optimizer.trajectories[0]
    record = result.compile_history[0]
    assert [stored.case_id for stored in record.trajectory] == ["1", "2", "3", "4", "5", "6"]
    blocks = view.split("\n\n")[1:]  # after the count of failed cases: one block per case, failed first
    assert blocks == [stored.for_analysis() for stored in sorted(record.trajectory, key=lambda case: not case.failed)]
    for stored in record.trajectory:
        assert stored.stages[0] in items(42)
        if stored.failed:
            assert len(stored.stages) == 2 and stored.verdict.startswith("failed (unchanged)")
            assert f"Case {stored.case_id}: FAILED (unchanged)" in view
        else:
            assert len(stored.stages) == 3 and stored.verdict == "passed"
            assert f"Rewrite 1:\n{stored.stages[1]}\nRewrite 2:\n{stored.stages[2]}" in view
    assert any(stored.failed for stored in record.trajectory)


def test_trajectory_answers_are_recorded_and_the_analysis_reads_those_of_failed_cases_only():
    result, _, _, optimizer = compile_with([method("CAREFUL")], num_candidates=1, trajectory_answers=True)
    passed = [case for case in result.compile_history[0].trajectory if not case.failed]
    assert passed and all(case.answer.startswith("A complete answer") for case in passed)
    assert "A complete answer" not in optimizer.trajectories[0]  # a passed case's answer explains nothing


# ---------------------------------------------------------------------------------- bad input and faults


def test_unusable_optimizer_answers_make_invalid_candidates_and_the_step_goes_on():
    proposals = ["", INITIAL_METHOD, "Be harder.", RuntimeError("optimizer down"), method("CAREFUL")]
    result, *_ = compile_with(proposals, num_candidates=5, num_threads=1)
    record = result.compile_history[0]
    reasons = [c.invalid_reason for c in record.candidates]
    assert reasons[0] == "the optimizer gave no method"
    assert reasons[1] == "the proposed method is identical to the current one"
    assert "too short" in reasons[2]
    assert "the method rewrite failed" in reasons[3] and "optimizer down" in reasons[3]
    assert reasons[4] is None and record.winner == 5 and result.method == method("CAREFUL")
    assert all(c.score is None for c in record.candidates[:4])


def test_an_unparseable_analysis_is_an_invalid_candidate():
    evol_lm, optimizer_lm = lms(EvolScript(), OptimizerScript([method("CAREFUL")], analysis="no fields at all"))
    result = teleprompter(evol_lm, optimizer_lm, num_candidates=2).compile(Evolver(), trainset=items(40))
    record = result.compile_history[0]
    assert all(c.invalid and "trajectory analysis failed" in c.invalid_reason for c in record.candidates)
    assert record.winner is None and result.method == INITIAL_METHOD


def test_dev_items_whose_lm_calls_keep_failing_are_left_out_for_every_method():
    broken = frozenset(range(0, 40, 7))
    evol = EvolScript(broken_items=broken)
    result, evol_lm, *_ = compile_with([method("PERFECT")], num_candidates=1, evol=evol, racing=False)
    record = result.compile_history[0]
    tele = teleprompter(evol_lm, evol_lm)
    dev = tele.split(items(40)).dev
    broken_dev = [index for index, item in enumerate(dev) if int(item.text.split("#")[1].split(":")[0]) in broken]
    assert broken_dev and record.excluded_items == broken_dev
    candidate = record.candidates[0]
    assert candidate.score.evaluated == record.incumbent.evaluated == len(dev) - len(broken_dev)
    assert "lm_error" not in candidate.score.by_rule and "lm_error" not in record.incumbent.by_rule
    assert record.winner == 1


def test_too_few_rows_is_a_clear_error():
    evol_lm, optimizer_lm = lms(EvolScript(), OptimizerScript([method("CAREFUL")]))
    tele = teleprompter(evol_lm, optimizer_lm, batch_size=10, dev_size=50, confirm_size=50)
    with pytest.raises(NotEnoughData, match=r"at least 110 distinct instructions .* confirmation size 50.* has 12"):
        tele.compile(Evolver(), trainset=items(12))
    with pytest.raises(NotEnoughData, match=r"dev set needs at least 50 .* has 5"):
        tele.compile(Evolver(), trainset=items(30), valset=items(5, start=100))
    with pytest.raises(NotEnoughData, match=r"at least 60 distinct training instructions .* has 5 \(25 more"):
        tele.compile(Evolver(), trainset=items(30, start=95), valset=items(50, start=70))
    assert evol_lm.engine.calls == 0 and optimizer_lm.engine.calls == 0


def test_training_pool_and_dev_set_never_overlap():
    data = items(40) + [text.upper() for text in items(10)] + ["  " + text for text in items(5)]
    evol_lm, optimizer_lm = lms(EvolScript(), OptimizerScript([method("CAREFUL")]))
    tele = teleprompter(evol_lm, optimizer_lm, batch_size=4, dev_size=20, confirm_size=10)
    pool, dev, confirm = tele.split(data)
    normalized = lambda group: {" ".join(item.text.split()).casefold() for item in group}  # noqa: E731
    assert (len(dev), len(confirm), len(pool)) == (20, 10, 10)
    assert not normalized(pool) & normalized(dev) and not normalized(confirm) & (normalized(pool) | normalized(dev))
    assert tele.split(data) == (pool, dev, confirm)
    assert teleprompter(evol_lm, optimizer_lm, seed=1).split(data).dev != dev
    train, val = items(40), items(20, start=30) + items(10, start=100)
    pool, dev, confirm = tele.split(train, val)
    assert len(confirm) == 10 and len(pool) >= 4
    assert not normalized(pool) & normalized(dev) and not normalized(confirm) & (normalized(pool) | normalized(dev))
    for step in range(1, 4):
        assert not normalized(tele.mini_batch(pool, step)) & normalized(dev)


def test_trainset_accepts_strings_examples_and_seed_items():
    tele = teleprompter(*lms(EvolScript(), OptimizerScript([method("CAREFUL")])), batch_size=2, dev_size=2,
                        confirm_size=0)
    pool, dev, _ = tele.split([
        "Task #1: a.", dspy.Example(instruction="Task #2: b.", id="e2").with_inputs("instruction"),
        autoevol.SeedItem(id="s3", instruction="Task #3: c.", row=3),
        autoevol.SeedItem(id="bad", instruction="", row=4, problem="empty"),
        "Task #4: d.",
    ])
    assert sorted(item.text for item in pool + dev) == ["Task #1: a.", "Task #2: b.", "Task #3: c.", "Task #4: d."]
    assert {"e2", "s3"} <= {item.id for item in pool + dev}


# ---------------------------------------------------------------------------------- history, resume


def test_every_step_is_checkpointed_with_its_candidates_rates_and_usage(tmp_path):
    run_dir = tmp_path / "run"
    proposals = [method("BALANCED"), method("CAREFUL"), method("SLOPPY")] * 2
    started, began = time.monotonic(), datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    result, *_ = compile_with(proposals, max_steps=2, patience=2, num_threads=1, run_dir=run_dir)
    elapsed, ended = time.monotonic() - started, datetime.datetime.now(datetime.timezone.utc)
    files = sorted(path.name for path in (run_dir / "steps").iterdir())
    assert files == ["step-001.json", "step-002.json"]
    assert (run_dir / "run.json").exists() and (run_dir / "calls.sqlite").exists()
    stored = json.loads((run_dir / "steps" / "step-001.json").read_text())
    assert stored["incumbent"]["method"] == INITIAL_METHOD
    assert stored["winner"] == 2 and stored["selected"]["method"] == method("CAREFUL")
    candidate = stored["candidates"][0]
    assert {"method", "feedback", "issues", "invalid", "score", "dropped"} <= set(candidate)
    assert candidate["score"]["failed"] <= candidate["score"]["evaluated"]
    assert candidate["issues"][0]["category"] == "not_harder"
    assert {u["role"] for u in stored["usage"]} == {"evol", "optimizer"}
    assert all(u["calls"] + u["cache_hits"] > 0 and u["input_tokens"] > 0 for u in stored["usage"])
    steps = [json.loads(path.read_text()) for path in sorted((run_dir / "steps").iterdir())]
    assert all(0 < step["seconds"] for step in steps)  # each step's own duration, within the compile's
    assert sum(step["seconds"] for step in steps) <= elapsed
    assert began <= datetime.datetime.fromisoformat(stored["finished_at"]) <= ended
    assert comparable(result.compile_history) == comparable(
        [StepRecord.model_validate_json(p.read_text()) for p in sorted((run_dir / "steps").iterdir())])


@pytest.mark.parametrize("crash", ["evaluation", "candidates"])
def test_resume_after_a_crash_repeats_no_completed_call(tmp_path, crash):
    proposals = [method("BALANCED"), method("SLOPPY"), method("PLAIN"),
                 method("CAREFUL"), method("SLOPPY"), method("BALANCED")]
    settings = dict(max_steps=3, patience=3, num_threads=1, confirm_size=0)  # the crash points count step calls

    reference_evol, reference_optimizer = EvolScript(), OptimizerScript(proposals)
    evol_lm, optimizer_lm = lms(reference_evol, reference_optimizer)
    reference = teleprompter(evol_lm, optimizer_lm, **settings).compile(
        Evolver(), trainset=items(40), run_dir=tmp_path / "reference")

    # the first run dies in step 2: in its dev evaluation, or while writing its first candidate
    step2, step3 = (_calls(record, "evol") for record in reference.compile_history[1:])
    before_step2_evaluation = reference_evol.calls - step3 - step2 + 4
    first_evol = EvolScript(crash_at=before_step2_evaluation + 5 if crash == "evaluation" else None)
    optimizer = OptimizerScript(proposals, crash_at=8 if crash == "candidates" else None)
    evol_lm, optimizer_lm = lms(first_evol, optimizer)
    with pytest.raises(Crash):
        teleprompter(evol_lm, optimizer_lm, **settings).compile(Evolver(), trainset=items(40), run_dir=tmp_path / "run")
    assert len(list((tmp_path / "run" / "steps").iterdir())) == 1
    # every call from the crash on raises (a worker may start one more before the pool stops)
    first_evol_completed = first_evol.crash_at - 1 if crash == "evaluation" else first_evol.calls
    first_optimizer_completed = optimizer.calls

    optimizer.crash_at = None  # same sampler state: new requests get new samples, as a real LM would
    second_evol = EvolScript()
    evol_lm, optimizer_lm = lms(second_evol, optimizer)
    resumed = teleprompter(evol_lm, optimizer_lm, **settings).compile(
        Evolver(), trainset=items(40), run_dir=tmp_path / "run")

    assert resumed.method == reference.method
    assert comparable(resumed.compile_history) == comparable(reference.compile_history)
    assert first_evol_completed + second_evol.calls == reference_evol.calls
    assert optimizer.calls == reference_optimizer.calls
    assert first_optimizer_completed < reference_optimizer.calls


def test_a_finished_run_directory_replays_without_calls_and_reports_steps(tmp_path):
    proposals = [method("BALANCED"), method("CAREFUL"), method("SLOPPY")]
    first, *_ = compile_with(proposals, max_steps=2, num_threads=1, run_dir=tmp_path / "run")
    seen = []
    evol = EvolScript()
    evol_lm, optimizer_lm = lms(evol, OptimizerScript(proposals))
    again = teleprompter(evol_lm, optimizer_lm, max_steps=2, num_threads=1,
                         step_callback=lambda step, record: seen.append(step)).compile(
        Evolver(), trainset=items(40), run_dir=tmp_path / "run")
    assert again.method == first.method and seen == [record.step for record in first.compile_history]
    assert evol_lm.engine.calls == 0 and optimizer_lm.engine.calls == 0
    recorded = RunDirectory.read(tmp_path / "run")  # read as recorded, as benchmarks/proposals.py does
    assert [record.selected.method for record in recorded.steps()] == [record.selected.method for record in first.compile_history]
    assert recorded.header.settings["batch_size"] == first.metadata["hyperparameters"]["batch_size"]
    with pytest.raises(RunDirError, match="no run.json"):
        RunDirectory.read(tmp_path)


def test_a_run_measured_under_another_version_of_a_rule_is_refused(tmp_path):
    def detector(version: int) -> FailureDetector:
        return FailureDetector(extra=[FunctionRule("no_lisbon", "names Lisbon", lambda o, e, r: None, "evolution",
                                                   version=version)])

    run = tmp_path / "run"
    compile_with([method("CAREFUL")], run_dir=run, confirm_size=10, detector=detector(1))
    snapshot = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    evol_lm, optimizer_lm = lms(EvolScript(), OptimizerScript([method("CAREFUL")]))
    with pytest.raises(RunDirError, match=r"detector_rules \['no_lisbon'\] \(now \['no_lisbon@2'\]\)"):
        teleprompter(evol_lm, optimizer_lm, confirm_size=10, detector=detector(2)).compile(
            Evolver(), trainset=items(40), run_dir=run)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == snapshot
    assert evol_lm.engine.calls == 0
    again = teleprompter(evol_lm, optimizer_lm, confirm_size=10, detector=detector(1)).compile(
        Evolver(), trainset=items(40), run_dir=run)  # the same versions resume
    assert "no_lisbon" in again.metadata["detector_rules"] and evol_lm.engine.calls == 0


def test_a_foreign_or_mismatched_run_directory_is_refused_and_left_alone(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    evol_lm, optimizer_lm = lms(EvolScript(), OptimizerScript([method("CAREFUL")]))
    with pytest.raises(RunDirError, match="not a compile run directory"):
        teleprompter(evol_lm, optimizer_lm).compile(Evolver(), trainset=items(40), run_dir=foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    run = tmp_path / "run"
    compile_with([method("CAREFUL")], run_dir=run, confirm_size=10)
    snapshot = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(RunDirError, match=r"batch_size 4 \(now 5\)"):
        teleprompter(evol_lm, optimizer_lm, batch_size=5, confirm_size=10).compile(Evolver(), trainset=items(40),
                                                                                   run_dir=run)
    with pytest.raises(RunDirError, match=r"confirm_size 10 \(now 16\)"):
        teleprompter(evol_lm, optimizer_lm).compile(Evolver(), trainset=items(40), run_dir=run)
    with pytest.raises(RunDirError, match="other settings or data"):
        teleprompter(evol_lm, optimizer_lm, confirm_size=10).compile(Evolver(), trainset=items(41), run_dir=run)
    (run / "steps" / "step-001.json").write_text("{broken")
    snapshot[run / "steps" / "step-001.json"] = b"{broken"
    with pytest.raises(RunDirError, match="corrupt step record"):
        teleprompter(evol_lm, optimizer_lm, confirm_size=10).compile(Evolver(), trainset=items(40), run_dir=run)
    (run / "run.json").write_text(json.dumps({"format": "something.else"}))
    snapshot[run / "run.json"] = (run / "run.json").read_bytes()
    with pytest.raises(RunDirError, match="not an autoevol compile run"):
        teleprompter(evol_lm, optimizer_lm, confirm_size=10).compile(Evolver(), trainset=items(40), run_dir=run)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == snapshot
    assert evol_lm.engine.calls == 0


def test_a_step_callback_can_stop_the_loop():
    proposals = [method("BALANCED"), method("CAREFUL"), method("SLOPPY")] * 3
    seen: list[tuple[int, float]] = []

    def stop_after_first(step: int, record: StepRecord) -> bool:
        seen.append((step, record.selected.failure_rate))
        return False

    result, *_ = compile_with(proposals, max_steps=5, patience=5, step_callback=stop_after_first)
    assert len(seen) == 1 and result.metadata["stopped"] == "callback" and len(result.compile_history) == 1

    def prune(step: int, record: StepRecord) -> None:
        if step == 2:
            raise StopCompile("pruned")

    result, *_ = compile_with(proposals, max_steps=5, patience=5, step_callback=prune, num_threads=1)
    assert len(result.compile_history) == 2 and result.metadata["stopped"] == "callback"


def test_same_seed_same_result():
    proposals = [method("BALANCED"), method("CAREFUL"), method("SLOPPY")]
    first, *_ = compile_with(proposals, max_steps=2, num_threads=1)
    second, *_ = compile_with(proposals, max_steps=2, num_threads=1)
    assert comparable(first.compile_history) == comparable(second.compile_history)


# ---------------------------------------------------------------------------------- artifacts


def test_save_load_and_apply_to_another_dataset(tmp_path):
    result, evol_lm, *_ = compile_with([method("BALANCED"), method("CAREFUL"), method("SLOPPY")], num_threads=1)
    path = result.save(tmp_path / "evolver.json")
    text = path.read_text()
    loaded = autoevol.load(path)
    assert loaded.method == result.method == method("CAREFUL")
    meta = loaded.metadata
    assert meta["autoevol_version"] == autoevol.__version__ and meta["optimizer"] == "AutoEvolInstruct"
    assert meta["models"] == {"evol": "openai/scripted", "optimizer": "openai/scripted"}
    assert meta["hyperparameters"]["num_candidates"] == 3 and meta["hyperparameters"]["temperature"] == 0.6
    assert meta["dataset"]["size"] == 40 and meta["dataset"]["dev_size"] == 20 and meta["dataset"]["fingerprint"]
    assert meta["initial_dev_failure_rate"] > meta["dev_failure_rate"]
    assert meta["history"][0]["winner"] == 2 and meta["compiled_at"]
    assert "api_key" not in text and "sk-" not in text

    other = items(20, start=500)
    with dspy.context(lm=evol_lm):
        applied = failure_rate(loaded, other)
    assert applied.failed == 2 and set(applied.by_rule) == {"unchanged"}  # items #500 and #510


def test_compile_can_warm_start_from_a_compiled_evolver(tmp_path):
    first, *_ = compile_with([method("BALANCED")], num_candidates=1)
    path = first.save(tmp_path / "first.json")
    second, *_ = compile_with([method("CAREFUL")], num_candidates=1, student=Evolver().load(path),
                              data=items(60, start=200), confirm_size=30)
    assert second.method == method("CAREFUL")
    record = second.compile_history[0]
    assert record.incumbent.method == method("BALANCED")
    started = second.metadata["started_from"]
    assert started["method_fingerprint"] == first.fingerprint
    assert started["dataset"]["fingerprint"] == first.metadata["dataset"]["fingerprint"]
    assert second.metadata["dataset"]["fingerprint"] != first.metadata["dataset"]["fingerprint"]


def test_constructor_checks_its_settings():
    evol_lm, optimizer_lm = lms(EvolScript(), OptimizerScript([]))
    for bad in (dict(num_candidates=0), dict(batch_size=0), dict(top_p=0), dict(patience=0), dict(racing_alpha=1)):
        with pytest.raises(ValueError):
            AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, **bad)
    tele = AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm)
    assert (tele.settings.batch_size, tele.settings.dev_size, tele.settings.max_steps, tele.settings.num_candidates) == (10, 50, 10, 5)
    assert (tele.settings.temperature, tele.settings.top_p, tele.settings.evol_temperature,
            tele.settings.evolution_rounds) == (0.6, 0.95, 0.0, 1)


def test_max_steps_zero_measures_the_start_only():
    result, evol_lm, optimizer_lm, _ = compile_with([method("CAREFUL")], max_steps=0)
    assert result.method == INITIAL_METHOD and result.compile_history == []
    assert result.metadata["initial_dev_failure_rate"] == result.metadata["dev_failure_rate"] > 0
    assert optimizer_lm.engine.calls == 0


def test_detector_settings_are_used(tmp_path):
    detector = FailureDetector(disable=["unchanged"])
    result, *_ = compile_with([method("CAREFUL")], num_candidates=1, detector=detector)
    assert result.metadata["initial_dev_failure_rate"] == 0.0  # unchanged rewrites no longer fail
    assert "unchanged" not in result.metadata["detector_rules"]


def test_a_resumed_compile_leaves_out_the_dev_items_its_records_left_out(tmp_path):
    """The denominators of a resumed run match the recorded incumbent's, even when the LM now answers."""
    proposals = [method("BALANCED"), method("SLOPPY"), method("PLAIN"), method("CAREFUL"), method("SLOPPY")]
    broken = EvolScript(broken_items=frozenset(range(0, 40, 7)))
    first, *_ = compile_with(proposals, evol=broken, run_dir=tmp_path / "run", racing=False, max_steps=1, patience=2)
    excluded = first.compile_history[0].excluded_items
    assert excluded
    resumed, *_ = compile_with(proposals, run_dir=tmp_path / "run", racing=False, max_steps=2, patience=2)
    second = resumed.compile_history[1]
    assert second.excluded_items == excluded
    assert second.incumbent.evaluated == 20 - len(excluded)
    assert all(c.score.evaluated == 20 - len(excluded) for c in second.candidates if c.score is not None)
