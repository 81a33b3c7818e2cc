"""Evolve throughput for every way of giving an endpoint, against a fake server with a fixed latency.

Each configuration runs in a fresh process (so an environment variable set for one cannot change
another) against one fake OpenAI-compatible server in a subprocess (asyncio; its own CPU per call
is printed, so it can be seen not to be the bottleneck). Printed per configuration: LM calls,
calls per second, the share of the bound ``concurrency / latency``, and the client's CPU (user +
system) per call while the job runs. The endpoint paths:

- ``flag``: ``session.lm("openai/fake", api_base=URL)``, what ``--api-base URL`` does;
- ``OPENAI_BASE_URL`` / ``OPENAI_API_BASE``: the URL in that variable, no ``api_base``;
- ``role api base``: the role's own ``api_base=URL`` while ``OPENAI_BASE_URL`` names another
  (unreachable) gateway, as ``--optimizer-api-base`` beside an environment endpoint.

``--floor`` also measures DSPy itself against the same server, with no autoevol program: ``dspy.LM``
called directly and a one-field ``dspy.Predict``, the same number of calls at the same concurrency,
as installed and with the per-call fixes of ``autoevol/lm/_speedups.py`` applied. Their CPU per
call is what DSPy's call path costs on this machine before any work of autoevol's own.

``--peer distilabel`` runs distilabel's ``EvolInstruct(generate_answers=True)`` (one evolution and
one answer per row, ``input_batch_size`` = concurrency) against the same server in the same run
(``pip install "distilabel[openai]" requests``; not a dependency of autoevol). ``--ray`` measures
the Ray engine with 1 and 2 actors end to end (start-up included) on ``--ray-rows`` rows and
``--ray-rounds`` rounds. ``--results`` writes the figures as a section of ``benchmarks/RESULTS.md``
(replacing an earlier one of this script).

    python benchmarks/evolve_throughput.py [--rows 1500] [--concurrency 32] [--latency 0.1]
        [--paths flag OPENAI_BASE_URL ...] [--floor] [--peer distilabel] [--ray] [--results]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PATHS = ("flag", "OPENAI_BASE_URL", "OPENAI_API_BASE", "role api base")
#: DSPy alone, no autoevol code: the floor of CPU per call (``--floor``).
FLOORS = {"dspy-lm": "DSPy alone: dspy.LM", "dspy-predict": "DSPy alone: dspy.Predict",
          "dspy-lm+speedups": "DSPy alone + autoevol's DSPy speedups: dspy.LM",
          "dspy-predict+speedups": "DSPy alone + autoevol's DSPy speedups: dspy.Predict"}
#: An address nothing listens on: the gateway variable of the "role api base" path.
UNUSED_GATEWAY = "http://127.0.0.1:9/v1"
SECTION = "## Evolve throughput per endpoint path (`benchmarks/evolve_throughput.py`)"
TARGET_SHARE = 0.95
TARGET_PEER_RATIO = 1.6
TARGET_CPU_MS = 1.5
TARGET_RAY_SPEEDUP = 1.8


@dataclass
class Measured:
    """One configuration's run."""

    name: str
    rows: int
    calls: int
    seconds: float
    client_cpu: float
    server_cpu: float
    bound: float

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def share(self) -> float:
        return self.calls_per_second / self.bound

    @property
    def client_ms_per_call(self) -> float:
        return 1000 * self.client_cpu / max(self.calls, 1)

    @property
    def server_ms_per_call(self) -> float:
        return 1000 * self.server_cpu / max(self.calls, 1)


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def write_seed(folder: Path, rows: int) -> Path:
    seed = folder / f"seed{rows}.jsonl"
    seed.write_text("".join(json.dumps({"id": f"q{i}", "instruction": f"Explain topic number {i} in two sentences."})
                            + "\n" for i in range(rows)))
    return seed


# ------------------------------------------------------------------------------ one configuration (child)


def child_autoevol(path: str, url: str, seed: Path, out: Path, concurrency: int) -> dict[str, float]:
    """Run the local engine with the endpoint given the ``path`` way; CPU and wall of the job only."""
    import dspy

    from autoevol.lm import CallPolicy, LMSession
    from autoevol.programs.evolver import Evolver
    from autoevol.programs.pipeline import EvolveJob

    os.environ.pop("OPENAI_BASE_URL", None)
    os.environ.pop("OPENAI_API_BASE", None)
    os.environ["OPENAI_API_KEY"] = "benchmark"
    api_base = None
    if path == "flag":
        api_base = url
    elif path == "role api base":
        os.environ["OPENAI_BASE_URL"], api_base = UNUSED_GATEWAY, url
    else:
        os.environ[path] = url
    with LMSession(concurrency=concurrency, policy=CallPolicy(timeout=30)) as session:
        lm = session.lm("openai/fake", role="evol", api_base=api_base)
        job = EvolveJob(Evolver(), concurrency=concurrency, evol_model="fake")
        cpu, started = cpu_seconds(), time.perf_counter()
        with dspy.context(lm=lm):
            summary = job.run(seed, out, overwrite=True)
        return {"seconds": time.perf_counter() - started, "client_cpu": cpu_seconds() - cpu, "rows": summary.rows}


def child_dspy(kind: str, url: str, calls: int, concurrency: int) -> dict[str, float]:
    """``calls`` calls of a bare ``dspy.LM`` (or of a one-field ``dspy.Predict``) from ``concurrency`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    import dspy

    if kind.endswith("+speedups"):
        import autoevol.lm._speedups  # noqa: F401  (applies its fixes on import)

    lm = dspy.LM("openai/fake", api_base=url, api_key="benchmark", cache=False)
    predict = dspy.Predict("question -> answer")
    dspy.configure(lm=lm)  # worker threads read the global settings

    def one(index: int) -> object:
        return lm(f"Explain topic number {index}.") if kind.startswith("dspy-lm") else predict(question=f"Topic {index}?")

    one(-1)  # the first call pays for imports and client set-up, as an evolve job's start-up does
    cpu, started = cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(calls)))
    return {"seconds": time.perf_counter() - started, "client_cpu": cpu_seconds() - cpu, "rows": calls // 2}


def child_distilabel(url: str, seed: Path, concurrency: int) -> dict[str, float]:
    """distilabel's EvolInstruct with answers on the same rows; the CPU of its whole process tree."""
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import EvolInstruct

    rows = [{"instruction": json.loads(line)["instruction"]} for line in seed.read_text().splitlines()]
    with Pipeline(name="evolve-throughput-peer") as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=concurrency)
        evolve = EvolInstruct(llm=OpenAILLM(model="fake", base_url=url, api_key="benchmark", timeout=30),
                              num_evolutions=1, generate_answers=True, input_batch_size=concurrency)
        load >> evolve
    cpu, started = cpu_seconds() + cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
    distiset = pipeline.run(use_cache=False)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() + cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
    return {"seconds": seconds, "client_cpu": cpu, "rows": len(distiset["default"]["train"])}


def child_main(args: argparse.Namespace) -> None:
    if args.child == "distilabel":
        figures = child_distilabel(args.url, args.seed, args.concurrency)
    elif args.child in FLOORS:
        rows = sum(1 for _ in args.seed.open())
        figures = child_dspy(args.child, args.url, 2 * rows, args.concurrency)
    else:
        figures = child_autoevol(args.child, args.url, args.seed, args.out, args.concurrency)
    print("FIGURES " + json.dumps(figures), flush=True)


# ------------------------------------------------------------------------------ the run (parent)


def measure(name: str, child: str, server: object, seed: Path, out: Path, *, concurrency: int,
            latency: float) -> Measured:
    """Run one configuration in a fresh process; calls and server CPU as the server counts them."""
    server.reset()  # type: ignore[attr-defined]
    server_cpu = server.cpu_seconds() or 0.0  # type: ignore[attr-defined]
    command = [sys.executable, str(Path(__file__).resolve()), "--child", child, "--url", server.url,  # type: ignore[attr-defined]
               "--seed", str(seed), "--out", str(out), "--concurrency", str(concurrency)]
    result = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("FIGURES ")]
    if result.returncode or not lines:
        raise SystemExit(f"{name}: the run failed (exit {result.returncode}): {result.stderr.strip()[-600:]}")
    figures = json.loads(lines[-1].removeprefix("FIGURES "))
    return Measured(name, int(figures["rows"]), server.stats().ok, figures["seconds"],  # type: ignore[attr-defined]
                    figures["client_cpu"], (server.cpu_seconds() or 0.0) - server_cpu,  # type: ignore[attr-defined]
                    concurrency / latency)


def measure_ray(server: object, seed: Path, out: Path, *, actors: int, concurrency: int, latency: float,
                rounds: int) -> Measured:
    """The Ray engine end to end (actor start-up included); Ray must be initialised."""
    from autoevol.engines import run_ray_evolve
    from autoevol.lm import CallPolicy

    server.reset()  # type: ignore[attr-defined]
    server_cpu = server.cpu_seconds() or 0.0  # type: ignore[attr-defined]
    cpu, started = cpu_seconds(), time.perf_counter()
    summary = run_ray_evolve(seed, out, evol_lm="openai/fake", api_base=server.url, actors=actors,  # type: ignore[attr-defined]
                             concurrency=concurrency, overwrite=True, policy=CallPolicy(timeout=30),
                             rounds=rounds, shard_size=1000)
    seconds = time.perf_counter() - started
    return Measured(f"ray, {actors} actor{'s' if actors > 1 else ''}", summary.rows, server.stats().ok,  # type: ignore[attr-defined]
                    seconds, cpu_seconds() - cpu, (server.cpu_seconds() or 0.0) - server_cpu,  # type: ignore[attr-defined]
                    actors * concurrency / latency)


def run(args: argparse.Namespace) -> tuple[list[Measured], list[Measured]]:
    """Every endpoint path (plus the peer), then the Ray engine if asked; returns both lists."""
    from autoevol.testing.fake_openai import serve_in_subprocess

    local: list[Measured] = []
    remote: list[Measured] = []
    with tempfile.TemporaryDirectory() as folder, serve_in_subprocess(latency=args.latency) as server:
        seed = write_seed(Path(folder), args.rows)
        for path in args.paths:
            print(f"measuring {path} ...", file=sys.stderr, flush=True)
            local.append(measure(path, path, server, seed, Path(folder) / "out.jsonl",
                                 concurrency=args.concurrency, latency=args.latency))
        for kind, name in FLOORS.items() if args.floor else ():
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            local.append(measure(name, kind, server, seed, Path(folder) / "floor.jsonl",
                                 concurrency=args.concurrency, latency=args.latency))
        if args.peer:
            print(f"measuring {args.peer} ...", file=sys.stderr, flush=True)
            local.append(measure("distilabel EvolInstruct", args.peer, server, seed, Path(folder) / "peer.jsonl",
                                 concurrency=args.concurrency, latency=args.latency))
        if args.ray:
            import ray

            ray_seed = write_seed(Path(folder), args.ray_rows)
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            try:
                for actors in (1, 2):
                    print(f"measuring ray, {actors} actors ...", file=sys.stderr, flush=True)
                    remote.append(measure_ray(server, ray_seed, Path(folder) / f"ray{actors}.jsonl", actors=actors,
                                              concurrency=args.ray_concurrency, latency=args.latency,
                                              rounds=args.ray_rounds))
            finally:
                ray.shutdown()
    return local, remote


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(args: argparse.Namespace, local: list[Measured], remote: list[Measured]) -> list[str]:
    """The figures as Markdown lines (printed, and written with ``--results``)."""
    lines = [f"{args.rows} rows, 2 LM calls per row, concurrency {args.concurrency}, fake server latency "
             f"{args.latency}s (bound {args.concurrency / args.latency:.0f} calls/s); client CPU = user + system "
             "CPU of the client process during the job (distilabel: its whole process tree).", "",
             "| client | calls | wall s | calls/s | share of bound | client CPU ms/call | server CPU ms/call |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {m.name} | {m.calls} | {m.seconds:.1f} | {m.calls_per_second:.1f} | {m.share:.1%} | "
              f"{m.client_ms_per_call:.2f} | {m.server_ms_per_call:.2f} |" for m in local]
    ours = [m for m in local if m.name in PATHS]
    peer = next((m for m in local if m.name not in PATHS and m.name not in FLOORS.values()), None)
    lines.append("")
    if ours:
        worst_share = min(m.share for m in ours)
        worst_cpu = max(m.client_ms_per_call for m in ours)
        lines += [f"- every endpoint path at least {TARGET_SHARE:.0%} of the bound: lowest {worst_share:.1%}, "
                  f"{verdict(worst_share >= TARGET_SHARE)}",
                  f"- client CPU per call at most {TARGET_CPU_MS} ms: highest {worst_cpu:.2f} ms, "
                  f"{verdict(worst_cpu <= TARGET_CPU_MS)}"]
        floors = [m for m in local if m.name in FLOORS.values()]
        if floors:
            lowest = min(m.client_ms_per_call for m in floors)
            lines.append(f"- DSPy alone costs {lowest:.2f} ms of client CPU per call here (lowest floor); "
                         f"autoevol's highest path is {worst_cpu / max(lowest, 1e-9):.2f}x that")
        if peer is not None:
            ratio = min(m.calls_per_second for m in ours) / max(peer.calls_per_second, 1e-9)
            lines.append(f"- peer ratio (slowest endpoint path / distilabel calls/s): {ratio:.2f}x (target "
                         f"{TARGET_PEER_RATIO}x), {verdict(ratio >= TARGET_PEER_RATIO)}")
    if len(remote) == 2:
        lines += ["", f"Ray engine, end to end (actor start-up included), {args.ray_rows} rows, {args.ray_rounds} "
                      f"rounds, concurrency {args.ray_concurrency} per actor:", "",
                  "| engine | rows | calls | wall s | calls/s | share of bound | driver CPU ms/call |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {m.name} | {m.rows} | {m.calls} | {m.seconds:.1f} | {m.calls_per_second:.1f} | {m.share:.1%} | "
                  f"{m.client_ms_per_call:.2f} |" for m in remote]
        speedup = remote[1].calls_per_second / max(remote[0].calls_per_second, 1e-9)
        lines += ["", f"- Ray, 2 actors vs 1, end to end: {speedup:.2f}x (target {TARGET_RAY_SPEEDUP}x), "
                      f"{verdict(speedup >= TARGET_RAY_SPEEDUP)}"]
    return lines


def write_results(path: Path, body: list[str], command: str) -> None:
    """Put this script's section into ``path``, in place of an earlier one (or at the end)."""
    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    started = datetime.datetime.now(datetime.timezone.utc)
    section = [SECTION, "", f"Run {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {load} at the end. "
               f"Command: `{command}`", "", *body, ""]
    text = path.read_text() if path.exists() else "# autoevol benchmarks\n"
    lines = text.splitlines()
    if SECTION in lines:
        start = lines.index(SECTION)
        end = next((k for k in range(start + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        lines[start:end] = section
    else:
        lines += ["", *section]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--rows", type=int, default=1500)
    parse.add_argument("--concurrency", type=int, default=32)
    parse.add_argument("--latency", type=float, default=0.1)
    parse.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parse.add_argument("--floor", action="store_true", help="also measure dspy.LM and dspy.Predict alone")
    parse.add_argument("--peer", choices=["distilabel"], default=None, help="run this peer in the same run")
    parse.add_argument("--ray", action="store_true", help="measure the Ray engine with 1 and 2 actors")
    parse.add_argument("--ray-rows", type=int, default=2000)
    parse.add_argument("--ray-rounds", type=int, default=2)
    parse.add_argument("--ray-concurrency", type=int, default=16, help="rows in flight per actor")
    parse.add_argument("--results", nargs="?", type=Path, const=HERE / "RESULTS.md", default=None,
                       help="write the figures as a section of this file (default benchmarks/RESULTS.md)")
    # one configuration, in its own process (used by the run itself)
    parse.add_argument("--child", choices=[*PATHS, *FLOORS, "distilabel"], help=argparse.SUPPRESS)
    parse.add_argument("--url", help=argparse.SUPPRESS)
    parse.add_argument("--seed", type=Path, help=argparse.SUPPRESS)
    parse.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parse


def main() -> None:
    args = parser().parse_args()
    if args.child:
        child_main(args)
        return
    local, remote = run(args)
    lines = report(args, local, remote)
    print("\n".join(lines))
    if args.results:
        command = "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        write_results(args.results, lines, command)
        print(f"wrote {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
