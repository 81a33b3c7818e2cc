"""The Ray engine with a separate answer LM, on a conversation input: the local engine's rows."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest

from autoevol.data import read_rows
from autoevol.engines import ray_available, run_ray_evolve
from autoevol.lm import CallPolicy, LMSession
from autoevol.programs.evolver import Evolver
from autoevol.programs.pipeline import EvolveJob
from autoevol.testing.answer_model import ANSWER_PREFIX
from autoevol.testing.fake_openai import serve_in_subprocess

if ray_available():
    import ray
pytestmark = pytest.mark.skipif(not ray_available(), reason="ray[data] is not installed: pip install 'autoevol[ray]'")

FAST = CallPolicy(timeout=30, max_retries=2, backoff_base=0.01, backoff_cap=0.05)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_rows_carry_the_answer_models_answers_and_turns(cluster, tmp_path: Path) -> None:
    seed = tmp_path / "chat.jsonl"
    seed.write_text("".join(json.dumps({"id": f"c{i}", "conversations": [
        {"from": "human", "value": f"Explain topic {i} briefly."}, {"from": "gpt", "value": "Sure."},
        {"from": "human", "value": f"Now give an example of topic {i}."}]}) + "\n" for i in range(6)))
    with serve_in_subprocess(latency=0.005) as evol, \
            serve_in_subprocess(latency=0.005, responder="autoevol.testing.answer_model:answer_model_responder") as strong:
        summary = run_ray_evolve(seed, tmp_path / "ray.jsonl", evol_lm="openai/fake", api_base=evol.url,
                                 answer_lm="openai/strong", answer_api_base=strong.url, policy=FAST,
                                 actors=2, concurrency=2, shard_size=4)
        with LMSession(concurrency=2, policy=FAST) as session:
            lm = session.lm("openai/fake", role="evol", api_base=evol.url, api_key="test")
            answers = session.lm("openai/strong", role="answer", api_base=strong.url, api_key="test")
            with dspy.context(lm=lm):
                EvolveJob(Evolver(), concurrency=2, evol_model="openai/fake", answer_lm=answers).run(
                    seed, tmp_path / "local.jsonl")
    remote = {row["id"]: row for row in read_rows(tmp_path / "ray.jsonl")}
    local = {row["id"]: row for row in read_rows(tmp_path / "local.jsonl")}
    assert remote == local and len(remote) == 12
    assert all(row["answer"].startswith(ANSWER_PREFIX) and row["answer_model"] == "openai/strong"
               for row in remote.values())
    assert remote["c3-1:r1"]["turn"] == 1 and remote["c3-1:r1"]["root_id"] == "c3-1"
    usage = {u.role: u for u in summary.usage}
    assert usage["answer"].calls >= 12 and usage["answer"].model
