"""Reports of compile runs and evolve outputs: collected figures, escaped HTML, inline SVG figures and their data."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from autoevol.optimizers.auto_evol.records import CandidateRecord, MethodScore, StepRecord
from autoevol.optimizers.auto_evol.run_dir import RunHeader, write_json
from autoevol.programs.demonstration import Candidate
from autoevol.records import fingerprint
from autoevol.report import build_report, collect, write_report
from autoevol.report.html import diff_html
from autoevol.report.svg import short_number
from autoevol.signatures.analyze import TrajectoryIssue
from autoevol.signatures.evolve import INITIAL_METHOD
from tests.metrics.test_quality import HashingEmbedder
from tests.test_export import make_output

SVG = re.compile(r"<svg\b.*?</svg>", re.DOTALL)
NS = "{http://www.w3.org/2000/svg}"
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


def figures(html: str) -> dict[str, ET.Element]:
    """The page's inline SVG figures by label, each parsed as XML (so well-formed) and named for screen readers."""
    found = {}
    for markup in SVG.findall(html):
        figure = ET.fromstring(markup)
        label = figure.get("aria-label")
        assert figure.get("role") == "img" and figure.find(f"{NS}title").text == label
        found[label] = figure
    assert len(found) == html.count("<svg")
    return found


def tipped(figure: ET.Element, *tags: str) -> list[ET.Element]:
    """The figure's ``tags`` elements that have a tooltip: a bar is a rect, a point a circle or a square rect."""
    return [mark for tag in tags for mark in figure.iter(f"{NS}{tag}") if mark.find(f"{NS}title") is not None]


def notes(figure: ET.Element, *tags: str) -> list[str]:
    """The tooltips of the figure's ``tags`` elements, in drawing order."""
    return [mark.find(f"{NS}title").text for mark in tipped(figure, *tags)]


def marks(figure: ET.Element, *tags: str) -> dict[str, ET.Element]:
    """The figure's ``tags`` elements by tooltip."""
    return {mark.find(f"{NS}title").text: mark for mark in tipped(figure, *tags)}


def texts(figure: ET.Element) -> list[str]:
    """Every text the figure shows: titles, tick labels, axis labels, legend."""
    return [t.text for t in figure.iter(f"{NS}text")]


def test_run_report_has_steps_issues_method_and_diff(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    model = collect(run)
    assert [s.step for s in model.run.steps] == [1, 2, 3]
    assert model.run.steps[0].candidates == [pytest.approx(0.4), pytest.approx(0.55)]
    assert model.run.issue_categories == {"flawed": 6, "task_changed": 3}
    assert model.run.final_method == FINAL
    assert model.run.final_by_rule == {"unchanged": 2, "lost_question": 1}
    html = build_report(run)
    shown = figures(html)
    assert list(shown) == ["failure rate per step", "issue categories", "dev failures by rule"]
    steps = shown["failure rate per step"]
    expected = [f"step {s}, {what}: {short_number(rate)}" for s in (1, 2, 3)
                for what, rate in (("incumbent", 0.6 - 0.1 * s), ("selected", 0.5 - 0.1 * s),
                                   ("candidate 1", 0.5 - 0.1 * s), ("candidate 2", 0.55))]
    assert sorted(notes(steps, "circle", "rect")) == sorted(expected)  # one point per rate, nothing else
    points = marks(steps, "circle", "rect")
    assert float(points["step 1, candidate 2: 0.55"].get("cy")) < float(points["step 1, incumbent: 0.5"].get("cy"))
    assert points["step 1, incumbent: 0.5"].get("cx") < points["step 2, incumbent: 0.4"].get("cx")
    assert len(list(steps.iter(f"{NS}polyline"))) == 2  # the incumbent's line and the selection's
    assert {"compile step", "dev failure rate", "incumbent (start of step)", "candidates", "3"} <= set(texts(steps))
    issues = shown["issue categories"]
    bars = marks(issues, "rect")
    assert list(bars) == ["flawed: 6", "task_changed: 3"]  # a bar per count, largest on top
    assert float(bars["flawed: 6"].get("width")) == pytest.approx(2 * float(bars["task_changed: 3"].get("width")))
    assert {"issues by category", "count", "flawed", "task_changed", "6", "3"} <= set(texts(issues))
    assert notes(shown["dev failures by rule"], "rect") == ["unchanged: 2", "lost_question: 1"]
    assert "<something> &" not in html and "&lt;something&gt; &amp;" in html  # escaped
    assert '<span class="add">+Step 5 - Keep the question' in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert "incumbent kept" not in html and "candidate 1" in html


def test_partial_run_dir_renders_without_missing_sections(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    html = build_report(run)
    assert "Compile run" in html and "<svg" not in html and "Final method" not in html
    (run / "steps").mkdir()
    (run / "steps" / "step-001.json").write_text("not json")
    assert "<svg" not in build_report(run)


def test_output_report_has_rounds_rules_lengths_and_quality(tmp_path: Path) -> None:
    source = make_output(tmp_path / "out.parquet")
    model = collect(source, embedder=HashingEmbedder())
    rounds = model.output.rounds
    assert [(r.round, r.rows, r.failed) for r in rounds] == [(1, 6, 2), (2, 4, 1), (3, 3, 1)]
    assert model.output.by_rule == {"unchanged": 4}
    assert rounds[0].after.n == 4 and rounds[0].before.n == 6
    assert rounds[0].after.parent_similarity is not None
    html = build_report(source, embedder=HashingEmbedder())
    shown = figures(html)
    assert list(shown) == ["rows per round", "failures by rule", "length distributions", "quality per round"]
    assert notes(shown["rows per round"], "rect") == ["round 1: 4 evolved", "round 1: 2 failed", "round 2: 3 evolved",
                                                      "round 2: 1 failed", "round 3: 2 evolved", "round 3: 1 failed"]
    assert {"evolved", "failed", "round", "rows"} <= set(texts(shown["rows per round"]))
    assert notes(shown["failures by rule"], "rect") == ["unchanged: 4"]
    counted: Counter[tuple[int, str]] = Counter()
    for note in notes(shown["length distributions"], "rect"):
        number, series, count = re.fullmatch(r"round (\d), (input|evolved): (\d+) instructions of [\d\u2013]+ words",
                                             note).groups()
        counted[int(number), series] += int(count)
    assert counted == {(r.round, series): len(words) for r in rounds
                       for series, words in (("input", r.original_words), ("evolved", r.evolved_words))}
    quality = shown["quality per round"]
    assert {"words per instruction (mean)", "distinct-2", "before (inputs)", "round"} <= set(texts(quality))
    for r in rounds:
        for when, report in (("before (inputs)", r.before), ("after (evolved)", r.after)):
            value = short_number(report.figures()["embedding diversity"], 3)
            assert f"embedding diversity, round {r.round}, {when}: {value}" in notes(quality, "rect")
    for text in ("Rows per round", "Failures by rule", "Length distributions", "before and after",
                 "embedding diversity", "round 3 after"):
        assert text in html
    out = write_report(source, tmp_path / "r" / "report.html", quality=False)
    assert out.exists() and list(figures(out.read_text())) == ["rows per round", "failures by rule",
                                                               "length distributions"]


def test_text_from_data_is_escaped_in_figures(tmp_path: Path) -> None:
    source = make_output(tmp_path / "out.jsonl")
    rule = "<script>alert('x')</script> & \"co\""
    source.write_text(source.read_text().replace('"unchanged"', json.dumps(rule)))
    html = build_report(source, quality=False)
    assert "<script" not in html
    chart = figures(html)["failures by rule"]  # parsed as XML: the name is text, not elements
    assert notes(chart, "rect") == [f"{rule}: 4"] and rule in texts(chart)
    assert not list(chart.iter("script")) and not list(chart.iter(f"{NS}script"))


def test_diff_escapes_and_marks_lines() -> None:
    assert "identical" in diff_html("a", "a")
    html = diff_html("keep\n<old>", "keep\n<new>")
    assert '<span class="del">-&lt;old&gt;</span>' in html and '<span class="add">+&lt;new&gt;</span>' in html
