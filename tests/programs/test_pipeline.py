"""EvolveJob: every row accounted for, lineage across rounds, resume, per-row faults."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest
from dspy.lm15 import ServerError

from autoevol.data import DataError, read_rows
from autoevol.lm import Budget, CallCache, CallPolicy
from autoevol.metrics.failure import FailureDetector, FunctionRule
from autoevol.programs.evolver import Evolver
from autoevol.programs.pipeline import EvolveJob
from autoevol.testing.scripted import ScriptedRequest, scripted_lm

FAST = CallPolicy(max_retries=1, backoff_base=0.001, backoff_cap=0.001)


def good_model(request: ScriptedRequest):
    """Evolves by appending a constraint, answers with a plain sentence."""
    if "evolved_instruction" in request.outputs:
        text = request.inputs["instruction"]
        return {"working_notes": "plan", "evolved_instruction": f"{text} Explain each step and give two examples."}
    return {"answer": "Here is a complete and careful answer with all the details requested."}


def write_seed(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    return write_seed(tmp_path / "seed.jsonl", [
        {"id": "a", "instruction": "Add 2 and 3."},
        {"id": "b", "instruction": "Name a colour."},
        {"id": "c", "instruction": "   "},
        {"id": "d", "instruction": "Sort the list [3, 1, 2]."},
    ])


def run(lm, seed: Path, out: Path, **options):
    with dspy.context(lm=lm):
        return EvolveJob(Evolver(), concurrency=2, evol_model="scripted").run(seed, out, **options)


def test_every_input_row_yields_one_row(tmp_path, seed):
    out = tmp_path / "out.jsonl"
    summary = run(scripted_lm(good_model), seed, out)
    rows = {row["id"]: row for row in read_rows(out)}
    assert set(rows) == {"a:r1", "b:r1", "c:r1", "d:r1"}
    assert rows["c:r1"]["failed"] and rows["c:r1"]["rule"] == "bad_input"
    assert rows["a:r1"]["evolved"].startswith("Add 2 and 3.") and not rows["a:r1"]["failed"]
    assert rows["a:r1"]["parent_id"] == "a" and rows["a:r1"]["root_id"] == "a"
    assert rows["a:r1"]["method_fingerprint"] == Evolver().fingerprint
    assert (summary.rows, summary.evolved, summary.failed) == (4, 3, 1)
    assert summary.failed_by_rule == {"bad_input": 1}
    assert not Path(str(out) + ".partial.jsonl").exists()


def test_rounds_evolve_successful_rows_of_the_previous_round(tmp_path, seed):
    out = tmp_path / "out.jsonl"
    run(scripted_lm(good_model), seed, out, rounds=2)
    rows = {row["id"]: row for row in read_rows(out)}
    assert {"a:r2", "b:r2", "d:r2"} <= set(rows) and "c:r2" not in rows
    second = rows["a:r2"]
    assert second["parent_id"] == "a:r1" and second["root_id"] == "a" and second["round"] == 2
    assert second["original"] == rows["a:r1"]["evolved"]


def test_lm_errors_and_garbage_become_failed_rows(tmp_path, seed):
    def faulty(request: ScriptedRequest):
        text = request.inputs.get("instruction", "")
        if "colour" in text:
            raise ServerError("server exploded")
        if "Sort" in text:
            return "no fields at all"
        return good_model(request)

    out = tmp_path / "out.jsonl"
    run(scripted_lm(faulty, policy=FAST), seed, out)
    rows = {row["id"]: row for row in read_rows(out)}
    assert rows["b:r1"]["rule"] == "lm_error" and "server exploded" in rows["b:r1"]["reason"]
    assert rows["d:r1"]["rule"] == "unparseable"
    assert not rows["a:r1"]["failed"]


def test_budget_stop_then_resume_completes_without_repeating_calls(tmp_path, seed):
    out = tmp_path / "out.jsonl"
    cache = CallCache()
    first = scripted_lm(good_model, budget=Budget(max_calls=3))
    stopped = run(first, seed, out)
    assert stopped.stopped and "call budget" in stopped.stopped
    assert not out.exists() and Path(str(out) + ".partial.jsonl").exists()
    done_before = {row["id"] for row in read_rows(Path(str(out) + ".partial.jsonl"))}
    assert done_before - {"c:r1"}  # rows the LM evaluated were kept, not only the bad-input row

    second = scripted_lm(good_model, call_cache=cache)
    finished = run(second, seed, out)
    assert finished.stopped is None and finished.resumed_rows == len(done_before)
    ids = [row["id"] for row in read_rows(out)]
    assert sorted(ids) == ["a:r1", "b:r1", "c:r1", "d:r1"]
    evaluated_again = {r.inputs.get("instruction") for r in second.engine.requests}
    for row_id in done_before - {"c:r1"}:
        original = {"a:r1": "Add 2 and 3.", "b:r1": "Name a colour.", "d:r1": "Sort the list [3, 1, 2]."}[row_id]
        assert original not in evaluated_again


def test_a_torn_last_line_is_dropped_on_resume(tmp_path, seed):
    out = tmp_path / "out.jsonl"
    run(scripted_lm(good_model, budget=Budget(max_calls=2)), seed, out)
    journal = Path(str(out) + ".partial.jsonl")
    with open(journal, "a") as file:
        file.write('{"id": "torn')
    run(scripted_lm(good_model), seed, out)
    ids = [row["id"] for row in read_rows(out)]
    assert sorted(ids) == ["a:r1", "b:r1", "c:r1", "d:r1"]


def test_an_unfinished_job_with_other_settings_is_not_mixed(tmp_path, seed):
    out = tmp_path / "out.jsonl"
    run(scripted_lm(good_model, budget=Budget(max_calls=2)), seed, out)
    with pytest.raises(DataError, match="different settings"):
        with dspy.context(lm=scripted_lm(good_model)):
            EvolveJob(Evolver("Another method."), evol_model="scripted").run(seed, out)
    summary = run(scripted_lm(good_model), seed, out, overwrite=True)
    assert summary.resumed_rows == 0 and summary.rows == 4


def test_an_unfinished_job_is_not_resumed_under_another_version_of_a_rule(tmp_path, seed):
    def detector(version: int) -> FailureDetector:
        return FailureDetector(extra=[FunctionRule("no_lisbon", "names Lisbon", lambda o, e, r: None, "evolution",
                                                   version=version)])

    out = tmp_path / "out.jsonl"
    with dspy.context(lm=scripted_lm(good_model, budget=Budget(max_calls=2))):
        EvolveJob(Evolver(), detector=detector(1), evol_model="scripted").run(seed, out)
    journal = Path(str(out) + ".partial.jsonl")
    kept = journal.read_bytes()
    with pytest.raises(DataError, match=r"different settings \(rules\)"):
        with dspy.context(lm=scripted_lm(good_model)):
            EvolveJob(Evolver(), detector=detector(2), evol_model="scripted").run(seed, out)
    assert journal.read_bytes() == kept
    with dspy.context(lm=scripted_lm(good_model)):
        summary = EvolveJob(Evolver(), detector=detector(1), evol_model="scripted").run(seed, out)
    assert summary.resumed_rows >= 1 and summary.rows == 4


def test_an_unfinished_job_is_not_resumed_under_another_output_token_limit(tmp_path, seed):
    # the limit shapes every rewrite (where it is cut off, how long its working notes may be)
    out = tmp_path / "out.jsonl"
    with dspy.context(lm=scripted_lm(good_model, budget=Budget(max_calls=2), max_tokens=450)):
        EvolveJob(Evolver(), evol_model="scripted").run(seed, out)
    journal = Path(str(out) + ".partial.jsonl")
    kept = journal.read_bytes()
    with pytest.raises(DataError, match=r"different settings \(max_output_tokens\)"):
        with dspy.context(lm=scripted_lm(good_model, max_tokens=900)):
            EvolveJob(Evolver(), evol_model="scripted").run(seed, out)
    assert journal.read_bytes() == kept
    with dspy.context(lm=scripted_lm(good_model, max_tokens=450)):
        summary = EvolveJob(Evolver(), evol_model="scripted").run(seed, out)
    assert summary.resumed_rows >= 1 and summary.rows == 4


def strong_answers(request: ScriptedRequest):
    return {"answer": f"Strong answer to: {request.inputs['instruction']}"}


def test_the_answer_lms_budget_stops_the_job_and_its_resume_repays_no_answer(tmp_path, seed):
    out = tmp_path / "out.jsonl"
    cache = CallCache()

    def job(answer_lm):
        with dspy.context(lm=scripted_lm(good_model, call_cache=cache)):
            return EvolveJob(Evolver(), concurrency=1, evol_model="scripted", answer_lm=answer_lm).run(seed, out)

    limited = scripted_lm(strong_answers, model="openai/strong", role="answer", budget=Budget(max_calls=1),
                          call_cache=cache)
    stopped = job(limited)
    assert stopped.stopped and "call budget" in stopped.stopped
    answered = {row["id"]: row for row in read_rows(Path(str(out) + ".partial.jsonl")) if not row["failed"]}
    assert len(answered) == 1 and next(iter(answered.values()))["answer"].startswith("Strong answer to:")

    with pytest.raises(DataError, match="answer_model"):  # another answer model is another job
        job(scripted_lm(strong_answers, model="openai/other", role="answer"))
    again = scripted_lm(strong_answers, model="openai/strong", role="answer", call_cache=cache)
    finished = job(again)
    assert finished.stopped is None
    rows = {row["id"]: row for row in read_rows(out)}
    assert all(rows[i]["answer"] == f"Strong answer to: {rows[i]['evolved']}" for i in ("a:r1", "b:r1", "d:r1"))
    asked = {r.inputs["instruction"] for r in again.engine.requests}
    assert not asked & {row["evolved"] for row in answered.values()}  # the finished row was not answered again
