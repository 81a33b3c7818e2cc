"""Evolve throughput against a fake OpenAI-compatible server with a fixed latency.

Prints achieved LM calls per second, the bound (concurrency / latency), their ratio, and the
framework's CPU time per call. Target: at least 90% of the bound.

    python benchmarks/evolve_throughput.py [--rows 1000] [--concurrency 32] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import dspy

from autoevol.lm import CallPolicy, LMSession
from autoevol.programs.evolver import Evolver
from autoevol.programs.pipeline import EvolveJob
from autoevol.testing.fake_openai import serve_in_subprocess


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder, serve_in_subprocess(latency=args.latency) as server:
        seed = Path(folder) / "seed.jsonl"
        seed.write_text("".join(json.dumps({"instruction": f"Explain topic number {i} in two sentences."}) + "\n"
                                for i in range(args.rows)))
        with LMSession(concurrency=args.concurrency, policy=CallPolicy(timeout=30)) as session:
            lm = session.lm("openai/fake", role="evol", api_base=server.url, api_key="benchmark")
            job = EvolveJob(Evolver(), concurrency=args.concurrency, evol_model="fake")
            server.reset()
            cpu_before, started = cpu_seconds(), time.perf_counter()
            with dspy.context(lm=lm):
                summary = job.run(seed, Path(folder) / "out.jsonl")
            wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
        calls = server.stats().ok

    bound = args.concurrency / args.latency
    achieved = calls / wall
    print(f"rows                 {summary.rows} ({summary.failed} failed)")
    print(f"LM calls             {calls}")
    print(f"wall time            {wall:.2f} s")
    print(f"achieved             {achieved:.1f} calls/s")
    print(f"bound                {bound:.1f} calls/s (concurrency {args.concurrency} / latency {args.latency}s)")
    print(f"share of bound       {achieved / bound:.1%}")
    print(f"client CPU per call  {1000 * cpu / max(calls, 1):.2f} ms")


if __name__ == "__main__":
    main()
