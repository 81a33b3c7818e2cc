"""The Ray engine's actor pool: started once per job, reused by every round and every wave.

Each :class:`EvolveActor` builds its ``LMSession`` once (LM clients, judge, thread pool of
``concurrency`` workers) and evaluates batches of sources of any round, so the start-up cost of a
job (Ray worker processes, imports, LM clients) is paid once, not once per round as with an actor
pool per ``Dataset.map_batches``. :class:`EvolvePool` keeps at most ``calls_per_actor`` batches in
flight on each actor and yields results as they complete.

Faults: an actor that dies is restarted by Ray (``max_restarts=-1``) with the same settings, and
the batches it was running are sent to the restarted actor (``max_task_retries=-1``); a batch's
rows come back together, so the driver still writes each id once.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dspy

from autoevol.lm import CallPolicy, LMSession
from autoevol.lm.policy import BudgetExceeded
from autoevol.metrics.failure import FailureDetector
from autoevol.programs.demonstration import Demo
from autoevol.programs.evolver import Evolver
from autoevol.programs.pipeline import Source, evaluate_and_answer, make_row
from autoevol.threads import carry_dspy_context

#: The usage counts an actor reports per role.
USAGE_FIELDS = ("calls", "cache_hits", "failed_calls", "retries", "input_tokens", "output_tokens", "cost")


@dataclass(frozen=True)
class ActorSettings:
    """Everything an evolve actor needs, as plain picklable data.

    ``crash_once`` is a fault-injection hook for tests: ``(row_id, flag_file)`` makes the actor
    process exit abruptly when it starts ``row_id`` while ``flag_file`` exists (removing it first,
    so the restarted actor goes on). ``structured_output`` is ``LMSession``'s setting of that name.
    """

    method: str
    evol_lm: str
    evol_model: str
    api_base: str | None = None
    judge_lm: str | None = None
    #: a separate answer LM (spec, API base, recorded name); None: the evol LM's answers are kept
    answer_lm: str | None = None
    answer_api_base: str | None = None
    answer_model: str | None = None
    disable_rules: tuple[str, ...] = ()
    concurrency: int = 8
    max_output_tokens: int = 768
    policy: CallPolicy = field(default_factory=CallPolicy)
    structured_output: bool | None = None
    crash_once: tuple[str, str] | None = None
    #: the evolver's demonstrations (plain data), shown to the evol LM like the method
    demos: tuple[Demo, ...] = ()


def as_source(source: dict[str, Any]) -> Source:
    """A source sent to an actor (JSON data) as the pipeline's :class:`Source`."""
    return Source(root_id=source["root_id"], parent_id=source["parent_id"], text=source["text"], id=source["id"],
                  turn=source.get("turn"))


class EvolveActor:
    """One LM session and a thread pool of ``concurrency`` rows at a time, for every round of a job.

    ``evolve`` takes a round and a batch of sources (JSON text) and returns ``{"shard", "row",
    "status", "usage"}``: ``status`` is ``ok`` (``row`` is an ``EvolvedRow`` as JSON) or ``stopped``
    (the budget refused the call; ``row`` is the reason, and the source stays to do). ``usage``
    carries this actor's LM usage since its previous batch, on the first element only.
    """

    def __init__(self, settings: ActorSettings, budget: Any = None) -> None:
        from autoevol.engines.budget import RemoteBudget

        self.settings = settings
        self.session = LMSession(concurrency=settings.concurrency, policy=settings.policy,
                                 budget=RemoteBudget(budget) if budget is not None else None,
                                 structured_output=settings.structured_output)
        self.lm = self.session.lm(settings.evol_lm, role="evol", api_base=settings.api_base,
                                  max_tokens=settings.max_output_tokens)
        judge = self.session.lm(settings.judge_lm, role="judge", max_tokens=64) if settings.judge_lm else None
        self.detector = FailureDetector(judge_lm=judge, disable=settings.disable_rules)
        self.answer_lm = self.session.lm(settings.answer_lm, role="answer", api_base=settings.answer_api_base,
                                         max_tokens=settings.max_output_tokens) if settings.answer_lm else None
        self.evolver = Evolver(settings.method, demos=settings.demos)
        self.pool = ThreadPoolExecutor(settings.concurrency)
        self._reported: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def evolve(self, round: int, batch: list[str]) -> dict[str, list[Any]]:
        sources = [json.loads(text) for text in batch]
        with dspy.context(lm=self.lm, disable_history=True):
            work = carry_dspy_context(self._one)
            futures = [self.pool.submit(work, round, source) for source in sources]
        results = [future.result() for future in futures]
        usage = [""] * len(results)
        if usage:
            usage[0] = json.dumps(self._usage_delta())
        return {"shard": [source["shard"] for source in sources], "row": [row for _, row in results],
                "status": [status for status, _ in results], "usage": usage}

    def _one(self, round: int, source: dict[str, Any]) -> tuple[str, str]:
        self._maybe_crash(source["id"])
        try:
            outcome = evaluate_and_answer(source["text"], self.evolver, detector=self.detector,
                                          answer_lm=self.answer_lm)
        except BudgetExceeded as error:
            return "stopped", str(error)
        row = make_row(as_source(source), round, outcome, fingerprint=self.evolver.fingerprint,
                       evol_model=self.settings.evol_model, answer_model=self.settings.answer_model)
        return "ok", row.model_dump_json()

    def _maybe_crash(self, row_id: str) -> None:
        crash = self.settings.crash_once
        if crash and crash[0] == row_id and os.path.exists(crash[1]):
            os.remove(crash[1])
            os._exit(1)

    def _usage_delta(self) -> dict[str, dict[str, Any]]:
        """Usage per role since the last report (so the driver can add the deltas up)."""
        with self._lock:
            delta: dict[str, dict[str, Any]] = {}
            for lm in self.session.lms:
                now = lm.usage.model_dump()
                before = self._reported.get(lm.role, {})
                delta[lm.role] = {"model": now["model"],
                                  **{name: now[name] - before.get(name, 0) for name in USAGE_FIELDS}}
                self._reported[lm.role] = {name: now[name] for name in USAGE_FIELDS}
            return delta


class EvolvePool:
    """``actors`` Ray actors of :class:`EvolveActor`, started when the pool is built, stopped by :meth:`close`.

    Args:
        settings: what every actor builds its LMs and evolver from.
        actors: actors in the pool.
        actor_cpus: Ray CPUs reserved per actor (LM work waits on the network, not the CPU).
        budget: the job's shared budget actor, or None.
        calls_per_actor: batches in flight per actor (one runs while the next one's rows arrive).
    """

    def __init__(self, settings: ActorSettings, *, actors: int, actor_cpus: float, budget: Any = None,
                 calls_per_actor: int = 2) -> None:
        import ray

        remote = ray.remote(num_cpus=actor_cpus, max_restarts=-1, max_task_retries=-1,
                            max_concurrency=calls_per_actor)(EvolveActor)
        self.actors = [remote.remote(settings, budget) for _ in range(actors)]
        self.calls_per_actor = calls_per_actor

    def map(self, round: int, batches: Iterable[list[str]]) -> Iterator[dict[str, list[Any]]]:
        """Evaluate every batch of ``round`` on the pool; results come in completion order."""
        import ray

        load = {index: 0 for index in range(len(self.actors))}
        running: dict[Any, int] = {}
        pending = iter(batches)
        exhausted = False
        while True:
            while not exhausted and min(load.values()) < self.calls_per_actor:
                batch = next(pending, None)
                if batch is None:
                    exhausted = True
                    break
                if not batch:
                    continue
                index = min(load, key=load.__getitem__)
                running[self.actors[index].evolve.remote(round, batch)] = index
                load[index] += 1
            if not running:
                return
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                load[running.pop(ref)] -= 1
                yield ray.get(ref)

    def close(self) -> None:
        """Stop every actor of the pool."""
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
