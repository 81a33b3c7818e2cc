"""Constrained outputs: schemas from signatures, dialects, and the adapter that routes by LM."""

from __future__ import annotations

import json
from typing import Any

import dspy
import pytest

from autoevol.lm import LMSession, ManagedLM, RoutingAdapter, StructuredAdapter, output_schema, response_format
from autoevol.lm.spec import LOCAL_STRUCTURED_MAX_TOKENS
from autoevol.lm.structured import install_routing_adapter, structured_dialect
from autoevol.programs.evolver import Evolver
from autoevol.signatures.analyze import AnalyzeTrajectory, TrajectoryIssue
from autoevol.signatures.judge import JudgeEquality
from autoevol.testing.fake_openai import FakeOpenAIServer, chat_adapter_responder


def _schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    form = body.get("response_format")
    if not form:
        return None
    return form["schema"] if form["type"] == "json_object" else form["json_schema"]["schema"]


def _value(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    if "$ref" in schema:
        return _value(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "enum" in schema:
        return schema["enum"][-1]
    if schema.get("type") == "array":
        return [_value(schema["items"], defs)]
    if schema.get("type") == "object":
        return {name: _value(part, defs) for name, part in schema["properties"].items()}
    return "Rewrite: add two constraints." if schema.get("type") == "string" else None


class Recorder:
    """A fake server's responder: follows the request's schema when there is one, else chat format."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, messages: list[dict], body: dict) -> str:
        self.bodies.append(body)
        schema = _schema_of(body)
        if schema is None:
            return chat_adapter_responder(messages, body)
        return json.dumps(_value(schema, schema.get("$defs", {})))


@pytest.fixture
def server():
    recorder = Recorder()
    with FakeOpenAIServer(responder=recorder) as fake:
        fake.recorder = recorder
        yield fake


def _lm(server, dialect: str | None) -> ManagedLM:
    return ManagedLM("hosted_vllm/fake", api_base=server.url, api_key="x", structured_output=dialect,
                     max_tokens=256)


def test_output_schema_follows_the_signature_fields_in_order():
    schema = output_schema(Evolver().evolve.signature)
    assert list(schema["properties"]) == ["working_notes", "evolved_instruction"]
    assert schema["required"] == ["working_notes", "evolved_instruction"]
    assert schema["additionalProperties"] is False
    assert all(part["type"] == "string" for part in schema["properties"].values())


def test_literal_and_pydantic_fields_become_closed_schemas():
    judge = output_schema(JudgeEquality)
    assert judge["properties"]["verdict"]["enum"] == ["Equal", "Not Equal"]
    analysis = output_schema(AnalyzeTrajectory)
    issue = analysis["$defs"]["TrajectoryIssue"]
    assert issue["required"] == list(TrajectoryIssue.model_fields)
    assert issue["additionalProperties"] is False
    assert "answered_instead" in issue["properties"]["category"]["enum"]


def test_the_two_dialects_carry_the_same_schema():
    local = response_format(JudgeEquality, "json_object")
    openai = response_format(JudgeEquality, "json_schema")
    assert local["type"] == "json_object" and openai["type"] == "json_schema"
    assert local["schema"] == openai["json_schema"]["schema"] and openai["json_schema"]["strict"] is True
    with pytest.raises(ValueError, match="dialect"):
        response_format(JudgeEquality, "grammar")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dialect"):
        ManagedLM("hosted_vllm/x", structured_output="yaml")


@pytest.mark.parametrize("dialect", ["json_object", "json_schema"])
def test_signature_calls_of_a_structured_lm_are_constrained_and_parsed(server, dialect):
    lm = _lm(server, dialect)
    with dspy.context(lm=lm, adapter=RoutingAdapter()):
        evolved = Evolver()(instruction="Add 2 and 3.")
        verdict = dspy.Predict(JudgeEquality)(first_instruction="a", second_instruction="b").verdict
        analysis = dspy.Predict(AnalyzeTrajectory)(method="m", trajectory="[]")
    assert evolved.evolved_instruction == "Rewrite: add two constraints."
    assert verdict == "Not Equal"
    assert isinstance(analysis.issues[0], TrajectoryIssue) and analysis.issues[0].category == "other"
    sent = server.recorder.bodies
    assert [body["response_format"]["type"] for body in sent] == [dialect] * 3
    assert list(_schema_of(sent[0])["properties"]) == ["working_notes", "evolved_instruction"]


def test_plain_chat_calls_never_get_a_response_format(server):
    lm = _lm(server, "json_object")
    with dspy.context(lm=lm, adapter=RoutingAdapter()):
        reply = lm(messages=[{"role": "user", "content": "Write a haiku about rain."}])
    assert reply and "response_format" not in server.recorder.bodies[-1]


def test_other_lms_keep_the_chat_format(server):
    lm = _lm(server, None)
    with dspy.context(lm=lm, adapter=RoutingAdapter()):
        evolved = Evolver()(instruction="Add 2 and 3.").evolved_instruction
    assert evolved.startswith("Add 2 and 3.")
    body = server.recorder.bodies[-1]
    assert "response_format" not in body
    assert "[[ ## evolved_instruction ## ]]" in body["messages"][-1]["content"]


def test_structured_calls_get_at_least_the_lm_floor_of_output_tokens(server):
    lm = _lm(server, "json_object")
    lm.structured_max_tokens = 1500
    with dspy.context(lm=lm, adapter=StructuredAdapter("json_object")):
        Evolver()(instruction="Add 2 and 3.")
        lm(messages=[{"role": "user", "content": "hi"}])
    evolve, plain = server.recorder.bodies[-2:]
    assert evolve["max_tokens"] == 1500 and plain["max_tokens"] == 256


def test_session_turns_structured_output_on_for_local_models_and_on_request(monkeypatch, server, tmp_path):
    class Stub:
        api_base = server.url
        slots = 1

    monkeypatch.setattr(LMSession, "_server", lambda self, gguf: Stub())
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    with LMSession() as session:
        local = session.lm(f"local:{gguf}", role="evol")
        remote = session.lm("hosted_vllm/big", role="judge", api_base=server.url)
        asked = session.lm("hosted_vllm/big", role="optimizer", api_base=server.url, structured_output=True)
        off = session.lm(f"local:{gguf}", role="evol", structured_output=False)
    assert structured_dialect(local) == "json_object"
    assert local.structured_max_tokens == LOCAL_STRUCTURED_MAX_TOKENS
    assert structured_dialect(remote) is None and structured_dialect(off) is None
    assert structured_dialect(asked) == "json_schema"
    with LMSession(structured_output=True) as session:
        assert structured_dialect(session.lm("hosted_vllm/big", role="evol", api_base=server.url)) == "json_schema"


def test_a_user_chosen_adapter_is_kept():
    with dspy.context(adapter=dspy.JSONAdapter()):
        assert install_routing_adapter() is False
    with dspy.context(adapter=RoutingAdapter()):
        assert install_routing_adapter() is True


def test_raw_newlines_inside_constrained_strings_are_read_whole():
    # what llama.cpp's grammar let SmolLM2 write for "What is 15 percent of 80?"
    completion = ('{"working_notes": "15.00, evolving: 80}\n```\nThe JSON object is as follows:\n{\n  " ,'
                  '"evolved_instruction": "20.00 }\n```\nThis is the output.\n{" }')
    fields = StructuredAdapter("json_object").parse(Evolver().evolve.signature, completion)
    assert fields["working_notes"].endswith("as follows:\n{\n  ")
    assert fields["evolved_instruction"].startswith("20.00 }")
