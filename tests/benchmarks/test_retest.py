"""benchmarks/retest.py against a fake endpoint: a method measured again on recorded items, and the
verdicts that changed counted item by item."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from autoevol.lm import LMSession
from autoevol.programs.evolver import Evolver
from autoevol.programs.responder import Responder
from tests.test_cli_compile_gepa import write_items

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import quality  # noqa: E402
import retest  # noqa: E402
from quality_eval import evaluate_method, read_lines  # noqa: E402



def arguments(server, data: Path, recorded: Path) -> list[str]:
    return ["--lm", "openai/fake", "--api-base", server.url, "--seed-file", str(data), "--held-out", "10",
            "--threads", "2", "--judge-lm", "none", "--retest", str(recorded)]


def record_e0(args, path: Path) -> None:
    """e_0's held-out outcomes, measured as head_to_head.py measures them."""
    _, _, held_out = quality.split_seed_file(args)
    with LMSession(concurrency=2) as session:
        evol = session.lm(args.lm, role="evol", api_base=args.api_base, max_tokens=args.max_tokens)
        detector = quality.build_detector(session, args)
        evaluate_method("e0", "e_0", Evolver(), held_out, session=session, lm=evol, responder=Responder(),
                        detector=detector, settings=quality.outcome_settings(args, detector, evol), path=path,
                        resume=False, threads=2)


def test_the_verdicts_that_changed_are_counted_item_by_item(tmp_path, server, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    data, recorded = write_items(tmp_path / "seeds.jsonl", 40), tmp_path / "quality.e0.items.jsonl"
    argv = arguments(server, data, recorded)
    record_e0(retest.parser().parse_args(argv), recorded)
    lines = list(read_lines(recorded))
    failed = [line for line in lines if line["outcome"]["verdict"]["failed"]]
    passed = [line for line in lines if not line["outcome"]["verdict"]["failed"]]
    assert failed and len(passed) >= 2
    # the recorded run "saw" two passing items fail: the retest, in the same world, must disagree on exactly them
    for line in passed[:2]:
        line["outcome"]["verdict"].update(failed=True, rule="unchanged")
    failed[0]["outcome"]["notes"] = "notes the retest will not write"  # same verdict, other text
    recorded.write_text("".join(json.dumps(line) + "\n" for line in lines))

    retest.main(argv)
    out = capsys.readouterr().out
    assert f"| retest (`retest.quality.e0.items.jsonl`) | {len(failed)} / 10 |" in out
    assert f"| {len(failed) + 2} / 10 |" in out
    assert "verdicts changed: 2 of 10 items (20%): 2 failed only in the recorded run, 0 only in the retest" in out
    for line in passed[:2]:
        assert f"{line['id']}: unchanged -> passed" in out
    assert "same working notes, rewrite and answer, word for word: 9 of 10" in out
    assert re.search(r"LM calls per item \(.*\): \d+\.\d recorded, \d+\.\d in the retest; output tokens", out)
    assert len(list(read_lines(tmp_path / "retest.quality.e0.items.jsonl"))) == 10
    assert "sk-test-not-a-secret" not in (tmp_path / "retest.quality.e0.items.jsonl").read_text()

    only = arguments(server, data, recorded) + ["--items", "4"]  # resumed: no item measured twice
    retest.main(only)
    assert "on 4 items" in capsys.readouterr().out
    assert len(list(read_lines(tmp_path / "retest.quality.e0.items.jsonl"))) == 10

    retest.main(arguments(server, data, tmp_path / "retest.quality.e0.items.jsonl"))  # the retest, once more
    assert "verdicts changed: 0 of 10 items" in capsys.readouterr().out  # the fake world is deterministic

    # a labelled retest measures anew beside the earlier ones (none of them is taken as its own)
    before = server.stats.requests
    retest.main(arguments(server, data, recorded) + ["--label", "again", "--items", "3"])
    assert "| retest (`again.quality.e0.items.jsonl`) |" in capsys.readouterr().out
    assert server.stats.requests - before >= 3 + 1  # the probe, and each item's evolution at least
    assert len(list(read_lines(tmp_path / "again.quality.e0.items.jsonl"))) == 3


def test_items_recorded_under_other_settings_are_refused(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    data, recorded = write_items(tmp_path / "seeds.jsonl", 40), tmp_path / "quality.e0.items.jsonl"
    record_e0(retest.parser().parse_args(arguments(server, data, recorded)), recorded)
    with pytest.raises(SystemExit, match="measured under other settings"):
        retest.main(arguments(server, data, recorded) + ["--answer-max-tokens", "50"])
    assert not (tmp_path / "retest.quality.e0.items.jsonl").exists()
    retest.main(arguments(server, data, recorded) + ["--answer-max-tokens", "50", "--other-settings", "--items", "2"])
    assert len(list(read_lines(tmp_path / "retest.quality.e0.items.jsonl"))) == 2  # what the change does, measured
    assert "e0 measured under changed settings or code on 2 items" in capsys.readouterr().out
