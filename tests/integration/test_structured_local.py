"""Constrained outputs on the real embedded server: the schema holds, every row is judged on content."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import dspy
import pytest

from autoevol.lm import LMSession, response_format
from autoevol.lm.grammar import marker_grammar
from autoevol.programs.evolver import Evolver
from autoevol.signatures.analyze import AnalyzeTrajectory
from autoevol.signatures.judge import JudgeEquality

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed.jsonl"
MIXED = Path(__file__).parent / "data" / "mixed40.jsonl"
#: Rules that say nothing about the content of a rewrite.
NOT_CONTENT = {"unparseable", "lm_error", "bad_input"}


def test_the_server_cannot_leave_the_schema(tmp_path):
    """A request that asks for prose still gets a JSON object of exactly the signature's fields."""
    with LMSession(server_log_dir=tmp_path) as session:
        lm = session.lm("local", role="judge", max_tokens=256)
        prose = [{"role": "user", "content": "Write a short poem about autumn leaves. Do not use JSON."}]
        judge = json.loads(lm(messages=prose, response_format=response_format(JudgeEquality, "json_object"))[0])
        # llama.cpp's JSON grammar allows a newline and indentation between tokens, and there greedy
        # SmolLM2 repeats characters inside a string until the limit; a stronger repetition penalty
        # lets it close the object, which this test needs in order to read it whole (measured on the
        # seven-category issue list: 1.3 ran past 256 and 512 tokens, 1.5 closed it, 1.8 did not)
        analysis = json.loads(lm(messages=prose, response_format=response_format(AnalyzeTrajectory, "json_object"),
                                 extra_body={"repeat_penalty": 1.5})[0])
        free = lm(messages=prose)[0]
    assert set(judge) == {"verdict"} and judge["verdict"] in ("Equal", "Not Equal")
    assert list(analysis) == ["issues", "feedback"] and isinstance(analysis["feedback"], str)
    assert all(set(issue) == {"case_id", "category", "reason"} for issue in analysis["issues"])
    assert not free.lstrip().startswith("{")  # without a schema the model writes what it likes


def test_the_server_decodes_by_the_marker_grammar(tmp_path):
    """llama.cpp accepts the grammar of marked text and its answer starts with the first marker."""
    with LMSession(server_log_dir=tmp_path) as session:
        lm = session.lm("local", role="evol", max_tokens=24)
        grammar = marker_grammar(Evolver().evolve.signature)
        prose = [{"role": "user", "content": "Write one short sentence about rain."}]
        answer = lm(messages=prose, extra_body={"grammar": grammar})[0]
    assert answer.startswith("[[ ## working_notes ## ]]\n") and len(answer) > len("[[ ## working_notes ## ]]\n")


def test_a_token_limit_leaves_the_last_field_room(tmp_path):
    """Under the marker grammar SmolLM2 writes its notes until the limit; the cap moves it on to the
    evolved instruction after about 40 characters."""
    with LMSession(server_log_dir=tmp_path) as session:
        lm = session.lm("local", role="evol", max_tokens=96)
        grammar = marker_grammar(Evolver().evolve.signature, leading_chars=40)
        prose = [{"role": "user", "content": "Think aloud at length about rain, then write one sentence about it."}]
        answer = lm(messages=prose, extra_body={"grammar": grammar})[0]
        uncapped = lm(messages=prose, extra_body={"grammar": marker_grammar(Evolver().evolve.signature)})[0]
    notes, evolved = answer.removeprefix("[[ ## working_notes ## ]]\n").split("\n\n[[ ## evolved_instruction ## ]]\n")
    assert 0 < len(notes) <= 4 * 40 and evolved.strip()  # a piece of the text rule is 1 to 4 characters
    assert "[[ ## evolved_instruction ## ]]" not in uncapped  # what the cap prevents, on this prompt


def test_signature_calls_on_the_embedded_model_always_parse():
    with LMSession() as session:
        lm = session.lm("local", role="judge", max_tokens=64)
        with dspy.context(lm=lm):
            verdict = dspy.Predict(JudgeEquality)(first_instruction="Add 2 and 3.",
                                                  second_instruction="Add 2 and 3, then square the sum.").verdict
    assert verdict in ("Equal", "Not Equal")


@pytest.mark.parametrize("data", [SEED, MIXED], ids=["seed", "mixed40"])
def test_no_row_is_unparseable_and_every_failure_names_its_content_rule(tmp_path, data, leftover_llama_servers):
    out = tmp_path / "evolved.jsonl"
    result = subprocess.run(["autoevol", "evolve", str(data), "--out", str(out)], capture_output=True, text=True,
                            timeout=3600, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"})
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == sum(1 for line in data.read_text().splitlines() if line.strip())
    for row in rows:
        assert row["failed"] or row["evolved"], row
        if row["failed"]:
            assert row["rule"] not in NOT_CONTENT and row["reason"], row
    assert "sample rows" in result.stderr and "evolve summary" in result.stderr
    assert not leftover_llama_servers()

