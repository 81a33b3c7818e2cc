"""Text-only signatures on llama.cpp: ChatAdapter's field markers under a grammar, not JSON."""

from __future__ import annotations

import json
from typing import Any

import dspy
import pytest

from autoevol.lm import LMSession, ManagedLM, RoutingAdapter
from autoevol.lm.grammar import has_text_outputs_only, leading_field_chars, marker_grammar
from autoevol.lm.local import default_model_path
from autoevol.programs.evolver import Evolver
from autoevol.signatures.judge import JudgeEquality
from autoevol.testing.fake_openai import FakeOpenAIServer

EVOLVED = "Write a dialogue from the facts below.\n\nFacts:\nTemp: 10 C, Loc: Beijing"


class Responder:
    """Answers a grammar request in markers (or cut off), a schema request in JSON."""

    def __init__(self, cut_off: bool = False) -> None:
        self.cut_off = cut_off
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, messages: list[dict], body: dict) -> str:
        self.bodies.append(body)
        if "grammar" in body:
            marked = f"[[ ## working_notes ## ]]\nKeep the facts.\n\n[[ ## evolved_instruction ## ]]\n{EVOLVED}"
            return marked[:30] if self.cut_off else marked + "\n\n[[ ## completed ## ]]"
        form = body.get("response_format")
        if form and "working_notes" in form["schema"]["properties"]:
            return json.dumps({"working_notes": "n", "evolved_instruction": "Write a dialogue."})
        if form:
            return json.dumps({"reasoning": "r", "verdict": "Not Equal"})
        return "plain"


def _run(responder: Responder, marked_text: bool = True) -> tuple[str, str]:
    with FakeOpenAIServer(responder=responder) as server:
        lm = ManagedLM("hosted_vllm/fake", api_base=server.url, api_key="x", structured_output="json_object",
                       marked_text=marked_text, structured_max_tokens=900, max_tokens=256)
        with dspy.context(lm=lm, adapter=RoutingAdapter()):
            evolved = Evolver()(instruction="Write a conversation based on the given facts.").evolved_instruction
            verdict = dspy.Predict(JudgeEquality)(first_instruction="a", second_instruction="b").verdict
    return evolved, verdict


def test_the_grammar_names_every_output_field_in_order():
    # that llama.cpp accepts it and decodes by it: tests/integration/test_grammar_local.py
    grammar = marker_grammar(Evolver().evolve.signature)
    notes, evolved, completed = (grammar.index(f"[[ ## {name} ## ]]")
                                 for name in ("working_notes", "evolved_instruction", "completed"))
    assert notes < evolved < completed


def test_under_a_token_limit_the_fields_before_the_last_share_half_of_it():
    signature = Evolver().evolve.signature
    assert leading_field_chars(signature, 450) == 675  # half of 450 tokens, at 3 characters a token
    assert leading_field_chars(signature, None) is None and leading_field_chars(JudgeEquality, 450) is None
    grammar = marker_grammar(signature, 675)
    notes_rule = grammar.split("[[ ## working_notes ## ]]\\n\"", 1)[1].split('"', 1)[0]
    evolved_rule = grammar.split("[[ ## evolved_instruction ## ]]\\n\"", 1)[1].split('"', 1)[0]
    assert notes_rule.strip() == "capped" and evolved_rule.strip() == "text"
    assert "capped ::= lead piece{0,674}" in grammar
    assert "capped" not in marker_grammar(signature)


def test_only_signatures_of_plain_text_outputs_qualify():
    assert has_text_outputs_only(Evolver().evolve.signature)
    assert not has_text_outputs_only(JudgeEquality)


def test_text_outputs_keep_their_lines_and_other_signatures_keep_json():
    responder = Responder()
    evolved, verdict = _run(responder)
    assert evolved == EVOLVED and verdict == "Not Equal"
    text_call, judge_call = responder.bodies
    assert "response_format" not in text_call and text_call["max_tokens"] == 256  # the caller's, not the floor
    assert "[[ ## evolved_instruction ## ]]" in text_call["grammar"]
    assert "piece{0,383}" in text_call["grammar"]  # the notes' cap follows the call's limit: 256 x 0.5 x 3
    assert "[[ ## evolved_instruction ## ]]" in text_call["messages"][-1]["content"]
    assert "grammar" not in judge_call and judge_call["response_format"]["type"] == "json_object"


def test_a_cut_off_marked_answer_is_asked_again_as_constrained_json(caplog):
    responder = Responder(cut_off=True)
    with caplog.at_level("INFO", logger="autoevol.lm.grammar"):
        evolved, _ = _run(responder)
    assert evolved == "Write a dialogue."
    # the log says what was missing, so a run's unreadable answers can be told apart
    assert "no evolved_instruction; 30 characters ending" in caplog.text
    marked, retried = responder.bodies[:2]
    assert "grammar" in marked and retried["response_format"]["type"] == "json_object"
    assert retried["max_tokens"] == 900  # JSON needs room for its closing fields


def test_without_marked_text_every_signature_is_json():
    responder = Responder()
    evolved, _ = _run(responder, marked_text=False)
    assert evolved == "Write a dialogue." and not any("grammar" in body for body in responder.bodies)


@pytest.mark.parametrize("own_model", [True, False])
def test_local_models_write_marked_text_except_the_embedded_default(monkeypatch, tmp_path, own_model):
    class Stub:
        api_base = "http://127.0.0.1:9"
        slots = 1

    monkeypatch.setattr(LMSession, "_server", lambda self, gguf: Stub())
    gguf = tmp_path / "own.gguf"
    gguf.write_bytes(b"GGUF")
    with LMSession() as session:
        lm = session.lm(f"local:{gguf}" if own_model else "local", role="evol")
    assert lm.marked_text is own_model
    assert default_model_path().is_file()
