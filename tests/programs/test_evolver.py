"""Evolver: method, copies, trajectories, save and load."""

from __future__ import annotations

import json

import dspy
import pytest

from autoevol.programs.evolver import FORMAT_VERSION, Evolver, EvolverFileError
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
    assert weak.candidate == {"evolve": WEAK_METHOD}


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
        stages = Evolver("Widen it.").trajectory("Q", rounds=3)
    assert stages == ["Q", "Q +Widen", "Q +Widen +Widen", "Q +Widen +Widen +Widen"]


def test_save_and_load_round_trip(tmp_path):
    path = Evolver("Custom method.", metadata={"dev_failure_rate": 0.2}).save(tmp_path / "e.json")
    loaded = Evolver.load(path)
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
        Evolver.load(path)
    if content is not None:
        assert path.read_text() == content
