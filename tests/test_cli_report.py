"""``autoevol report``, ``export`` and ``compare`` through the installed entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoevol.data import read_rows
from autoevol.programs.evolver import Evolver
from autoevol.testing.fake_openai import FakeOpenAIServer, chat_adapter_responder
from tests.report.test_report import figures, make_run
from tests.test_cli_evolve_method import RecordingResponder, operations_seen
from tests.test_export import make_output


def autoevol(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [shutil.which("autoevol") or "autoevol", *map(str, args)]
    env = {**os.environ, "OPENAI_API_KEY": "test", "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A fake server of this test's own: its counts hold this test's requests only."""
    with FakeOpenAIServer() as fake:
        yield fake


def test_report_of_a_run_and_of_an_output(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    result = autoevol("report", run, "--out", tmp_path / "run.html")
    assert result.returncode == 0, result.stderr
    assert len(figures((tmp_path / "run.html").read_text())) == 3
    again = autoevol("report", run, "--out", tmp_path / "run.html")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    output = make_output(tmp_path / "out.jsonl")
    result = autoevol("report", output, "--out", tmp_path / "out.html", "--no-quality")
    assert result.returncode == 0, result.stderr
    assert "Length distributions" in (tmp_path / "out.html").read_text()
    missing = autoevol("report", tmp_path / "nope.jsonl", "--out", tmp_path / "x.html")
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr and "Traceback" not in missing.stderr


def test_export_mixed_with_seed_and_card(tmp_path: Path) -> None:
    output = make_output(tmp_path / "out.jsonl")
    target = tmp_path / "train"
    result = autoevol("export", output, "--to", target, "--mode", "mixed", "--include-seed", "--card", "--no-quality")
    assert result.returncode == 0, result.stderr
    rows = list(read_rows(target))
    assert {r["round"] for r in rows} == {0, 1, 2, 3} and len(rows) == 6 + 4 + 3 + 2
    card = (target / "README.md").read_text()
    assert card.startswith("---\n") and "Evolving method" in card and "Failures by rule" in card
    separate = autoevol("export", output, "--to", tmp_path / "rounds", "--card", "--no-quality")
    assert separate.returncode == 0, separate.stderr
    assert sorted(p.name for p in (tmp_path / "rounds").iterdir()) == [
        "README.md", "round-1.parquet", "round-2.parquet", "round-3.parquet"]
    bad = autoevol("export", output, "--to", tmp_path / "x.jsonl", "--mode", "both")
    assert bad.returncode == 2 and "--mode" in bad.stderr
    hub = autoevol("export", output, "--to", tmp_path / "h.jsonl", "--mode", "mixed", "--push-to-hub", "me/none")
    assert hub.returncode == 2 and "me/none" in hub.stderr and "Traceback" not in hub.stderr


COMPILED_METHOD = "Rewrite the instruction so that it needs one more reasoning step."


def worse_for_odd_items(messages: list[dict], body: dict) -> str:
    """The default answers, except that the compiled method's evolutions of odd items are unparseable."""
    text = json.dumps(messages)
    if COMPILED_METHOD in text and any(f"Add {i} and {i + 2}," in text for i in range(1, 12, 2)):
        return "no fields here"
    return chat_adapter_responder(messages, body)


def test_compare_e0_with_a_file_and_the_baseline(tmp_path: Path) -> None:
    data = tmp_path / "held.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Add {i} and {i + 2}, then explain why the sum is even "
                                                       f"or odd."}) + "\n" for i in range(12)))
    compiled = Evolver(COMPILED_METHOD).save(tmp_path / "c.json")
    out = tmp_path / "cmp.json"
    with FakeOpenAIServer(responder=worse_for_odd_items) as server:
        result = autoevol("compare", "e0", compiled, "--data", data, "--baseline", "evol-instruct",
                          "--evol-lm", "openai/fake", "--api-base", server.url, "--no-quality", "--out", out,
                          "--concurrency", "4")
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["items"] == 12
    assert list(summary["evolvers"]) == ["e0", "c", "evol-instruct"]
    assert [d["other"] for d in summary["differences"]] == ["c", "evol-instruct"]
    worse, baseline = summary["differences"]
    # c fails exactly the 6 odd items that e0 evolves: +0.5, and the interval excludes no difference
    assert worse["diff"] == pytest.approx(0.5) and 0.0 < worse["low"] <= worse["diff"] <= worse["high"]
    # the baseline fails none of the items e0 fails none of: no difference, and no spread around it
    assert summary["evolvers"]["evol-instruct"]["failed"] == 0
    assert (baseline["diff"], baseline["low"], baseline["high"]) == (0.0, 0.0, 0.0)
    assert "difference vs e0" in result.stderr + result.stdout
    lonely = autoevol("compare", "e0", "--data", data)
    assert lonely.returncode == 2 and "two evolvers" in lonely.stderr


def test_compare_takes_methods_by_name(tmp_path: Path) -> None:
    data = tmp_path / "held.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Add {i} and {i + 2}, then explain."}) + "\n"
                            for i in range(6)))
    out, responder = tmp_path / "cmp.json", RecordingResponder()
    with FakeOpenAIServer(responder=responder) as server:
        result = autoevol("compare", "e0", "deepen", "evol-instruct", "--data", data, "--evol-lm", "openai/fake",
                          "--api-base", server.url, "--no-quality", "--out", out)
        assert result.returncode == 0, result.stderr
        assert list(json.loads(out.read_text())["evolvers"]) == ["e0", "deepen", "evol-instruct"]
        assert "deepen" in operations_seen(responder.system_messages)
        asked = server.stats.requests
        unknown = autoevol("compare", "e0", "deeper", "--data", data, "--evol-lm", "openai/fake",
                           "--api-base", server.url)
        assert server.stats.requests == asked  # stopped before any call
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "deeper: no such evolver file, nor a method name" in unknown.stderr and "deepen" in unknown.stderr


def test_report_measures_quality_by_default_and_tags_with_a_tagger_lm(tmp_path: Path, server) -> None:
    output = make_output(tmp_path / "out.jsonl")
    plain = autoevol("report", output, "--out", tmp_path / "plain.html")
    assert plain.returncode == 0, plain.stderr
    html = (tmp_path / "plain.html").read_text()
    assert "Complexity and diversity" in html and "embedding diversity" in html  # WordLlama, offline
    assert "tag complexity" not in html  # no tagger: no tag figures
    assert server.stats.requests == 0  # no tagger, no LM
    tagged = autoevol("report", output, "--out", tmp_path / "tagged.html", "--tagger-lm", "openai/fake",
                      "--api-base", server.url)
    assert tagged.returncode == 0, tagged.stderr
    html = (tmp_path / "tagged.html").read_text()
    assert "tag complexity" in html and "tag diversity" in html
    instructions = {row["original"] for row in read_rows(output)} | {row["evolved"] for row in read_rows(output)
                                                                        if row["evolved"]}
    assert server.stats.requests >= len(instructions)  # every instruction was sent to be tagged


def test_export_dedup_drops_the_near_duplicate(tmp_path: Path) -> None:
    output = make_output(tmp_path / "out.jsonl", duplicate=True)
    full = autoevol("export", output, "--to", tmp_path / "all.jsonl", "--mode", "mixed", "--no-quality")
    assert full.returncode == 0, full.stderr
    deduped = autoevol("export", output, "--to", tmp_path / "dedup.jsonl", "--mode", "mixed", "--dedup",
                       "--no-quality")
    assert deduped.returncode == 0, deduped.stderr
    every, kept = list(read_rows(tmp_path / "all.jsonl")), list(read_rows(tmp_path / "dedup.jsonl"))
    dropped = len(every) - len(kept)
    assert dropped >= 1 and f"duplicates dropped: {dropped}" in deduped.stderr
    texts = [row["instruction"] for row in kept]
    assert len(set(texts)) == len(texts)
    assert {row["id"] for row in kept} < {row["id"] for row in every}


def judge_says_lost_task(messages: list[dict], body: dict) -> str:
    """A judge LM that finds every rewrite off its task."""
    return "[[ ## verdict ## ]]\nlost_task\n\n[[ ## reason ## ]]\nThe rewrite drops the question.\n\n[[ ## completed ## ]]"


def test_compare_measures_with_the_judge_and_rules_it_is_given(tmp_path: Path) -> None:
    data = tmp_path / "held.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Add {i} and {i + 2}, then explain why the sum is even "
                                                       f"or odd."}) + "\n" for i in range(6)))
    out = tmp_path / "cmp.json"
    with FakeOpenAIServer(responder=chat_adapter_responder) as evol, \
            FakeOpenAIServer(responder=judge_says_lost_task) as judge:
        common = ["compare", "e0", "--data", data, "--baseline", "evol-instruct", "--evol-lm", "openai/fake",
                  "--api-base", evol.url, "--no-quality"]
        judged = autoevol(*common, "--judge-lm", "openai/judge", "--judge-api-base", judge.url, "--out", out)
        assert judged.returncode == 0, judged.stderr
        summary = json.loads(out.read_text())
        assert summary["evolvers"]["e0"]["by_rule"].get("judge_lost_task", 0) > 0 and judge.stats.requests > 0
        unknown = autoevol(*common, "--disable-rule", "no_such_rule")
    assert unknown.returncode == 2 and "no_such_rule" in unknown.stderr and "Traceback" not in unknown.stderr
