"""benchmarks/run_progress.py and head_to_head.py --report: a run's progress read from the records the
compile and the evaluations wrote (written here with autoevol's own record types and run directory)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from autoevol.optimizers.auto_evol.measurements import Measurement, MeasurementLog
from autoevol.optimizers.auto_evol.records import CandidateRecord, MethodScore, StartRecord, StepRecord
from autoevol.optimizers.auto_evol.run_dir import write_json
from autoevol.optimizers.auto_evol.selection import PairedComparison
from autoevol.programs.demonstration import Candidate
from autoevol.records import Verdict

HERE = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(HERE))

from run_progress import run_progress  # noqa: E402


def score(method: str, failed: int, evaluated: int = 20) -> MethodScore:
    return MethodScore(method=method, failure_rate=failed / evaluated, failed=failed, evaluated=evaluated,
                       by_rule={"unchanged": failed})


def candidate(index: int, change: str, failed: int, wins: int, losses: int, **fields) -> CandidateRecord:
    comparison = PairedComparison(items=20, reference_only=wins, challenger_only=losses, both=2, p_value=0.03 if wins > 5 else 0.5,
                                  level=0.07)
    return CandidateRecord(index=index, candidate=Candidate(method=change), change=change, score=score(change, failed),
                           comparison=comparison, **fields)


def write_run(folder: Path) -> None:
    run = folder / "quality.h2h-auto-evol.run"
    (run / "steps").mkdir(parents=True)
    write_json(run / "run.json", {"settings": {"dev_size": 20, "confirm_size": 20, "num_candidates": 2}})
    start = StartRecord(score=score("e_0", 11), winner=2, tried=2, alternatives=[
        candidate(1, "starting method: weak", 12, 1, 3, dropped="worse than the leader after 12 items"),
        candidate(2, "starting method: deepen", 5, 7, 1)])
    write_json(run / "start.json", start.model_dump(mode="json"))
    step = StepRecord(step=1, incumbent=score("deepen", 5), trajectory=[], winner=None, selected=score("deepen", 5),
                      tried=4, candidates=[candidate(1, "added a rule", 6, 2, 3),
                                           CandidateRecord(index=2, invalid_reason="the same method as candidate 1")])
    write_json(run / "steps" / "step-001.json", step.model_dump(mode="json"))
    confirmation = PairedComparison(items=20, reference_only=6, challenger_only=1, both=3, p_value=0.0625, level=0.1)
    write_json(run / "confirmation.json", {**confirmation.model_dump(), "supported": confirmation.supported})
    lines = [{"outcome": {"verdict": {"failed": failed, "rule": "unchanged" if failed else None}}}
             for failed in (True, False, False, True)]
    (folder / "quality.e0.items.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def demo_runs(tmp_path: Path, monkeypatch) -> Path:
    """A runs folder holding the run ``demo`` (:func:`write_run`), where the benchmarks look for runs."""
    import quality

    runs = tmp_path / "runs"
    write_run(runs / "demo")
    monkeypatch.setattr(quality, "RUNS_DIR", runs)
    return runs


def reported(tmp_path: Path, main, held_out: int, existing: str = "# results\n") -> str:
    """RESULTS.md (``existing`` before) after a benchmark's ``main`` wrote run ``demo``'s section by ``--report``."""
    results = tmp_path / "RESULTS.md"
    results.write_text(existing)
    main(["--name", "demo", "--held-out", str(held_out), "--report", "--results-md", str(results)])
    return results.read_text()


def test_the_start_race_the_steps_and_the_confirmation_are_read_from_the_records(tmp_path):
    write_run(tmp_path)
    text = run_progress(tmp_path, planned_items=60)
    assert "chosen: **starting method: deepen**" not in text and "chosen: **deepen**" in text
    assert "| deepen | 5 / 20 | 7 / 1 of 20, p=0.03 (needed <= 0.07) | **accepted** |" in text
    assert "| weak | 12 / 20 | 1 / 3 of 20, p=0.5 (needed <= 0.07) | dropped: worse than the leader after 12 items |" in text
    assert "step 1: incumbent failed 5 / 20" in text and "| added a rule | 6 / 20 | 2 / 3 of 20" in text
    assert "invalid: the same method as candidate 1" in text
    assert "start only / result only 6 / 1 of 20, p=0.0625 (needed <= 0.1): the gain **held**" in text
    assert "| quality.e0.items.jsonl | 4 of 60 | 2 | 50.0% | unchanged 2 |" in text


def test_a_run_that_recorded_nothing_yet_says_so(tmp_path):
    (tmp_path / "quality.h2h-auto-evol.run").mkdir()
    assert "nothing recorded yet" in run_progress(tmp_path)
    assert "measurements logged" not in run_progress(tmp_path)


def test_the_measurements_of_the_phase_under_way_are_counted(tmp_path):
    run = tmp_path / "quality.h2h-auto-evol.run"
    run.mkdir()
    log = MeasurementLog(run / "measurements.jsonl", {"dev": ["a", "b", "c"], "confirm": ["d"]})
    for split, position, item in (("dev", 0, "a"), ("dev", 1, "b"), ("confirm", 0, "d")):
        log.append(Measurement(split=split, method="m", position=position, item=item, verdict=Verdict.passed()))
    assert ("nothing recorded yet; measurements logged so far (the phase under way included): dev 2, confirm 1"
            in run_progress(tmp_path))
    write_run(tmp_path)
    assert "Measurements logged so far (the phase under way included): dev 2, confirm 1" in run_progress(tmp_path)


def test_head_to_head_report_writes_the_runs_section_without_an_lm(tmp_path, monkeypatch):
    import head_to_head

    demo_runs(tmp_path, monkeypatch)
    text = reported(tmp_path, head_to_head.main, 60)
    assert "<!-- begin head_to_head-demo -->" in text and "chosen: **deepen**" in text
    assert "the gain **held**" in text


def test_a_quality_run_stopped_by_its_budget_gets_its_section_from_its_records(tmp_path, monkeypatch):
    import quality

    demo_runs(tmp_path, monkeypatch)
    earlier = "# results\n\n<!-- begin quality-demo -->\nold figures\n<!-- end quality-demo -->\n"
    text = reported(tmp_path, quality.main, 60, earlier)
    assert "## Quality `demo`, in progress (from its records)" in text and "old figures" not in text
    assert "`python benchmarks/quality.py --name demo --held-out 60 --report`" in text
    assert "chosen: **deepen**" in text and "| quality.e0.items.jsonl | 4 of 60 | 2 | 50.0% | unchanged 2 |" in text


def test_a_finished_quality_runs_report_shows_its_table(tmp_path, monkeypatch):
    import quality
    from quality_eval import MethodResult

    runs = demo_runs(tmp_path, monkeypatch)
    e0 = MethodResult(key="e0", label="e_0", fingerprint="e0", failure_rate=0.5, failed=2, items=4,
                      by_rule={"unchanged": 2}, seconds=60.0, usage={"evol": {"calls": 8}}, reused=0,
                      outcomes_file="quality.e0.items.jsonl", failed_flags=[True, False, False, True])
    report = quality.Report(settings={"lm": "local:m.gguf", "seed": 3}, seed_file="/seeds/he.jsonl", compile_items=11,
                            held_out_ids=["1", "2", "3", "4"], methods=[e0])
    document = {"command": ["benchmarks/quality.py", "--name", "demo"], **asdict(report)}
    (runs / "demo" / "report.json").write_text(json.dumps(document))
    text = reported(tmp_path, quality.main, 4)
    assert "## Quality: held-out failure rate on he.jsonl with local:m.gguf (4 held-out items, 11 compile items, " \
           "seed 3)" in text and "in progress" not in text
    assert "| e_0 | 50.0% | 2 / 4 | unchanged 2 | evol 8 |" in text
    assert text.index("| e_0 |") < text.index("chosen: **deepen**")


def test_a_report_names_a_file_of_the_repository_by_its_path_there(tmp_path):
    import quality

    saved = quality.RUNS_DIR / "he60" / "quality.compiled.json"
    assert quality.in_repository(saved) == str(Path("benchmarks") / "runs" / "he60" / "quality.compiled.json")
    assert quality.in_repository(tmp_path / "quality.compiled.json") == str(tmp_path / "quality.compiled.json")


def test_a_report_needs_the_runs_name(tmp_path):
    done = subprocess.run([sys.executable, str(HERE / "quality.py"), "--report"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and "--report needs --name" in done.stderr


def test_a_finished_runs_report_puts_its_held_out_table_above_the_records(tmp_path, monkeypatch):
    import head_to_head
    from quality_eval import MethodResult

    runs = demo_runs(tmp_path, monkeypatch)
    methods = [MethodResult(key=key, label=label, fingerprint=key, failure_rate=failed / 4, failed=failed, items=4,
                            by_rule={"unchanged": failed}, seconds=60.0, usage={"evol": {"calls": 8}}, reused=0,
                            outcomes_file=f"quality.{key}.items.jsonl", failed_flags=flags)
               for key, label, failed, flags in (("e0", "e_0", 2, [True, False, False, True]),
                                                 ("evol-instruct", "classic", 1, [True, False, False, False]))]
    report = head_to_head.Report(settings={"lm": "local:m.gguf", "seed": 3}, seed_file="/seeds/si.jsonl",
                                 compile_items=11, held_out_ids=["1", "2", "3", "4"], methods=methods,
                                 differences=[{"method": "evol-instruct", "reference": "e0", "diff": -0.25, "low": -0.75,
                                               "high": 0.0, "confidence": 0.95, "items": 4}])
    document = {"command": ["benchmarks/head_to_head.py", "--name", "demo"], **asdict(report)}
    (runs / "demo" / "report.json").write_text(json.dumps(document))
    text = reported(tmp_path, head_to_head.main, 4)
    assert "Head to head: e_0, the classic operations, Auto Evol-Instruct and GEPA on si.jsonl with local:m.gguf " \
           "(4 held-out items, 11 compile items, seed 3)" in text and "in progress" not in text
    assert "`python benchmarks/head_to_head.py --name demo`" in text  # the command that made it
    assert "| classic | 25.0% | 1 / 4 | unchanged 1 | evol 8 |" in text
    assert "classic minus e_0: -25.0 points, 95% paired bootstrap interval [-75.0, +0.0] (4 items)" in text
    assert text.index("minus e_0") < text.index("chosen: **deepen**")  # the records' details below


def test_measuring_still_needs_an_lm(tmp_path):
    done = subprocess.run([sys.executable, str(HERE / "head_to_head.py"), "--seed-file", str(tmp_path / "x.jsonl")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "required: --lm" in done.stderr


def test_measuring_still_needs_seeds(tmp_path):
    done = subprocess.run([sys.executable, str(HERE / "head_to_head.py"), "--lm", "openai/fake"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "--seed-file --seed-set is required" in done.stderr


def usage(role: str, calls: int) -> dict:
    return {"role": role, "model": "m", "calls": calls, "cache_hits": 1, "input_tokens": 10, "output_tokens": 5}


def test_the_calls_of_every_run_and_of_the_phase_under_way_are_counted(tmp_path):
    write_run(tmp_path)
    run = tmp_path / "quality.h2h-auto-evol.run"
    for path, calls, seconds in ((run / "start.json", 30, 600), (run / "steps" / "step-001.json", 20, 300)):
        write_json(path, {**json.loads(path.read_text()), "usage": [usage("evol", calls)], "seconds": seconds})
    (run / "spending").mkdir()  # step 2, interrupted: what its runs spent so far
    write_json(run / "spending" / "step-002.json",
               {"lm_calls": 7, "seconds": 65, "usage": [usage("evol", 5), usage("optimizer", 2)]})
    assert "LM calls so far: 57 (evol 55, optimizer 2), recorded time 16m05s" in run_progress(tmp_path)


def test_a_gepa_search_under_way_shows_its_calls_iterations_and_candidates(tmp_path):
    run = tmp_path / "quality.h2h-gepa.run"
    (run / "gepa").mkdir(parents=True)
    write_json(run / "gepa-lm-calls.json",
               {"lm_calls": 12, "seconds": 65, "usage": [usage("evol", 10), usage("optimizer", 2)]})
    write_json(run / "gepa" / "run_log.json", [{"i": 0}, {"i": 1}])
    write_json(run / "gepa" / "candidates.json", [{"evolve": "e_0"}, {"evolve": "better"}])
    assert ("nothing recorded yet; LM calls so far: 12 (evol 10, optimizer 2), recorded time 1m05s; "
            "GEPA: 2 iterations, candidates accepted so far: 1") in run_progress(tmp_path)
