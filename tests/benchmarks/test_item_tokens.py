"""benchmarks/item_tokens.py: the token split of recorded items, and answers replayed at smaller caps
against a fake endpoint whose answers turn into short apologies below a cap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoevol.testing.fake_openai import FakeOpenAIServer

HERE = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(HERE))

from item_tokens import CapResult, TokenSplit, cap_table, token_split  # noqa: E402

SCRIPT = HERE / "item_tokens.py"
LONG_ANSWER = " ".join(["The answer works through every step of the task with care and detail."] * 12)


def record(notes: str, evolved: str, answer: str | None, evol_tokens: int, seconds: float) -> dict:
    verdict = {"failed": answer is None, "rule": "unchanged" if answer is None else None}
    return {"key": evolved, "method": "e0", "outcome": {"original": "Sort a list of numbers.", "evolved": evolved,
                                                       "notes": notes, "answer": answer, "verdict": verdict},
            "seconds": seconds, "usage": {"evol": {"calls": 2, "output_tokens": evol_tokens}}}


def test_the_measured_output_tokens_are_shared_out_by_the_characters_of_each_part():
    lines = [record("n" * 100, "r" * 100, "a" * 200, 300, 10.0), record("n" * 100, "r" * 100, None, 100, 4.0)]
    split = token_split(lines)
    assert (split.items, split.answered) == (2, 1)
    assert split.evol_output == 200 and split.seconds_per_item == 7.0
    # 600 characters carry 400 tokens: notes 200 chars, rewrite 200, answer 200, each 1/3
    assert split.notes == pytest.approx(200 / 3) and split.rewrite == pytest.approx(200 / 3)
    assert split.answer == pytest.approx(200 / 3)


def apology_below(cap: int):
    """Answers in full when allowed ``cap`` tokens or more, with a short apology otherwise."""

    def respond(messages: list[dict], body: dict) -> str:
        limit = body.get("max_tokens") or body.get("max_completion_tokens") or 10_000
        return LONG_ANSWER if int(limit) >= cap else "I'm sorry, I cannot do that."

    return respond


def test_replayed_caps_report_the_verdicts_that_change(tmp_path):
    records = tmp_path / "run" / "quality.e0.items.jsonl"
    records.parent.mkdir()
    evolved = [f"Sort a list of {n} numbers in descending order and explain each step of the method." for n in (3, 4, 5)]
    lines = [record("notes", text, LONG_ANSWER, 300, 10.0) for text in evolved] + [record("n", "r", None, 80, 3.0)]
    records.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with FakeOpenAIServer(responder=apology_below(150)) as server:
        done = subprocess.run([sys.executable, str(SCRIPT), "--records", str(records), "--lm", "openai/fake",
                               "--api-base", server.url, "--answer-caps", "200", "150", "80"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path,
                              env={**os.environ, "OPENAI_API_KEY": "sk-test-not-a-secret"})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| ")}
    assert "3 answered" not in done.stdout  # the item whose evolution failed is not answered again
    assert rows["200"].split("|")[5].strip() == "0 of 3"
    assert rows["150"].split("|")[5].strip() == "0 of 3"
    assert rows["80"].split("|")[5].strip() == "3 of 3"  # the apologies fail the sorry_short rule


def test_a_missing_records_file_is_one_line_and_exit_1(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--records", str(tmp_path / "none.jsonl")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip() == f"error: no records file {tmp_path / 'none.jsonl'}"


def test_records_of_another_kind_are_refused_with_the_file_and_record(tmp_path):
    other = tmp_path / "initial.items.jsonl"
    other.write_text(json.dumps({"key": "k", "failed": False}) + "\n")
    done = subprocess.run([sys.executable, str(SCRIPT), "--records", str(other)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and done.stderr.strip().startswith(f"error: {other}: record 1 has no outcome")


def test_items_per_hour_replace_the_answer_time_of_the_cap_the_records_were_made_with():
    # 10 items, 5 answered, 30 s per item recorded with answers capped at 200 (10 s each)
    split = TokenSplit(items=10, seconds_per_item=30.0, evol_output=0, notes=0, rewrite=0, answer=0, judge_output=0,
                       answered=5)
    results = [CapResult(cap, 5, tokens, seconds, [None] * 5)
               for cap, tokens, seconds in ((400, 220, 20.0), (200, 150, 10.0), (100, 90, 6.0))]
    rows = [line.split("|") for line in cap_table(results, split, recorded_cap=200).splitlines()[2:]]
    per_hour = {int(row[1]): int(row[6]) for row in rows}
    assert per_hour == {400: round(3600 / 35), 200: 120, 100: round(3600 / 28)}


def test_a_recorded_cap_that_was_not_replayed_is_refused(tmp_path):
    records = tmp_path / "run.items.jsonl"
    records.write_text(json.dumps(record("n", "Sort it.", LONG_ANSWER, 100, 30.0)) + "\n")
    done = subprocess.run([sys.executable, str(SCRIPT), "--records", str(records), "--lm", "openai/none",
                           "--answer-caps", "200", "100", "--recorded-cap", "450"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip() == "error: --recorded-cap 450 is not one of --answer-caps"
