"""An endpoint from the environment is the same LM as one given with ``--api-base``, on the same engine."""

from __future__ import annotations

import pytest
from dspy.clients import execution
from dspy.clients.engines.litellm_engine import LiteLLMEngine
from dspy.clients.engines.lm15_engine import LM15Engine

from autoevol.lm import LMSession
from autoevol.lm.spec import endpoint_variables
from autoevol.testing.fake_openai import FakeOpenAIServer

URL = "http://127.0.0.1:9/v1"
GATEWAY_VARIABLES = ("OPENAI_BASE_URL", "OPENAI_API_BASE", "HOSTED_VLLM_API_BASE", "HOSTED_VLLM_BASE_URL")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in GATEWAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


@pytest.mark.parametrize("model, variable", [("openai/fake", "OPENAI_BASE_URL"), ("openai/fake", "OPENAI_API_BASE"),
                                             ("hosted_vllm/fake", "HOSTED_VLLM_API_BASE")])
def test_an_endpoint_in_the_environment_builds_the_lm_of_the_flag(monkeypatch, model, variable):
    with LMSession() as session:
        flagged = session.lm(model, role="evol", api_base=URL)
    monkeypatch.setenv(variable, URL)
    with LMSession() as session:
        from_env = session.lm(model, role="evol")
    assert variable in endpoint_variables(model)
    assert from_env.kwargs == flagged.kwargs and from_env.kwargs["api_base"] == URL
    assert from_env.limiter.maximum == flagged.limiter.maximum


def test_the_flag_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8/v1")
    with LMSession() as session:
        assert session.lm("openai/fake", role="evol", api_base=URL).kwargs["api_base"] == URL


@pytest.mark.parametrize("variable", ["OPENAI_BASE_URL", "OPENAI_API_BASE"])
def test_a_gateway_variable_keeps_every_role_on_the_native_engine(monkeypatch, variable):
    """DSPy alone would send these LMs through LiteLLM (a client per call, ~4x the CPU)."""
    with FakeOpenAIServer() as server, FakeOpenAIServer() as other:
        monkeypatch.setenv(variable, server.url)
        with LMSession() as session:
            evol = session.lm("openai/fake", role="evol")
            optimizer = session.lm("openai/fake", role="optimizer", api_base=other.url)
            for lm in (evol, optimizer):
                assert execution.select_backend(lm).native
                for question in ("one", "two", "three"):
                    assert lm(messages=[{"role": "user", "content": question}])
                engines = list(lm._engine_store.values())
                assert len(engines) == 1 and isinstance(engines[0], LM15Engine)
        assert server.stats.ok == 3 and other.stats.ok == 3


def test_a_request_the_native_engine_cannot_carry_still_falls_back(monkeypatch):
    """The pre-flight fallback of DSPy's selection is kept: a ``json_object`` schema goes to LiteLLM."""
    monkeypatch.setenv("OPENAI_BASE_URL", URL)
    with LMSession() as session:
        lm = session.lm("openai/fake", role="evol")
    call = execution.prepare(lm, None, [{"role": "user", "content": "hi"}],
                             {"response_format": {"type": "json_object", "schema": {"type": "object"}}})
    backend = execution._select_engine(lm, call, False)[0]
    assert isinstance(backend, LiteLLMEngine)
