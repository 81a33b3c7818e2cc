"""Repeatable replies from the embedded server: with one slot and no prompt cache, identical
temperature-0 requests get identical replies whatever the server did before them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autoevol.lm import LocalServer
from autoevol.lm.local import default_model_path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import local_determinism  # noqa: E402

pytestmark = pytest.mark.integration

PROMPTS = ["Write a haiku about rivers.", "List three prime numbers and say why each is prime.",
           "Explain what a hash table is to a child."]


def test_one_slot_without_prompt_cache_replies_the_same_to_the_same_request(leftover_llama_servers):
    trial = local_determinism.trial(default_model_path(), 1, False, PROMPTS, max_tokens=24)
    assert trial.identical == trial.prompts == len(PROMPTS)  # sent twice, in two orders
    assert not leftover_llama_servers()


def test_a_joined_server_keeps_its_prompt_cache_setting_and_the_benchmark_refuses_it():
    with LocalServer(slots=1, prompt_cache=False):
        joined = LocalServer(prompt_cache=True).start()
        try:
            assert not joined.started_here and joined.prompt_cache is False
        finally:
            joined.stop()
        with pytest.raises(SystemExit, match="another job runs a llama.cpp server"):
            local_determinism.trial(default_model_path(), 1, False, PROMPTS, max_tokens=8)
