"""Evolve a dataset on Ray: one pool of actors per job, each with its own LM client and bounded concurrency.

The driver reads the seed items with :func:`autoevol.data.iter_items` (validation and stable ids
exactly as the local engine), cuts each round into shards of ``shard_size`` sources in input order,
and sends the sources still to do, in batches, to the job's :class:`~autoevol.engines.ray_pool.EvolvePool`:
its actors start once and serve every round and wave of the job (see :mod:`autoevol.engines.ray_pool`).
In round 1 of a ``.jsonl`` or ``.parquet`` input with an id column (and no ``limit``), the
driver's pass only validates and keeps the ids to do: the rows themselves are read by Ray Data
tasks (see :mod:`autoevol.engines.ray_read`).
Each actor builds its ``LMSession`` once and evaluates every batch with a thread pool of
``concurrency`` workers (``autoevol.metrics.rate.evaluate_item``, like the local engine), so rows,
lineage and verdicts are the local engine's. The driver is the only writer: it appends each
returned row to its shard file (see :mod:`autoevol.engines.shards`), marks finished shards
``.done``, and writes the same final output file as the local engine once every round is complete.

Faults: Ray restarts a dead actor (``max_restarts=-1``) and retries its batches on the new one
(``max_task_retries=-1``); a batch's rows are returned together, so a batch lost with its actor is
recomputed whole and the driver still writes each id once. LM retries, back-off and the adaptive
limiter on 429s are the ``ManagedLM``'s, per actor. Budgets are global (:mod:`autoevol.engines.budget`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoevol.data import iter_items
from autoevol.engines.ray_pool import USAGE_FIELDS, ActorSettings, EvolvePool, as_source
from autoevol.engines.ray_read import ray_read_plan, read_wave_sources
from autoevol.engines.shards import ShardStore
from autoevol.export import write_output_card
from autoevol.lm import CallPolicy, parse_spec
from autoevol.lm.spec import endpoint_from_environment
from autoevol.lm.usage import RoleUsage
from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.rate import ItemOutcome
from autoevol.programs.evolver import Evolver
from autoevol.programs.pipeline import JobSummary, make_row, tally_rows
from autoevol.records import BAD_INPUT, EvolvedRow, Verdict

logger = logging.getLogger(__name__)

@dataclass
class _Progress:
    """The driver's bookkeeping for one run."""

    remaining: dict[tuple[int, int], int] = field(default_factory=dict)
    written: dict[tuple[int, int], set[str]] = field(default_factory=dict)
    usage: dict[str, RoleUsage] = field(default_factory=dict)
    stopped: str | None = None

    def add_usage(self, text: str) -> None:
        for role, numbers in json.loads(text).items():
            total = self.usage.setdefault(role, RoleUsage(role=role, model=numbers["model"]))
            for name in USAGE_FIELDS:
                setattr(total, name, getattr(total, name) + numbers[name])


class RayEvolveJob:
    """Evolve a dataset on Ray Data; see :func:`run_ray_evolve` for the arguments."""

    def __init__(self, settings: ActorSettings, *, actors: int = 2, shard_size: int = 1000,
                 batch_size: int | None = None, wave_rows: int = 100_000, actor_cpus: float = 0.5,
                 budget: Any = None, on_row: Callable[[EvolvedRow], None] | None = None) -> None:
        if actors < 1 or shard_size < 1 or wave_rows < 1:
            raise ValueError("actors, shard_size and wave_rows must be at least 1")
        self.settings = settings
        self.actors = actors
        self.shard_size = shard_size
        self.batch_size = batch_size or 2 * settings.concurrency
        self.wave_rows = wave_rows
        self.actor_cpus = actor_cpus
        self.budget = budget
        self.on_row = on_row or (lambda row: None)
        self.fingerprint = Evolver(settings.method, demos=settings.demos).fingerprint

    def identity(self, data: Path, *, column: str | None, id_column: str | None, limit: int | None,
                 rounds: int) -> dict[str, Any]:
        """The settings a resumed job must share with the run that started it."""
        stat = data.stat()
        return {"input": str(data.resolve()), "input_size": stat.st_size, "input_mtime": int(stat.st_mtime),
                "column": column, "id_column": id_column, "limit": limit, "rounds": rounds,
                "method_fingerprint": self.fingerprint, "evol_model": self.settings.evol_model,
                "max_output_tokens": self.settings.max_output_tokens, "judge_lm": self.settings.judge_lm,
                "disable_rules": sorted(self.settings.disable_rules),
                "shard_size": self.shard_size,
                **({"answer_model": self.settings.answer_model} if self.settings.answer_lm else {})}

    def run(self, data: str | Path, out: str | Path, *, column: str | None = None, id_column: str | None = None,
            limit: int | None = None, rounds: int = 1, overwrite: bool = False) -> JobSummary:
        """Evolve ``data`` into ``out`` (plus its shards); resumes an unfinished job for ``out``."""
        data, out = Path(data), Path(out)
        started = time.monotonic()
        store = ShardStore(out)
        store.open(self.identity(data, column=column, id_column=id_column, limit=limit, rounds=rounds),
                   overwrite=overwrite)
        summary = JobSummary(resumed_rows=sum(1 for _ in store.rows(rounds=rounds)))
        progress = _Progress()
        pool: EvolvePool | None = None  # started at the first wave, for every round and wave of the job
        try:
            if not store.complete:
                plan = ray_read_plan(data, column, id_column, limit)
                for round in range(1, rounds + 1):
                    ray_read = plan if round == 1 else None
                    for wave in self._waves(store, progress, round, data, column, id_column, limit,
                                            ids_only=ray_read is not None):
                        pool = pool or EvolvePool(self.settings, actors=self.actors, actor_cpus=self.actor_cpus,
                                                  budget=self.budget)
                        self._run_wave(pool, store, progress, round, wave, data=data, plan=ray_read)
                        if progress.stopped:
                            break
                    if progress.stopped:
                        break
        finally:
            if pool is not None:
                pool.close()
        tally_rows(summary, store.rows(rounds=rounds))
        summary.usage = list(progress.usage.values())
        if progress.stopped:
            summary.stopped = progress.stopped
        else:
            store.finalize(rounds=rounds)
            self._write_card(out, rounds=rounds, limit=limit)
            summary.output = str(out)
        summary.seconds = time.monotonic() - started
        return summary

    def _write_card(self, out: Path, *, rounds: int, limit: int | None) -> None:
        """The dataset card of a folder output, as the local engine writes it (plus the pool's settings)."""
        settings = self.settings
        models = {"evol": settings.evol_model, "answer": settings.answer_model or settings.evol_model,
                  **({"judge": settings.judge_lm} if settings.judge_lm else {})}
        recorded: dict[str, Any] = {
            "engine": "ray", "rounds": rounds, "limit": limit, "actors": self.actors,
            "concurrency": settings.concurrency, "disable_rules": ", ".join(settings.disable_rules) or None,
            "max_output_tokens": settings.max_output_tokens, "structured_output": settings.structured_output,
            "shard_size": self.shard_size,
        }
        write_output_card(out, method=settings.method, models=models,
                          settings={key: value for key, value in recorded.items() if value is not None})

    def _sources(self, store: ShardStore, round: int, data: Path, column: str | None, id_column: str | None,
                 limit: int | None) -> Iterator[dict[str, Any]]:
        if round == 1:
            for item in iter_items(data, column=column, id_column=id_column, limit=limit):
                yield {"id": f"{item.id}:r1", "root_id": item.id, "parent_id": item.id,
                       "text": item.instruction, "problem": item.problem, "turn": item.turn}
        else:
            for shard in store.shards(round - 1):
                for row in store.shard_rows(round - 1, shard):
                    if not row["failed"]:
                        yield {"id": f"{row['root_id']}:r{round}", "root_id": row["root_id"],
                               "parent_id": row["id"], "text": row["evolved"], "problem": None,
                               "turn": row.get("turn")}

    def _waves(self, store: ShardStore, progress: _Progress, round: int, data: Path, column: str | None,
               id_column: str | None, limit: int | None, *, ids_only: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Groups of at most ``wave_rows`` sources still to evaluate, shard by shard.

        With ``ids_only`` a wave holds just ``{"id", "shard"}`` per source (Ray Data reads the rest).
        """
        wave: list[dict[str, Any]] = []
        chunk: list[dict[str, Any]] = []

        def close_shard(shard: int) -> None:
            key = (round, shard)
            if store.is_done(round, shard):
                return
            written = {row["id"] for row in store.shard_rows(round, shard)}
            missing = [source for source in chunk if source["id"] not in written]
            bad = [source for source in missing if source["problem"]]
            self._write(store, progress, round, shard, written,
                        [self._bad_input_row(source, round).model_dump_json() for source in bad])
            progress.remaining[key] = len(missing) - len(bad)
            progress.written[key] = written
            if progress.remaining[key] == 0:
                store.mark_done(round, shard)
            for source in missing:
                if not source["problem"]:
                    wave.append({"id": source["id"], "shard": shard} if ids_only else {**source, "shard": shard})

        shard = 0
        for source in self._sources(store, round, data, column, id_column, limit):
            chunk.append(source)
            if len(chunk) == self.shard_size:
                close_shard(shard)
                shard, chunk = shard + 1, []
                if len(wave) >= self.wave_rows:
                    yield wave
                    wave = []
        if chunk:
            close_shard(shard)
        if wave:
            yield wave

    def _bad_input_row(self, source: dict[str, Any], round: int) -> EvolvedRow:
        outcome = ItemOutcome(original=source["text"], verdict=Verdict.failure(BAD_INPUT, source["problem"]))
        return make_row(as_source(source), round, outcome, fingerprint=self.fingerprint, evol_model=self.settings.evol_model)

    def _wave_batches(self, wave: list[dict[str, Any]], data: Path,
                      plan: tuple[str, str] | None) -> Iterator[list[str]]:
        """The wave's sources as batches of ``batch_size`` JSON texts, read by Ray Data under ``plan``."""
        if plan is None:
            for start in range(0, len(wave), self.batch_size):
                yield [json.dumps(source) for source in wave[start:start + self.batch_size]]
            return
        todo = {source["id"]: source["shard"] for source in wave}
        # reading waits on the disk; never starve the actor pool
        yield from read_wave_sources(data, plan, todo, batch_size=self.batch_size, cpus=min(0.25, self.actor_cpus))

    def _run_wave(self, pool: EvolvePool, store: ShardStore, progress: _Progress, round: int,
                  wave: list[dict[str, Any]], *, data: Path, plan: tuple[str, str] | None = None) -> None:
        for batch in pool.map(round, self._wave_batches(wave, data, plan)):
            by_shard: dict[int, list[str]] = {}
            for shard, row, status, usage in zip(batch["shard"], batch["row"], batch["status"], batch["usage"]):
                if usage:
                    progress.add_usage(str(usage))
                if status == "ok":
                    by_shard.setdefault(int(shard), []).append(str(row))
                else:
                    progress.stopped = progress.stopped or str(row)
            for shard, rows in by_shard.items():
                self._write(store, progress, round, shard, progress.written[(round, shard)], rows)
                if progress.remaining[(round, shard)] == 0:
                    store.mark_done(round, shard)
        # a shard's sources are all in one wave: unless the budget stopped it, every one came back
        missing = sum(progress.remaining[(round, shard)] for shard in {source["shard"] for source in wave})
        if missing and not progress.stopped:
            raise RuntimeError(f"round {round}: {missing} sources sent to Ray Data came back without a row "
                               "(did the input change during the run?); rerun to resume")

    def _write(self, store: ShardStore, progress: _Progress, round: int, shard: int, written: set[str],
               rows: list[str]) -> None:
        """Append the rows not written yet (each id once, whatever a retried batch returns)."""
        fresh: list[str] = []
        for text in rows:
            row = EvolvedRow.model_validate_json(text)
            if row.id in written:
                continue
            written.add(row.id)
            fresh.append(text)
            self.on_row(row)
        if fresh:
            store.append(round, shard, fresh)
            key = (round, shard)
            if key in progress.remaining:
                progress.remaining[key] -= len(fresh)


def _endpoint_from_environment(spec: str) -> str | None:
    """The driver's environment endpoint for a non-local spec: actors on other machines do not see it."""
    parsed = parse_spec(spec)
    return None if parsed.is_local else endpoint_from_environment(str(parsed.model))


def run_ray_evolve(
    data: str | Path,
    out: str | Path,
    *,
    evolver: Evolver | None = None,
    evol_lm: str = "local",
    api_base: str | None = None,
    judge_lm: str | None = None,
    answer_lm: str | None = None,
    answer_api_base: str | None = None,
    disable_rules: tuple[str, ...] | list[str] = (),
    actors: int = 2,
    concurrency: int = 8,
    ray_address: str | None = None,
    column: str | None = None,
    id_column: str | None = None,
    limit: int | None = None,
    rounds: int = 1,
    overwrite: bool = False,
    max_output_tokens: int = 768,
    policy: CallPolicy | None = None,
    structured_output: bool | None = None,
    max_calls: int | None = None,
    max_tokens: int | None = None,
    max_cost: float | None = None,
    shard_size: int = 1000,
    batch_size: int | None = None,
    actor_cpus: float = 0.5,
    evol_model: str | None = None,
    on_row: Callable[[EvolvedRow], None] | None = None,
    crash_once: tuple[str, str] | None = None,
) -> JobSummary:
    """Run an evolve job on Ray: the same rows as :class:`~autoevol.programs.pipeline.EvolveJob`.

    Connects to the cluster at ``ray_address`` (``"auto"`` for the one this machine belongs to),
    reuses an already initialised Ray, or starts a small local one (stopped again at the end).

    Args:
        data: the seed file or folder (anything :func:`autoevol.data.iter_items` reads).
        out: the final output (``.jsonl``, ``.parquet`` or a dataset folder); shards go to
            ``OUT.shards/`` and are kept.
        evolver: the evolving method (default e_0); only its method text travels to the actors.
        evol_lm / api_base / judge_lm / disable_rules / max_output_tokens / policy: as in the
            ``evolve`` command; every actor builds its own LM from them (a ``local`` spec starts one
            llama.cpp server per actor).
        answer_lm / answer_api_base: a separate model for the final answers (see
            :class:`~autoevol.programs.pipeline.EvolveJob`); default: the evol LM's answers.
        structured_output: constrain the actors' signature calls to their output schema
            (``LMSession``'s setting: ``None`` means on for local models only).
        actors: actors in the pool. concurrency: rows evaluated at once *per actor*.
        max_calls / max_tokens / max_cost: a budget shared by all actors; when it runs out the job
            stops cleanly (``summary.stopped``) and a rerun resumes.
        shard_size: sources per shard (resume granularity; part of the job's identity).
        batch_size: sources per actor call (default ``2 * concurrency``).
        actor_cpus: Ray CPUs reserved per actor (LM work waits on the network, not the CPU).
        evol_model: the model name on each row (default: the spec's display name).
        on_row: called in the driver with every written row.
        crash_once: fault injection for tests (see :class:`ActorSettings`).
    """
    import ray

    from autoevol.engines.budget import start_budget

    evolver = evolver or Evolver()
    settings = ActorSettings(
        method=evolver.method, evol_lm=evol_lm, evol_model=evol_model or parse_spec(evol_lm).display_name,
        api_base=api_base or _endpoint_from_environment(evol_lm), judge_lm=judge_lm, answer_lm=answer_lm,
        answer_api_base=answer_api_base or (_endpoint_from_environment(answer_lm) if answer_lm else None),
        answer_model=parse_spec(answer_lm).display_name if answer_lm else None, disable_rules=tuple(disable_rules), concurrency=max(1, concurrency),
        max_output_tokens=max_output_tokens, policy=policy or CallPolicy(), structured_output=structured_output,
        crash_once=crash_once, demos=tuple(evolver.demos),
    )
    FailureDetector(disable=[rule for rule in settings.disable_rules if rule != "equal"])  # fail fast on typos
    started_ray = not ray.is_initialized()
    if started_ray:
        if ray_address:
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=max(2, actors), include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    context.enable_progress_bars = False
    try:
        budget = None
        if max_calls is not None or max_tokens is not None or max_cost is not None:
            budget = start_budget(max_calls=max_calls, max_tokens=max_tokens, max_cost=max_cost)
        job = RayEvolveJob(settings, actors=actors, shard_size=shard_size, batch_size=batch_size,
                           actor_cpus=actor_cpus, budget=budget, on_row=on_row)
        return job.run(data, out, column=column, id_column=id_column, limit=limit, rounds=rounds,
                       overwrite=overwrite)
    finally:
        context.enable_progress_bars = bars
        if started_ray:
            ray.shutdown()
