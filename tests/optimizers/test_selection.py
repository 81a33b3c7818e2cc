"""Selection that the data supports: worlds of known truth, the paired test, racing, the confirmation split."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading

import pytest

from autoevol.baselines import starting_methods
from autoevol.lm import CallPolicy
from autoevol.metrics.failure import FailureDetector
from autoevol.optimizers import AutoEvolInstruct, NoImprovement
from autoevol.optimizers.auto_evol.demos import measured_rates
from autoevol.optimizers.auto_evol.found_nothing import CompileFoundNothing
from autoevol.optimizers.auto_evol.racing import race, unacceptable_reason
from autoevol.optimizers.auto_evol.records import CandidateRecord, MethodScore, StepRecord
from autoevol.optimizers.auto_evol.selection import acceptance_level, compare
from autoevol.programs.demonstration import Candidate, Demo
from autoevol.programs.evolver import Evolver
from autoevol.records import JUDGE_ABSTAINED
from autoevol.testing.scripted import ScriptedRequest, scripted_lm
from autoevol.testing.selection_world import MARK, START, SelectionWorld, instructions

WORLD_SETTINGS = dict(num_candidates=3, batch_size=4, dev_size=50, confirm_size=50, max_steps=2, patience=2,
                      trajectory_answers=False, num_threads=2)


def world_compile(world: SelectionWorld, seed: int, **settings) -> tuple[bool, Evolver]:
    """(claimed an improvement, the evolver returned or carried by the error)."""
    evol_lm, optimizer_lm = world.lms()
    options = {**WORLD_SETTINGS, **settings}
    teleprompter = AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, seed=seed, **options)
    data = instructions(options["dev_size"] + options["confirm_size"] + 20)
    try:
        return True, teleprompter.compile(Evolver(START), trainset=data)
    except CompileFoundNothing as nothing:
        return False, nothing.evolver


# ---------------------------------------------------------------------------------- the paired test


def test_the_paired_comparison_counts_discordant_items_and_tests_them_one_sided():
    challenger = [False, False, False, True, True, False]
    reference = [True, True, True, True, False, False]
    comparison = compare(challenger, reference, level=0.5)
    assert (comparison.reference_only, comparison.challenger_only, comparison.both, comparison.items) == (3, 1, 1, 6)
    assert comparison.p_value == pytest.approx(5 / 16)  # P(X >= 3), X ~ Binomial(4, 1/2)
    assert comparison.supported
    assert not compare(challenger, reference, level=0.3).supported
    assert not compare(reference, challenger, level=0.99).supported  # more losses than wins: never
    with pytest.raises(ValueError):
        compare([True], [True, False], level=0.1)


def test_the_acceptance_level_shrinks_with_every_candidate_tried():
    assert acceptance_level(0.5, 1) == 0.5 and acceptance_level(0.5, 5) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        acceptance_level(0.5, 0)


# ---------------------------------------------------------------------------------- worlds of known truth


@pytest.mark.parametrize("flip", [1.0, 0.45])
def test_a_null_world_yields_no_claimed_improvement(flip):
    """Every proposal fails as often as the start, on other items: gains on dev are noise."""
    claims = [world_compile(SelectionWorld(seed=seed, flip=flip), seed)[0] for seed in range(6)]
    assert sum(claims) <= 1


def test_the_null_world_catches_selection_by_the_fewest_failures(monkeypatch):
    """The old rule (any candidate with fewer dev failures wins, no confirmation) reports gains in
    the same world: the previous test can fail."""
    monkeypatch.setattr("autoevol.optimizers.auto_evol.loop.acceptance_level", lambda alpha, tried: 1.0)
    claims = [world_compile(SelectionWorld(seed=seed), seed, confirm_size=0)[0] for seed in range(6)]
    assert sum(claims) >= 4


def test_one_truly_better_candidate_in_three_is_found_and_confirmed():
    results = [world_compile(SelectionWorld(seed=seed, better_every=3, flip=0.45), seed) for seed in range(5)]
    found = [claimed and MARK in evolver.method for claimed, evolver in results]
    assert sum(found) >= 4
    for claimed, evolver in results:
        if claimed:
            assert evolver.metadata["confirmed"] is True
            confirmation = evolver.metadata["confirmation"]
            assert confirmation["items"] == 50 and confirmation["reference_only"] > confirmation["challenger_only"]
            assert confirmation["p_value"] <= confirmation["level"]


def test_each_step_records_its_paired_counts_and_p_value():
    claimed, evolver = world_compile(SelectionWorld(seed=0, better_every=3, flip=0.45), 0)
    assert claimed
    records = evolver.compile_history
    assert records[0].tried == 3 and records[1].tried == 6
    for record in records:
        level = 0.5 / record.tried
        for candidate in record.candidates:
            assert candidate.comparison is not None and candidate.comparison.level == pytest.approx(level)
            if candidate.dropped is None:
                assert candidate.comparison.items == record.incumbent.evaluated
        if record.winner is not None:
            winner = record.candidates[record.winner - 1]
            assert winner.comparison.supported and record.summary()["paired"] == winner.comparison.model_dump()


class Recording:
    """Wraps a world's evol script and records every instruction it was asked to evolve, in order."""

    def __init__(self, world: SelectionWorld) -> None:
        self.world, self.evolved = world, []
        self._lock = threading.Lock()

    def __call__(self, request: ScriptedRequest):
        if "evolved_instruction" in request.outputs:
            with self._lock:
                self.evolved.append(request.inputs.get("instruction", ""))
        return self.world.evol(request)


def test_the_confirmation_split_is_measured_only_after_the_last_step():
    world = SelectionWorld(seed=0, better_every=3, flip=0.45)
    recording = Recording(world)
    evol_lm = scripted_lm(recording, role="evol", cache=False)
    optimizer_lm = scripted_lm(world.optimizer, role="optimizer", cache=False)
    seen_by_steps: list[int] = []
    teleprompter = AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, seed=0, **WORLD_SETTINGS,
                                    step_callback=lambda step, record: seen_by_steps.append(len(recording.evolved)))
    data = instructions(120)
    split = teleprompter.split(data)
    compiled = teleprompter.compile(Evolver(START), trainset=data)
    confirm = {item.text for item in split.confirm}
    during_steps = recording.evolved[:seen_by_steps[-1]]
    assert not confirm & set(during_steps)
    assert not confirm & {stage for record in compiled.compile_history for case in record.trajectory
                          for stage in case.stages}
    after = recording.evolved[seen_by_steps[-1]:]
    assert set(after) == confirm and len(after) == 2 * len(confirm)  # the start and the result, once each


def test_a_dev_gain_that_does_not_hold_on_the_confirmation_split_is_no_result(caplog):
    # the start fails the dev items less often by chance than the confirmation items: a null
    # world in which the dev selection is made to accept noise (a very loose level)
    for seed in range(10):
        world = SelectionWorld(seed=seed)
        evol_lm, optimizer_lm = world.lms()
        teleprompter = AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, seed=seed,
                                        **{**WORLD_SETTINGS, "max_steps": 1}, selection_alpha=0.999)
        caplog.clear()
        try:
            with caplog.at_level(logging.INFO, logger="autoevol.optimizers.auto_evol"):
                teleprompter.compile(Evolver(START), trainset=instructions(120))
        except NoImprovement as error:
            if error.evolver.compile_history[0].winner is not None:  # accepted on dev, refused by confirmation
                assert "did not hold on 50 confirmation items" in str(error)
                finish = next(r.getMessage() for r in caplog.records if "compile finished" in r.getMessage())
                assert finish.endswith("the confirmation on 50 items does not support it, so the start is kept")
                assert error.evolver.method == START  # the unchanged start, not the dev winner
                assert error.evolver.metadata["confirmed"] is False
                return
    pytest.fail("no seed accepted a noise candidate on dev; the world cannot show the confirmation")


# ---------------------------------------------------------------------------------- racing with the same test


def test_racing_drops_a_candidate_once_it_can_no_longer_be_accepted():
    reference = [True] * 10 + [False] * 40  # the incumbent fails the first 10 of 50 items
    hopeless = [False] * 5 + [True] * 5  # after 10 items: won 5, lost 0, but the incumbent fails nothing later
    assert unacceptable_reason(hopeless, reference, level=0.01) is not None  # 5 wins alone: p = 1/32 > 0.01
    assert unacceptable_reason(hopeless, reference, level=0.05) is None  # 1/32 <= 0.05: still possible
    flags = {"incumbent": reference, "hopeless": hopeless + [False] * 40, "good": [False] * 50}

    def measure(keys, start, stop):
        return {key: flags[key][start:stop] for key in keys}

    result = race(list(flags), measure, 50, looks=(0.2,), alpha=1e-9, protected=["incumbent"],
                  reference="incumbent", level=0.01)
    assert "cannot be accepted" in result.dropped["hopeless"] and "good" not in result.dropped
    assert result.measured("hopeless") == 10 and result.measured("good") == 50


# ---------------------------------------------------------------------------------- records and the bugs found


def test_a_compile_that_reaches_its_steps_says_so():
    claimed, evolver = world_compile(SelectionWorld(seed=1), 1, max_steps=1, patience=1)
    assert evolver.metadata["stopped"] == "max_steps"


def test_demonstration_ranking_ignores_rates_of_raced_out_candidates():
    demo = Demo(instruction="a", working_notes="", evolved_instruction="b", origin="observed", item_id="x", step=1)
    carried = Candidate(method="m", demos=(demo,))
    score = MethodScore(method="m", failure_rate=0.5, failed=10, evaluated=20, demos=(demo,))
    partial = MethodScore(method="m", failure_rate=0.0, failed=0, evaluated=5, demos=(demo,))
    record = StepRecord(step=1, incumbent=score, trajectory=[], winner=None, selected=score,
                        candidates=[CandidateRecord(index=1, kind="demos", candidate=carried, score=score),
                                    CandidateRecord(index=2, kind="demos", candidate=carried, score=partial,
                                                    dropped="worse than the leader")])
    assert measured_rates([record]) == {demo.key: [0.5]}


def test_judge_abstentions_are_left_out_of_every_methods_rate():
    """A judge reply that does not parse is no verdict: the item leaves the paired comparison."""
    world = SelectionWorld(seed=0, better_every=3, flip=0.45)
    evol_lm, optimizer_lm = world.lms()
    abstain = {text for text in instructions(120) if "method 3" in text or "method 7" in text}

    def judge(request: ScriptedRequest):
        original = request.inputs.get("original_instruction", "")
        if original in abstain:
            return "I would rather not say."
        return {"verdict": "harder", "reason": "It adds a requirement."}

    detector = FailureDetector(judge_lm=scripted_lm(judge, role="judge", cache=False))
    teleprompter = AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, detector=detector, seed=0,
                                    **{**WORLD_SETTINGS, "max_steps": 1}, keep_unchanged=True)
    dev = teleprompter.split(instructions(120)).dev
    compiled = teleprompter.compile(Evolver(START), trainset=instructions(120))
    record = compiled.compile_history[0]
    abstaining_dev = {index for index, item in enumerate(dev) if item.text in abstain}
    # the judge reads only rewrites that passed the cheap rules: an item every method left unchanged
    # is a failure without it
    assert record.excluded_items and set(record.excluded_items) <= abstaining_dev
    assert JUDGE_ABSTAINED not in record.selected.by_rule
    assert record.selected.evaluated == len(dev) - len(record.excluded_items)
    assert all(c.score.evaluated == len(dev) - len(record.excluded_items) for c in record.candidates
               if c.score is not None and c.dropped is None)


def test_show_prints_the_paired_counts_of_each_step_and_the_confirmation(tmp_path):
    claimed, evolver = world_compile(SelectionWorld(seed=0, better_every=3, flip=0.45), 0)
    assert claimed
    path = evolver.save(tmp_path / "evolver.json")
    shown = subprocess.run([shutil.which("autoevol") or "autoevol", "show", str(path)], capture_output=True,
                           text=True, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "220"}, timeout=300)
    assert shown.returncode == 0, shown.stderr
    paired = evolver.compile_history[0].deciding_comparison()
    assert f"+{paired.reference_only}/-{paired.challenger_only} p={paired.p_value:.3g}" in shown.stdout
    confirmation = evolver.metadata["confirmation"]
    assert f"confirmation on 50 held-out items: start failed {confirmation['reference_only'] + confirmation['both']}" \
        in shown.stdout and "the gain holds" in shown.stdout


def test_the_report_of_a_run_shows_the_paired_tests_and_the_confirmation(tmp_path):
    world = SelectionWorld(seed=0, better_every=3, flip=0.45)
    evol_lm, optimizer_lm = world.lms()
    AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, seed=0, **WORLD_SETTINGS).compile(
        Evolver(START), trainset=instructions(120), run_dir=tmp_path / "run")
    assert (tmp_path / "run" / "confirmation.json").is_file()
    result = subprocess.run([shutil.which("autoevol") or "autoevol", "report", str(tmp_path / "run"), "--out",
                             str(tmp_path / "run.html")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "run.html").read_text()
    assert "candidate won: " in page and "only the incumbent failed" in page
    assert "Confirmation on 50 items no selection step measured" in page and "the gain holds" in page


def test_a_resumed_compile_reuses_its_recorded_confirmation_without_the_lm_or_the_call_cache(tmp_path, caplog):
    """A finished run continued on another machine (no call cache there) must not measure again."""
    world = SelectionWorld(seed=0, better_every=3, flip=0.45)
    evol_lm, optimizer_lm = world.lms()
    run = tmp_path / "run"
    first = AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, seed=0, **WORLD_SETTINGS).compile(
        Evolver(START), trainset=instructions(120), run_dir=run)
    recorded = json.loads((run / "confirmation.json").read_text())
    assert recorded["result_fingerprint"] == first.fingerprint and recorded["supported"] is True
    for cache in run.glob("calls.sqlite*"):
        cache.unlink()

    def unreachable(request: ScriptedRequest):
        raise AssertionError("the resumed compile called the LM")

    fail_at_once = CallPolicy(max_retries=0)
    with caplog.at_level(logging.INFO, logger="autoevol.optimizers.auto_evol"):
        again = AutoEvolInstruct(
            optimizer_lm=scripted_lm(unreachable, role="optimizer", cache=False, policy=fail_at_once),
            evol_lm=scripted_lm(unreachable, role="evol", cache=False, policy=fail_at_once), seed=0,
            **WORLD_SETTINGS).compile(Evolver(START), trainset=instructions(120), run_dir=run)
    assert again.method == first.method
    # the finish line of the resumed run states the recorded verdict, not just the dev gain
    finish = [r.getMessage() for r in caplog.records if "compile finished" in r.getMessage()]
    assert finish and finish[-1].endswith("the confirmation on 50 items supports it")
    assert again.metadata["confirmation"] == first.metadata["confirmation"]


# ---------------------------------------------------------------------------------- the starting-method race


class StartWorld(SelectionWorld):
    """Only the 'deepen' operation is truly better (30% against 50%); edits change nothing."""

    def failure_rate(self, method: str) -> float:
        return 0.3 if "widen or deepen" in method else 0.5


def test_the_start_race_picks_a_truly_better_starting_method_and_records_it():
    world = StartWorld(seed=2, flip=0.45)
    evol_lm, optimizer_lm = world.lms()
    teleprompter = AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, seed=2,
                                    **{**WORLD_SETTINGS, "max_steps": 1}, starts=["weak", "deepen", "concretize"])
    compiled = teleprompter.compile(Evolver(START), trainset=instructions(120))
    assert "widen or deepen" in compiled.method and compiled.metadata["confirmed"] is True
    assert compiled.metadata["start_chosen"] == "starting method: deepen"
    race = compiled.metadata["start_race"]
    assert [entry["method"] for entry in race] == [f"starting method: {name}" for name in ("weak", "deepen",
                                                                                          "concretize")]
    assert compiled.compile_history[0].incumbent.method == compiled.method  # step 1 starts from the winner
    assert compiled.compile_history[0].tried == 3 + compiled.compile_history[0].valid_candidates
    assert compiled.metadata["hyperparameters"]["starts"] == ["weak", "deepen", "concretize"]


def test_the_start_race_keeps_the_student_when_no_start_is_truly_better():
    claims = [world_compile(SelectionWorld(seed=seed), seed, max_steps=0, starts=list(starting_methods()))[0]
              for seed in range(4)]
    assert sum(claims) <= 1


def test_an_unknown_starting_method_is_refused():
    evol_lm, optimizer_lm = SelectionWorld().lms()
    with pytest.raises(ValueError, match="unknown starting method.*choose from weak"):
        AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, starts=["sideways"])


def test_show_prints_the_start_race_and_the_cli_refuses_an_unknown_start(tmp_path):
    world = StartWorld(seed=2, flip=0.45)
    evol_lm, optimizer_lm = world.lms()
    compiled = AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, seed=2, **{**WORLD_SETTINGS, "max_steps": 1},
                                starts=["weak", "deepen"]).compile(Evolver(START), trainset=instructions(120))
    path = compiled.save(tmp_path / "evolver.json")
    autoevol = shutil.which("autoevol") or "autoevol"
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "220"}
    shown = subprocess.run([autoevol, "show", str(path)], capture_output=True, text=True, env=env, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert "starting methods raced against the start" in shown.stdout and "step 1 started from: deepen" in shown.stdout
    data = tmp_path / "seed.jsonl"
    data.write_text("".join(f'{{"instruction": "{text}"}}\n' for text in instructions(10)))
    refused = subprocess.run([autoevol, "compile", str(data), "--out", str(tmp_path / "e.json"), "--start", "sideways",
                              "--evol-lm", "openai/nowhere", "--api-base", "http://127.0.0.1:9/v1"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "--start 'sideways' is not a starting method" in refused.stderr and not (tmp_path / "e.json").exists()
