"""The measurement log: a compile interrupted inside a phase resumes on another machine (no call
cache) without measuring that phase's finished items again, and reaches the same result."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from autoevol.optimizers import RunDirError
from autoevol.optimizers.auto_evol.measurements import Measurement, MeasurementLog
from autoevol.programs.demonstration import Candidate
from autoevol.programs.evolver import Evolver
from autoevol.records import Verdict
from autoevol.signatures.evolve import INITIAL_METHOD
from autoevol.testing.scripted import ScriptedRequest
from tests.optimizers.test_auto_evol import Crash, EvolScript, OptimizerScript, comparable, items, lms, method, teleprompter

SETTINGS = dict(max_steps=1, num_threads=1, confirm_size=0)
PROPOSALS = [method("BALANCED"), method("CAREFUL"), method("SLOPPY")]


class RecordingEvol(EvolScript):
    """The evol LM of test_auto_evol, noting which (method, instruction) pairs it evolved."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.evolved: list[tuple[str, str]] = []

    def __call__(self, request: ScriptedRequest):
        reply = super().__call__(request)
        if "evolved_instruction" in request.outputs:
            self.evolved.append((request.instructions, request.inputs["instruction"]))
        return reply


def compile_run(run_dir, evol: EvolScript):
    evol_lm, optimizer_lm = lms(evol, OptimizerScript(PROPOSALS))
    return teleprompter(evol_lm, optimizer_lm, **SETTINGS).compile(Evolver(), trainset=items(40), run_dir=run_dir)


def moved(run_dir: Path, to: Path, *, keep_log: bool) -> None:
    """``run_dir`` copied to ``to`` as to another machine: without its call cache (and, with
    ``keep_log=False``, without its measurement log)."""
    shutil.copytree(run_dir, to)
    for cache in to.glob("calls.sqlite*"):
        cache.unlink()
    if not keep_log:
        (to / "measurements.jsonl").unlink()


def logged(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "measurements.jsonl").read_text().splitlines()]


def test_a_compile_resumed_without_its_call_cache_measures_only_what_its_log_lacks(tmp_path):
    reference_evol = EvolScript()
    reference = compile_run(tmp_path / "reference", reference_evol)
    assert {line["split"] for line in logged(tmp_path / "reference")} == {"dev"}

    # the first run dies while measuring the starting method on the dev set: no record is complete
    with pytest.raises(Crash):
        compile_run(tmp_path / "run", EvolScript(crash_at=15))
    assert not (tmp_path / "run" / "start.json").exists()
    finished = logged(tmp_path / "run")
    assert 0 < len(finished) < 20
    e0 = Candidate(method=INITIAL_METHOD).fingerprint
    assert all(line["method"] == e0 for line in finished)

    # the run moves to another machine: its call cache stays behind (and, to compare, its log too)
    moved(tmp_path / "run", tmp_path / "with-log", keep_log=True)
    moved(tmp_path / "run", tmp_path / "without-log", keep_log=False)
    with_log, without_log = RecordingEvol(), RecordingEvol()
    resumed = compile_run(tmp_path / "with-log", with_log)
    again = compile_run(tmp_path / "without-log", without_log)

    for result in (resumed, again):
        assert result.method == reference.method
        assert comparable(result.compile_history) == comparable(reference.compile_history)
    # the resumed run evolved with e_0 exactly what the run without the log did, less the logged items
    by_e0 = {name: Counter(text for instructions, text in evol.evolved if "Marker " not in instructions)
             for name, evol in (("with", with_log), ("without", without_log))}
    assert not by_e0["with"] - by_e0["without"]
    assert sum((by_e0["without"] - by_e0["with"]).values()) == len(finished)
    assert with_log.calls < without_log.calls
    # every (method, item) is logged once, as in the uninterrupted run
    keys = [(line["split"], line["method"], line["position"]) for line in logged(tmp_path / "with-log")]
    assert len(keys) == len(set(keys)) == len(logged(tmp_path / "reference"))


def measurement(position: int, item: str) -> Measurement:
    return Measurement(split="dev", method="m1", position=position, item=item, verdict=Verdict.passed())


def test_a_line_cut_off_by_a_crash_is_dropped_and_the_log_continues(tmp_path):
    path = tmp_path / "measurements.jsonl"
    log = MeasurementLog(path, {"dev": ["a", "b"]})
    log.append(measurement(0, "a"))
    with path.open("a") as file:
        file.write('{"split": "dev", "method": "m1", "posi')  # the process died mid-line
    reopened = MeasurementLog(path, {"dev": ["a", "b"]})
    assert list(reopened.recorded("dev")) == [("m1", 0)]
    reopened.append(measurement(1, "b"))
    assert set(MeasurementLog(path, {"dev": ["a", "b"]}).recorded("dev")) == {("m1", 0), ("m1", 1)}


def test_a_corrupt_or_foreign_log_stops_the_compile_before_any_call(tmp_path):
    run_dir = tmp_path / "run"
    compile_run(run_dir, EvolScript())
    lines = (run_dir / "measurements.jsonl").read_text().splitlines()
    for cache in run_dir.glob("calls.sqlite*"):
        cache.unlink()
    (run_dir / "start.json").unlink()  # without it the compile would measure: the refusal must come first
    cases = {"not a measurement record": ["not json", *lines],
             "not this run's item": [lines[0].replace('"position": 0', '"position": 1'), *lines[1:]]}
    for problem, content in cases.items():
        (run_dir / "measurements.jsonl").write_text("\n".join(content) + "\n")
        evol = EvolScript()
        with pytest.raises(RunDirError, match=f"measurements.jsonl, line 1: .*{problem}"):
            compile_run(run_dir, evol)
        assert evol.calls == 0
        assert (run_dir / "measurements.jsonl").read_text() == "\n".join(content) + "\n"  # left as it was


def test_the_records_of_a_resumed_phase_count_the_calls_of_every_run_that_worked_on_it(tmp_path):
    reference = compile_run(tmp_path / "reference", EvolScript())
    with pytest.raises(Crash):  # dies while measuring the starting method on the dev set
        compile_run(tmp_path / "run", EvolScript(crash_at=15))
    spent = json.loads((tmp_path / "run" / "spending" / "start.json").read_text())
    earlier = next(usage["calls"] for usage in spent["usage"] if usage["role"] == "evol")
    assert len(logged(tmp_path / "run")) <= earlier < 15  # each logged item took a call or two
    moved(tmp_path / "run", tmp_path / "moved", keep_log=True)  # the logged items are not measured again
    second = EvolScript()
    resumed = compile_run(tmp_path / "moved", second)

    evol = resumed.metadata["usage"]["evol"]
    assert evol["calls"] == earlier + second.calls  # every call of both runs
    # the requests of the uninterrupted compile (some of its cache hits were calls of the first run), but
    # for the calls of an item that finished as the first run crashed (logged, not yet in its record)
    requests = sum(reference.metadata["usage"]["evol"][key] for key in ("calls", "cache_hits"))
    assert requests - 2 <= evol["calls"] + evol["cache_hits"] <= requests
    assert not (tmp_path / "moved" / "spending" / "start.json").exists()  # the start record holds it now
