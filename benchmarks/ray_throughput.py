"""Evolve throughput of the local engine and of the Ray engine (1 and 2 actors) as a share of the bound.

The fake OpenAI-compatible server answers after a fixed latency, so the bound is
``in-flight calls / latency``: ``concurrency / latency`` for the local engine and
``actors * concurrency / latency`` for the Ray engine (each actor has its own ``concurrency``).
"End to end" includes starting the actors; "steady" counts from the first row the driver
receives to the last (what a long job sees).

    python benchmarks/ray_throughput.py [--rows 2000] [--concurrency 16] [--latency 0.1] [--actors 1 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dspy

from autoevol.lm import CallPolicy, LMSession
from autoevol.programs.evolver import Evolver
from autoevol.programs.pipeline import EvolveJob
from autoevol.records import EvolvedRow
from autoevol.testing.fake_openai import SubprocessServer, serve_in_subprocess


@dataclass
class Throughput:
    """One measured run."""

    engine: str
    rows: int
    calls: int
    seconds: float
    steady_calls_per_second: float
    bound: float

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds

    @property
    def share(self) -> float:
        return self.calls_per_second / self.bound

    @property
    def steady_share(self) -> float:
        return self.steady_calls_per_second / self.bound


class _Clock:
    """Timestamps of rows as the driver writes them."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, row: EvolvedRow) -> None:
        self.times.append(time.perf_counter())

    def steady_rate(self, calls_per_row: float) -> float:
        """Rows after the first arrival, per second until the last, times calls per row."""
        if len(self.times) < 2:
            return 0.0
        first = self.times[0]
        later = sum(1 for moment in self.times if moment > first)
        return later * calls_per_row / max(self.times[-1] - first, 1e-9)


def write_seed(folder: Path, rows: int) -> Path:
    seed = folder / f"seed{rows}.jsonl"
    seed.write_text("".join(json.dumps({"instruction": f"Explain topic number {i} in two sentences."}) + "\n"
                            for i in range(rows)))
    return seed


def measure_local(server: SubprocessServer, seed: Path, out: Path, *, concurrency: int,
                  latency: float) -> Throughput:
    """The local engine (``EvolveJob``) with ``concurrency`` rows in flight."""
    clock = _Clock()
    with LMSession(concurrency=concurrency, policy=CallPolicy(timeout=30)) as session:
        lm = session.lm("openai/fake", role="evol", api_base=server.url, api_key="benchmark")
        job = EvolveJob(Evolver(), concurrency=concurrency, evol_model="fake", on_row=clock)
        server.reset()
        started = time.perf_counter()
        with dspy.context(lm=lm):
            summary = job.run(seed, out, overwrite=True)
        wall = time.perf_counter() - started
    calls = server.stats().ok
    return Throughput("local", summary.rows, calls, wall, clock.steady_rate(calls / max(summary.rows, 1)),
                      concurrency / latency)


def measure_ray(server: SubprocessServer, seed: Path, out: Path, *, actors: int, concurrency: int,
                latency: float) -> Throughput:
    """The Ray engine with ``actors`` actors of ``concurrency`` each (Ray must be initialised)."""
    from autoevol.engines import run_ray_evolve

    clock = _Clock()
    server.reset()
    started = time.perf_counter()
    summary = run_ray_evolve(seed, out, evol_lm="openai/fake", api_base=server.url, actors=actors,
                             concurrency=concurrency, overwrite=True, policy=CallPolicy(timeout=30),
                             shard_size=1000, on_row=clock)
    wall = time.perf_counter() - started
    calls = server.stats().ok
    return Throughput(f"ray, {actors} actor{'s' if actors > 1 else ''}", summary.rows, calls, wall,
                      clock.steady_rate(calls / max(summary.rows, 1)), actors * concurrency / latency)


def run(*, rows: int, concurrency: int, latency: float, actors: list[int], local_rows: int | None = None,
        ray_cpus: int = 2) -> list[Throughput]:
    """Measure the local engine and the Ray engine for each pool size; returns every result."""
    import ray

    results = []
    with tempfile.TemporaryDirectory() as folder, serve_in_subprocess(latency=latency) as server:
        seed = write_seed(Path(folder), rows)
        local_seed = write_seed(Path(folder), local_rows) if local_rows else seed
        results.append(measure_local(server, local_seed, Path(folder) / "local.jsonl", concurrency=concurrency,
                                     latency=latency))
        ray.init(num_cpus=ray_cpus, include_dashboard=False, log_to_driver=False)
        try:
            for count in actors:
                results.append(measure_ray(server, seed, Path(folder) / f"ray{count}.jsonl", actors=count,
                                           concurrency=concurrency, latency=latency))
        finally:
            ray.shutdown()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16, help="rows in flight per actor (and locally)")
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    results = run(rows=args.rows, concurrency=args.concurrency, latency=args.latency, actors=args.actors)
    print(f"{'engine':<16} {'rows':>6} {'calls':>6} {'wall s':>7} {'calls/s':>8} {'bound':>7} {'share':>6} "
          f"{'steady share':>12}")
    for r in results:
        print(f"{r.engine:<16} {r.rows:>6} {r.calls:>6} {r.seconds:>7.1f} {r.calls_per_second:>8.1f} "
              f"{r.bound:>7.0f} {r.share:>6.1%} {r.steady_share:>12.1%}")
    ray_results = [r for r in results if r.engine.startswith("ray")]
    if len(ray_results) >= 2:
        print(f"speed-up {ray_results[-1].engine} vs {ray_results[0].engine}: "
              f"{ray_results[-1].calls_per_second / ray_results[0].calls_per_second:.2f}x end to end, "
              f"{ray_results[-1].steady_calls_per_second / ray_results[0].steady_calls_per_second:.2f}x steady")


if __name__ == "__main__":
    main()
