"""The Ray engine: same rows as the local engine, killed actors, resume, global budgets.

Every test starts a small local Ray cluster (one per module) and a fake OpenAI-compatible server
in a subprocess whose answers depend only on the request, so both engines must agree per id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dspy
import pytest

from autoevol.data import DataError, read_rows
from autoevol.engines import ray_available, run_ray_evolve
from autoevol.engines.shards import ShardStore
from autoevol.lm import CallPolicy, LMSession
from autoevol.programs.demonstration import Demo
from autoevol.programs.evolver import Evolver
from autoevol.programs.pipeline import EvolveJob
from autoevol.testing.fake_openai import (
    SubprocessServer, chat_adapter_responder, parse_output_fields, serve_in_subprocess,
)

if ray_available():
    import ray
    import ray.data
# a skip per test (refused under CI by tests/conftest.py), not a module skipped at import
pytestmark = pytest.mark.skipif(not ray_available(), reason="ray[data] is not installed: pip install 'autoevol[ray]'")

FAST = CallPolicy(timeout=30, max_retries=2, backoff_base=0.01, backoff_cap=0.05)
RESPONDER = "tests.engines.test_ray_engine:mixed_responder"


def mixed_responder(messages: list[dict], body: dict) -> str:
    """The default deterministic responder, except that some rows fail in known ways."""
    text, wanted = chat_adapter_responder(messages, body), parse_output_fields(messages)
    if "evolved_instruction" in wanted and "garble" in json.dumps(messages):
        return "no fields here at all"
    if not wanted and "refuse" in json.dumps(messages):  # the answer to an evolution: a plain chat message
        return "Sorry, I cannot do that."
    return text


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def server() -> Iterator[SubprocessServer]:
    """A fake server of this test's own: its counts hold this test's requests only."""
    with serve_in_subprocess(latency=0.005, responder=RESPONDER) as running:
        yield running


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    rows = []
    for i in range(23):
        kind = "refuse" if i % 7 == 3 else "garble" if i % 11 == 5 else "plain"
        rows.append({"id": f"q{i}", "instruction": f"Explain {kind} topic number {i} in two sentences."})
    rows.append({"id": "blank", "instruction": "   "})
    path = tmp_path / "seed.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def local_rows(seed: Path, out: Path, url: str, rounds: int = 1) -> dict[str, dict]:
    with LMSession(concurrency=4, policy=FAST) as session:
        lm = session.lm("openai/fake", role="evol", api_base=url, api_key="test")
        with dspy.context(lm=lm):
            EvolveJob(Evolver(), concurrency=4, evol_model="openai/fake").run(seed, out, rounds=rounds)
    return {row["id"]: row for row in read_rows(out)}


def ray_run(seed: Path, out: Path, url: str, **options):
    options.setdefault("actors", 2)
    options.setdefault("concurrency", 4)
    options.setdefault("shard_size", 5)
    return run_ray_evolve(seed, out, evol_lm="openai/fake", api_base=url, policy=FAST, **options)


def by_id(path: Path) -> dict[str, dict]:
    rows = list(read_rows(path))
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), "an id was written twice"
    return {row["id"]: row for row in rows}


def test_ray_engine_gives_the_local_engines_rows(cluster, server, seed, tmp_path):
    local = local_rows(seed, tmp_path / "local.jsonl", server.url, rounds=2)
    summary = ray_run(seed, tmp_path / "ray.jsonl", server.url, rounds=2)
    remote = by_id(tmp_path / "ray.jsonl")
    assert remote == local
    rules = {row["rule"] for row in remote.values()}
    assert {"bad_input", "sorry_short", "unparseable", None} <= rules  # the comparison is not vacuous
    assert any(row["round"] == 2 for row in remote.values())
    assert (summary.rows, summary.failed) == (len(local), sum(row["failed"] for row in local.values()))
    assert summary.output == str(tmp_path / "ray.jsonl") and summary.stopped is None
    store = ShardStore(tmp_path / "ray.jsonl")
    assert store.shards(1) == [0, 1, 2, 3, 4] and all(store.is_done(1, k) for k in range(5))
    assert sum(usage.calls for usage in summary.usage) > 0


def test_a_killed_actor_is_restarted_and_its_rows_are_redone_once(cluster, server, seed, tmp_path):
    flag = tmp_path / "crash-once"
    flag.write_text("")
    ray_run(seed, tmp_path / "ray.jsonl", server.url, crash_once=("q12:r1", str(flag)))
    assert not flag.exists(), "the actor never reached the crash row"
    rows = by_id(tmp_path / "ray.jsonl")
    assert set(rows) == {f"q{i}:r1" for i in range(23)} | {"blank:r1"}
    shard_ids = [row["id"] for row in ShardStore(tmp_path / "ray.jsonl").rows(rounds=1)]
    assert sorted(shard_ids) == sorted(rows)


def test_a_stopped_job_resumes_without_redoing_written_rows(cluster, server, seed, tmp_path):
    out = tmp_path / "ray.jsonl"
    first = ray_run(seed, out, server.url, max_calls=20)
    assert first.stopped and "call budget of 20" in first.stopped
    assert not out.exists()
    store = ShardStore(out)
    written = [row["id"] for row in store.rows(rounds=1)]
    assert 0 < len(written) < 24 and len(written) == len(set(written))
    # the budget is global: 2 actors together made at most 20 billed calls
    assert sum(usage.calls for usage in first.usage) <= 20
    # an interrupted write leaves half a line: it is dropped on resume
    last = store.shard_path(1, store.shards(1)[-1])
    with open(last, "a") as handle:
        handle.write('{"id": "half')
    server.reset()
    second = ray_run(seed, out, server.url)
    assert second.stopped is None and second.resumed_rows == len(written)
    rows = by_id(out)
    assert set(rows) == {f"q{i}:r1" for i in range(23)} | {"blank:r1"}
    assert server.stats().ok <= 2 * (24 - len(written))  # only the missing rows were evaluated
    assert server.stats().repeated_completions == {}


def test_a_finished_shard_is_skipped_and_settings_must_match(cluster, server, seed, tmp_path):
    out = tmp_path / "ray.jsonl"
    ray_run(seed, out, server.url)
    before = by_id(out)
    server.reset()
    again = ray_run(seed, out, server.url)
    assert server.stats().ok == 0 and again.resumed_rows == 24
    assert by_id(out) == before  # the output was rebuilt from the finished shards, row for row
    with pytest.raises(DataError, match="shard_size"):
        ray_run(seed, out, server.url, shard_size=7)
    with pytest.raises(DataError, match=r"\(max_output_tokens\)"):  # it shapes every rewrite
        ray_run(seed, out, server.url, max_output_tokens=900)
    ray_run(seed, out, server.url, shard_size=7, overwrite=True)
    assert ShardStore(out).shards(1) == [0, 1, 2, 3]


def test_jsonl_with_ids_and_parquet_are_read_by_ray_data_and_give_the_local_rows(
        cluster, server, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from autoevol.engines.ray_read import (
        _json_line_records,
        line_ranges,
        ray_read_plan,
    )

    records = []
    for i in range(9):
        records.append({"id": i, "instruction": f"Explain plain topic number {i} in two sentences.",
                        "conversations": None})
    records.append({"id": 9, "instruction": None, "conversations": None})  # a bad-input row
    records.append({"id": "c1", "instruction": None, "conversations": [
        {"from": "human", "value": "Explain garble topic one."}, {"from": "gpt", "value": "Sure."},
        {"from": "human", "value": "Explain plain follow-up two."}]})
    records[2]["instruction"] += " Line\u2028separators\x85 stay inside the row."
    jsonl = tmp_path / "seed.jsonl"
    lines = [json.dumps(row, ensure_ascii=False) for row in records]
    lines.insert(4, "")  # a blank line: no row
    jsonl.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    parquet = tmp_path / "seed.parquet"
    pq.write_table(pa.Table.from_pylist([{**row, "id": str(row["id"])} for row in records]), parquet)
    no_ids = tmp_path / "no_ids.jsonl"
    no_ids.write_text(json.dumps({"instruction": "Explain x."}) + "\n")
    assert ray_read_plan(jsonl, None, None, None) == ("instruction", "id")
    assert ray_read_plan(parquet, "conversations", None, None) == ("conversations", "id")
    assert ray_read_plan(no_ids, None, None, None) is None  # row-index ids: the driver reads
    assert ray_read_plan(jsonl, None, None, 5) is None  # a limit: the driver reads

    assert line_ranges(jsonl, 1 << 20) == [(0, jsonl.stat().st_size)]
    spans = line_ranges(jsonl, 150)
    assert len(spans) > 3 and spans[0][0] == 0 and spans[-1][1] == jsonl.stat().st_size
    assert [record for span in spans for record in _json_line_records(str(jsonl), *span)] == records
    monkeypatch.setattr("autoevol.engines.ray_read.READ_RANGE_BYTES", 150)  # several read tasks

    reads: list[str] = []
    for name in ("from_items", "read_parquet"):
        real = getattr(ray.data, name)
        monkeypatch.setattr(ray.data, name,
                            lambda *a, _real=real, _name=name, **k: reads.append(_name) or _real(*a, **k))
    for seed, column in ((jsonl, "instruction"), (parquet, "conversations")):
        out = tmp_path / f"ray-{seed.suffix[1:]}.jsonl"
        with LMSession(concurrency=4, policy=FAST) as session:
            lm = session.lm("openai/fake", role="evol", api_base=server.url, api_key="test")
            with dspy.context(lm=lm):
                EvolveJob(Evolver(), concurrency=4, evol_model="openai/fake").run(
                    seed, tmp_path / f"local-{seed.suffix[1:]}.jsonl", column=column)
        local = {row["id"]: row for row in read_rows(tmp_path / f"local-{seed.suffix[1:]}.jsonl")}
        ray_run(seed, out, server.url, column=column, shard_size=4)
        assert by_id(out) == local
        assert any(row["rule"] == "bad_input" for row in local.values())
    assert reads == ["from_items", "read_parquet"]  # the byte ranges of the JSON lines file, then parquet


@pytest.mark.parametrize("kind", ["parquet", "folder"])
def test_parquet_and_dataset_folder_outputs_hold_the_same_rows_on_both_engines(cluster, server, seed, tmp_path, kind):
    suffix = ".parquet" if kind == "parquet" else ""
    local_out, ray_out = tmp_path / f"local{suffix}", tmp_path / f"ray{suffix}"
    local = local_rows(seed, local_out, server.url, rounds=2)
    ray_run(seed, ray_out, server.url, rounds=2)
    for out in (local_out, ray_out):
        if kind == "parquet":
            assert out.is_file() and out.read_bytes()[:4] == b"PAR1"
        else:
            assert (out / "dataset_info.json").is_file()  # written by datasets' save_to_disk
    assert {row["round"] for row in local.values()} == {1, 2} and any(row["failed"] for row in local.values())
    assert by_id(ray_out) == local


def test_one_actor_pool_serves_every_round_and_wave_of_a_job(cluster, server, seed, tmp_path, monkeypatch):
    from autoevol.engines import ray_engine
    from autoevol.engines.ray_pool import ActorSettings, EvolvePool

    pools: list[EvolvePool] = []

    class CountedPool(EvolvePool):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(ray_engine, "EvolvePool", CountedPool)
    settings = ActorSettings(method=Evolver().method, evol_lm="openai/fake", evol_model="openai/fake",
                             api_base=server.url, concurrency=4, policy=FAST)
    job = ray_engine.RayEvolveJob(settings, actors=2, shard_size=5, wave_rows=5)
    job.run(seed, tmp_path / "ray.jsonl", rounds=2)
    assert len(pools) == 1 and pools[0].actors == []  # one pool for 2 rounds of several waves, stopped at the end
    local = local_rows(seed, tmp_path / "local.jsonl", server.url, rounds=2)
    assert by_id(tmp_path / "ray.jsonl") == local
    server.reset()
    job.run(seed, tmp_path / "ray.jsonl", rounds=2)  # a finished job starts no actors
    assert len(pools) == 1 and server.stats().ok == 0


def test_an_evolver_with_demonstrations_keeps_them_on_the_ray_engine(cluster, server, seed, tmp_path):
    demo = Demo(instruction="Name a colour.", working_notes="Ask for a reason too.",
                evolved_instruction="Name a colour and say why it suits a kitchen.")
    evolver = Evolver(demos=[demo])
    ray_run(seed, tmp_path / "ray.jsonl", server.url, evolver=evolver, actors=1)
    fingerprints = {row["method_fingerprint"] for row in by_id(tmp_path / "ray.jsonl").values()}
    assert fingerprints == {evolver.fingerprint} and evolver.fingerprint != Evolver().fingerprint
