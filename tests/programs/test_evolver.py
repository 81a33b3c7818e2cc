"""Evolver: method, copies, trajectories, save and load."""

from __future__ import annotations

import json

import dspy
import pytest

from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.rate import ItemOutcome
from autoevol.programs.demonstration import Candidate, Demo
from autoevol.programs.evolver import FORMAT_VERSION, Evolver, EvolverFileError
from autoevol.records import Verdict
from autoevol.signatures.evolve import INITIAL_METHOD, WEAK_METHOD
from autoevol.testing.scripted import scripted_lm


def appender(request):
    """Appends the first word of the method, so tests can see which method evolved the text."""
    marker = request.instructions.split()[0]
    return {"working_notes": "planned", "evolved_instruction": f"{request.inputs['instruction']} +{marker}"}


def test_default_method_is_e0_and_with_method_changes_only_the_method():
    evolver = Evolver(metadata={"domain": "math"})
    assert evolver.method == INITIAL_METHOD
    weak = evolver.with_method(WEAK_METHOD)
    assert weak.method == WEAK_METHOD and evolver.method == INITIAL_METHOD
    assert weak.metadata == {"domain": "math"}
    assert weak.fingerprint != evolver.fingerprint
    assert weak.candidate == Candidate(method=WEAK_METHOD)


def test_empty_method_is_refused():
    with pytest.raises(ValueError):
        Evolver("   ")


def test_forward_sends_the_method_as_instructions_and_returns_both_fields():
    lm = scripted_lm(appender)
    with dspy.context(lm=lm):
        prediction = Evolver("Deepen the question.")(instruction="Add 2 and 3.")
    assert prediction.evolved_instruction == "Add 2 and 3. +Deepen"
    assert prediction.working_notes == "planned"
    assert "Deepen the question." in lm.engine.requests[0].system


def test_trajectory_evolves_each_stage_from_the_previous_one():
    with dspy.context(lm=scripted_lm(appender)):
        trajectory = Evolver("Widen it.").trajectory("Q", rounds=3)
    assert trajectory.stages == ["Q", "Q +Widen", "Q +Widen +Widen", "Q +Widen +Widen +Widen"]
    assert trajectory.notes == ["planned"] * 3
    assert not trajectory.verdict.failed and trajectory.answer is None


def test_a_stage_the_detector_rejects_ends_the_trajectory():
    def stuck_after_one(request):
        text = request.inputs["instruction"]
        return {"working_notes": "n", "evolved_instruction": text if "+" in text else f"{text} +more"}

    with dspy.context(lm=scripted_lm(stuck_after_one)):
        checked = Evolver("Widen it.").trajectory("Add 2 and 3.", rounds=3, detector=FailureDetector())
        unchecked = Evolver("Widen it.").trajectory("Add 2 and 3.", rounds=3)
    assert checked.stages == ["Add 2 and 3.", "Add 2 and 3. +more", "Add 2 and 3. +more"]
    assert checked.verdict.failed and checked.verdict.rule == "unchanged"
    assert len(unchecked.stages) == 4 and not unchecked.verdict.failed


def test_an_unparseable_stage_ends_the_trajectory_with_its_verdict():
    def garbled_second(request):
        text = request.inputs["instruction"]
        return "no fields here" if "+" in text else {"working_notes": "n", "evolved_instruction": f"{text} +x"}

    with dspy.context(lm=scripted_lm(garbled_second)):
        trajectory = Evolver("Widen it.").trajectory("Q", rounds=3)
    assert trajectory.stages == ["Q", "Q +x"] and trajectory.notes == ["n"]
    assert trajectory.verdict.failed and trajectory.verdict.rule == "unparseable"


def test_evaluate_last_replaces_the_last_round_and_gives_its_answer():
    seen: list[str] = []

    def evaluate_last(instruction):
        seen.append(instruction)
        return ItemOutcome(original=instruction, evolved=f"{instruction} +last", notes="judged", answer="42",
                           verdict=Verdict.failure("sorry", "apologised"))

    with dspy.context(lm=scripted_lm(appender)):
        trajectory = Evolver("Widen it.").trajectory("Q", rounds=2, evaluate_last=evaluate_last)
    assert seen == ["Q +Widen"]
    assert trajectory.stages == ["Q", "Q +Widen", "Q +Widen +last"] and trajectory.notes == ["planned", "judged"]
    assert trajectory.answer == "42" and trajectory.verdict.rule == "sorry"


def test_save_and_load_round_trip(tmp_path):
    path = Evolver("Custom method.", metadata={"dev_failure_rate": 0.2}).save(tmp_path / "e.json")
    loaded = Evolver().load(path)
    assert loaded.method == "Custom method." and loaded.metadata == {"dev_failure_rate": 0.2}
    document = json.loads(path.read_text())
    assert document["format_version"] == FORMAT_VERSION and document["method_fingerprint"] == loaded.fingerprint


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such evolver file"),
        ("{not json", "invalid JSON"),
        (json.dumps({"hello": 1}), "not an evolver file"),
        (json.dumps({"format": "autoevol.evolver", "format_version": 999, "method": "m"}), "version 999"),
        (json.dumps({"format": "autoevol.evolver", "format_version": FORMAT_VERSION}), "no method"),
    ],
)
def test_bad_evolver_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "evolver.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EvolverFileError, match=message):
        Evolver().load(path)
    if content is not None:
        assert path.read_text() == content


# ---------------------------------------------------------------------------------- demonstrations

GOOD = Demo(instruction="Tom has 3 apples and buys 2. How many now?", working_notes="add a second purchase",
            evolved_instruction="Tom has 3 apples, buys 2, then buys twice as many. How many now?",
            origin="observed", item_id="train-4", step=1)


def test_demonstrations_are_the_predictors_demos_and_reach_the_prompt():
    lm = scripted_lm(appender)
    evolver = Evolver("Deepen the question.", demos=[GOOD])
    assert isinstance(evolver.evolve.demos[0], dspy.Example) and evolver.demos == [GOOD]
    with dspy.context(lm=lm):
        evolver(instruction="Add 2 and 3.")
    request = lm.engine.requests[0]
    assert any(GOOD.evolved_instruction in text for text in request.history)  # a user/assistant pair before
    assert request.inputs["instruction"] == "Add 2 and 3."
    with dspy.context(lm=lm):
        Evolver("Deepen the question.")(instruction="Add 2 and 3.")
    assert lm.engine.requests[-1].history == ()


def test_demonstrations_change_the_fingerprint_and_copies_keep_them():
    plain = Evolver("Deepen the question.")
    shown = plain.with_demos([GOOD])
    assert plain.fingerprint != shown.fingerprint and plain.demos == []
    assert shown.with_method("Widen it.").demos == [GOOD]
    assert Evolver("Deepen the question.", demos=[GOOD.model_copy(update={"origin": "given"})]).fingerprint \
        == shown.fingerprint  # provenance is not behaviour


@pytest.mark.parametrize("demos", [[], [GOOD]])
def test_file_round_trip_with_and_without_demonstrations(tmp_path, demos):
    original = Evolver("Custom method.", demos=demos, metadata={"dev_failure_rate": 0.2})
    path = original.save(tmp_path / "e.json")
    loaded = Evolver().load(path)  # the DSPy idiom: load into an instance
    assert loaded.method == "Custom method." and loaded.demos == demos
    assert loaded.metadata == {"dev_failure_rate": 0.2} and loaded.fingerprint == original.fingerprint
    document = json.loads(path.read_text())
    assert document["evolve"]["demos"] == [demo.model_dump() for demo in demos]
    assert document["evolve"]["lm"] is None and "dependency_versions" in document["metadata"]
    import autoevol

    assert autoevol.load(path).demos == demos


def test_an_old_format_1_file_still_loads(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "autoevol.evolver", "format_version": 1, "autoevol_version": "0.1.0",
                                "method": "Old method.", "method_fingerprint": "x", "metadata": {"steps": 2}}))
    loaded = Evolver().load(path)
    assert loaded.method == "Old method." and loaded.demos == [] and loaded.metadata == {"steps": 2}


def test_dspy_module_load_reads_an_evolver_file(tmp_path):
    path = Evolver("Custom method.", demos=[GOOD]).save(tmp_path / "e.json")
    target = Evolver()
    dspy.Module.load(target, str(path))  # DSPy's own loader, not ours
    assert target.method == "Custom method." and target.demos == [GOOD]


class Pipeline(dspy.Module):
    """A larger DSPy program with an Evolver inside."""

    def __init__(self) -> None:
        super().__init__()
        self.evolver = Evolver()
        self.answer = dspy.Predict("question -> answer")

    def forward(self, instruction: str) -> dspy.Prediction:
        return self.answer(question=self.evolver(instruction=instruction).evolved_instruction)


def test_a_program_containing_an_evolver_saves_and_loads_it_with_dspy(tmp_path):
    program = Pipeline()
    program.evolver = Evolver("Custom method.", demos=[GOOD])
    program.save(str(tmp_path / "program.json"))
    restored = Pipeline()
    restored.load(str(tmp_path / "program.json"))
    assert restored.evolver.method == "Custom method." and restored.evolver.demos == [GOOD]
    lm = scripted_lm(lambda request: {"working_notes": "n", "evolved_instruction": "harder", "answer": "5"})
    with dspy.context(lm=lm):
        restored(instruction="Add 2 and 3.")
    assert any(GOOD.evolved_instruction in text for text in lm.engine.requests[0].history)


def test_a_hand_edited_method_that_disagrees_with_dspys_copy_is_refused(tmp_path):
    path = Evolver("Custom method.").save(tmp_path / "e.json")
    document = json.loads(path.read_text())
    document["method"] = "Edited method."
    path.write_text(json.dumps(document))
    with pytest.raises(EvolverFileError, match="edit both"):
        Evolver().load(path)
    del document["evolve"]
    path.write_text(json.dumps(document))
    assert Evolver().load(path).method == "Edited method."


def test_a_failed_load_leaves_the_evolver_unchanged(tmp_path):
    evolver = Evolver("Mine.", demos=[GOOD])
    with pytest.raises(EvolverFileError):
        evolver.load(tmp_path / "missing.json")
    assert evolver.method == "Mine." and evolver.demos == [GOOD]
