"""Reports of compile runs and evolve outputs: collected figures, escaped HTML, embedded PNGs."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from autoevol.optimizers.auto_evol.records import CandidateRecord, MethodScore, StepRecord
from autoevol.optimizers.auto_evol.run_dir import RunHeader, write_json
from autoevol.programs.demonstration import Candidate
from autoevol.records import fingerprint
from autoevol.report import build_report, collect, write_report
from autoevol.report.html import diff_html
from autoevol.signatures.analyze import TrajectoryIssue
from autoevol.signatures.evolve import INITIAL_METHOD
from tests.metrics.test_quality import HashingEmbedder
from tests.test_export import make_output

IMG = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')
FINAL = INITIAL_METHOD + "\nStep 5 - Keep the question: the rewrite must still ask <something> & end with '?'."


def score(method: str, rate: float, by_rule: dict[str, int] | None = None) -> MethodScore:
    return MethodScore(method=method, failure_rate=rate, failed=round(rate * 20), evaluated=20, by_rule=by_rule or {})


def make_run(path: Path, steps: int = 3) -> Path:
    """A run directory as the teleprompter writes it (models from autoevol.optimizers.auto_evol.records and .run_dir)."""
    (path / "steps").mkdir(parents=True)
    header = RunHeader(autoevol_version="0", start_method_fingerprint=fingerprint(INITIAL_METHOD),
                       settings={"num_candidates": 2, "dev_size": 20}, data={"pool": 40})
    write_json(path / "run.json", header.model_dump(mode="json"))
    incumbent = score(INITIAL_METHOD, 0.5, {"unchanged": 10})
    for step in range(1, steps + 1):
        method = FINAL if step == steps else f"{INITIAL_METHOD}\nStep {step} tweak."
        rates = [0.5 - 0.1 * step, 0.55]
        candidates = [
            CandidateRecord(index=i + 1, candidate=Candidate(method=method if i == 0 else "other"), feedback="f",
                            issues=[TrajectoryIssue(case_id="c1", category="flawed", reason="r"),
                                    TrajectoryIssue(case_id="c2", category="task_changed", reason="<b>r</b>")][: i + 1],
                            score=score(method if i == 0 else "other", rate, {"unchanged": 2}))
            for i, rate in enumerate(rates)
        ]
        selected = score(method, rates[0], {"unchanged": 2, "lost_question": 1})
        record = StepRecord(step=step, incumbent=incumbent, trajectory=[], candidates=candidates, winner=1,
                            selected=selected)
        write_json(path / "steps" / f"step-{step:03d}.json", record.model_dump(mode="json"))
        incumbent = selected
    return path


def decoded_images(html: str) -> list[bytes]:
    return [base64.b64decode(data, validate=True) for data in IMG.findall(html)]


def test_run_report_has_steps_issues_method_and_diff(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    model = collect(run)
    assert [s.step for s in model.run.steps] == [1, 2, 3]
    assert model.run.steps[0].candidates == [pytest.approx(0.4), pytest.approx(0.55)]
    assert model.run.issue_categories == {"flawed": 6, "task_changed": 3}
    assert model.run.final_method == FINAL
    assert model.run.final_by_rule == {"unchanged": 2, "lost_question": 1}
    html = build_report(run)
    images = decoded_images(html)
    assert len(images) == 3 and all(i.startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert "<something> &" not in html and "&lt;something&gt; &amp;" in html  # escaped
    assert '<span class="add">+Step 5 - Keep the question' in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert "incumbent kept" not in html and "candidate 1" in html


def test_partial_run_dir_renders_without_missing_sections(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    html = build_report(run)
    assert "Compile run" in html and "<img" not in html and "Final method" not in html
    (run / "steps").mkdir()
    (run / "steps" / "step-001.json").write_text("not json")
    assert "<img" not in build_report(run)


def test_output_report_has_rounds_rules_lengths_and_quality(tmp_path: Path) -> None:
    source = make_output(tmp_path / "out.parquet")
    model = collect(source, embedder=HashingEmbedder())
    rounds = model.output.rounds
    assert [(r.round, r.rows, r.failed) for r in rounds] == [(1, 6, 2), (2, 4, 1), (3, 3, 1)]
    assert model.output.by_rule == {"unchanged": 4}
    assert rounds[0].after.n == 4 and rounds[0].before.n == 6
    assert rounds[0].after.parent_similarity is not None
    html = build_report(source, embedder=HashingEmbedder())
    assert len(decoded_images(html)) == 4
    for text in ("Rows per round", "Failures by rule", "Length distributions", "before and after",
                 "embedding diversity", "round 3 after"):
        assert text in html
    out = write_report(source, tmp_path / "r" / "report.html", quality=False)
    assert out.exists() and len(decoded_images(out.read_text())) == 3


def test_diff_escapes_and_marks_lines() -> None:
    assert "identical" in diff_html("a", "a")
    html = diff_html("keep\n<old>", "keep\n<new>")
    assert '<span class="del">-&lt;old&gt;</span>' in html and '<span class="add">+&lt;new&gt;</span>' in html
