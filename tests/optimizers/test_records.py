"""The records of a compile read back as they were written: the committed run directories of
benchmarks/runs, and records in the shapes older versions wrote.

A resumed compile reuses its records by fingerprint (the start, the steps, the confirmation), and a
record's fingerprint is computed from its method and demonstrations when it is read: were it to come
out other than recorded, a resumed compile would silently measure everything again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autoevol.optimizers.auto_evol.records import (
    CandidateRecord,
    MethodScore,
    StartRecord,
    StepRecord,
)
from autoevol.optimizers.auto_evol.run_dir import RUN_FORMAT, RunDirectory
from autoevol.programs.demonstration import Candidate, Demo, candidate_fingerprint
from autoevol.records import fingerprint

RUNS = Path(__file__).resolve().parents[2] / "benchmarks" / "runs"
RECORDED_RUNS = sorted(path.parent for path in RUNS.rglob("run.json")
                       if json.loads(path.read_text(encoding="utf-8")).get("format") == RUN_FORMAT)
DEMO = Demo(instruction="Add 2 and 3.", working_notes="add a unit", evolved_instruction="Add 2 m and 3 m.",
            origin="observed", item_id="7", step=1)


def read(file: Path) -> dict[str, Any]:
    return json.loads(file.read_text(encoding="utf-8"))


def fingerprints(recorded: dict[str, Any], read_back: dict[str, Any]) -> list[tuple[str, str]]:
    """(recorded, read back) for every measured method of a start or step record, candidates' scores included."""
    scores = [name for name in ("score", "incumbent", "selected") if name in recorded]
    pairs = [(recorded[name]["fingerprint"], read_back[name]["fingerprint"]) for name in scores]
    for group in ("alternatives", "candidates"):
        for old, new in zip(recorded.get(group, []), read_back.get(group, [])):
            if old["score"] is not None:
                pairs.append((old["score"]["fingerprint"], new["score"]["fingerprint"]))
    return pairs


def filled(recorded: dict[str, Any], read_back: dict[str, Any]) -> dict[str, Any]:
    """``recorded`` with the fingerprints its candidate records left null (the start race's did) as read back."""
    document = json.loads(json.dumps(recorded))
    for group in ("alternatives", "candidates"):
        for old, new in zip(document.get(group, []), read_back.get(group, [])):
            old["fingerprint"] = old["fingerprint"] or new["fingerprint"]
    return document


def test_the_committed_run_directories_are_found():
    assert RUNS / "h2h-self-instruct" / "quality.h2h-auto-evol.run" in RECORDED_RUNS


@pytest.mark.parametrize("folder", RECORDED_RUNS, ids=lambda folder: folder.name)
def test_a_recorded_run_reads_back_with_the_fingerprints_it_recorded(folder: Path):
    run = RunDirectory.read(folder)
    start, steps = run.start(), run.steps()
    if start is None:  # a run stopped before its start was recorded (GEPA records it after its search)
        assert not steps and not (folder / "confirmation.json").exists()
        return
    records: list[tuple[Path, StartRecord | StepRecord]] = [(folder / "start.json", start)]
    records += [(folder / "steps" / f"step-{step.step:03d}.json", step) for step in steps]
    for file, record in records:
        recorded, read_back = read(file), record.model_dump(mode="json")
        pairs = fingerprints(recorded, read_back)
        assert pairs and all(old == new for old, new in pairs), file
        assert read_back == filled(recorded, read_back), f"{file} is written back in another shape"
    assert start.score.fingerprint == run.header.start_method_fingerprint
    if (folder / "confirmation.json").exists():  # a resumed compile reuses the confirmation it measured
        final = steps[-1].selected if steps else start.chosen
        assert run.confirmation(start=start.score.fingerprint, result=final.fingerprint) is not None


def test_a_measured_method_of_any_version_reads_back_with_its_fingerprint():
    before_demos = {"method": "Make it harder.", "fingerprint": fingerprint("Make it harder."), "failure_rate": 0.5,
                    "failed": 1, "evaluated": 2, "by_rule": {"unchanged": 1}}
    shown = {**before_demos, "fingerprint": candidate_fingerprint("Make it harder.", [DEMO]),
             "demos": [DEMO.model_dump(mode="json")]}
    for document in (before_demos, shown):
        score = MethodScore.model_validate(document)
        assert score.fingerprint == document["fingerprint"]
        assert score.model_dump(mode="json") == {"demos": [], **document}


def test_a_candidate_record_keeps_the_candidate_at_its_top_level():
    method = {"index": 1, "kind": "method", "method": "Make it harder.", "demos": [DEMO.model_dump(mode="json")],
              "fingerprint": candidate_fingerprint("Make it harder.", [DEMO])}
    record = CandidateRecord.model_validate(method)
    assert record.candidate == Candidate(method="Make it harder.", demos=(DEMO,))
    assert {key: record.model_dump(mode="json")[key] for key in method} == method
    assert CandidateRecord.model_validate_json(record.model_dump_json()) == record
    # a method candidate of an older version recorded the method's fingerprint alone: the one read is its candidate's
    assert CandidateRecord.model_validate({**method, "fingerprint": fingerprint("Make it harder.")}) == record
    unproposed = CandidateRecord.model_validate({"index": 2, "method": None, "invalid_reason": "no proposal"})
    assert unproposed.candidate is None and unproposed.invalid
    assert {key: unproposed.model_dump(mode="json")[key] for key in ("method", "demos", "fingerprint")} == \
        {"method": None, "demos": [], "fingerprint": None}
