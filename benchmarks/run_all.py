"""Run every benchmark and write one Markdown report (default ``benchmarks/RESULTS.md``).

Sections: evolve throughput as a share of the bound (local engine, Ray engine with 1 and 2 actors,
fake server with a fixed latency); peak memory of ``autoevol evolve`` on growing inputs; compile
LM calls per step with and without racing; and, only when ``--lm`` is given, the held-out failure
rate of e_0, classic Evol-Instruct and a compiled evolver (``benchmarks/quality.py``).

    python benchmarks/run_all.py                        # everything but quality, ~5 minutes
    python benchmarks/run_all.py --quick                # smaller sizes, for a smoke run
    python benchmarks/run_all.py --lm openai/MODEL --api-base URL --seed-file seeds.jsonl
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TARGET_LOCAL_SHARE = 0.90
TARGET_RAY_SPEEDUP = 1.6


def machine() -> str:
    """CPU model, cores, memory, OS and Python, plus the load when the suite started."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.1f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    load = ", load average at start {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    import ray

    return (f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; Ray {ray.__version__}{load}")


def throughput_section(args: argparse.Namespace) -> list[str]:
    import ray_throughput

    results = ray_throughput.run(rows=args.rows, concurrency=args.concurrency, latency=args.latency,
                                 actors=[1, 2])
    lines = [f"## Evolve throughput (fake server, latency {args.latency}s, concurrency {args.concurrency} per "
             "engine / actor, 2 LM calls per row)", "",
             "| engine | rows | LM calls | wall s | calls/s | bound calls/s | share of bound | steady share |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.engine} | {r.rows} | {r.calls} | {r.seconds:.1f} | {r.calls_per_second:.1f} | {r.bound:.0f} "
              f"| {r.share:.1%} | {r.steady_share:.1%} |" for r in results]
    local, one, two = results[0], results[1], results[2]
    speedup = two.calls_per_second / one.calls_per_second
    steady = two.steady_calls_per_second / one.steady_calls_per_second
    lines += ["", f"- local engine: {local.share:.1%} of the bound (target {TARGET_LOCAL_SHARE:.0%}): "
                  f"{'met' if local.share >= TARGET_LOCAL_SHARE else 'NOT met'}",
              f"- Ray, 2 actors vs 1: {speedup:.2f}x end to end, {steady:.2f}x steady (target "
              f"{TARGET_RAY_SPEEDUP}x): {'met' if speedup >= TARGET_RAY_SPEEDUP else 'met steady only' if steady >= TARGET_RAY_SPEEDUP else 'NOT met'}",
              "- end to end includes starting Ray Data's actor pool (imports, LM client) per round; steady counts "
              "from the first row the driver receives to the last."]
    return lines


def memory_section(args: argparse.Namespace) -> list[str]:
    result = subprocess.run([sys.executable, str(HERE / "evolve_memory.py"), *map(str, args.memory_rows)],
                            capture_output=True, text=True)
    pattern = re.compile(r"\[measured\] (\d+) rows: exit (-?\d+), peak RSS (-?\d+) MB, (\d+) s \((\d+) rows/s\)")
    lines = ["## Memory on growing inputs (`autoevol evolve`, local engine, fake server without latency)", "",
             "| input rows | exit | peak RSS MB | seconds | rows/s |", "|---:|---:|---:|---:|---:|"]
    found = pattern.findall(result.stdout)
    lines += [f"| {rows} | {code} | {peak} | {seconds} | {rate} |" for rows, code, peak, seconds, rate in found]
    if not found:
        lines += ["", f"(evolve_memory.py produced no figures: exit {result.returncode}: "
                      f"{result.stderr.strip()[-300:]})"]
    return lines


def compile_section(args: argparse.Namespace) -> list[str]:
    command = [sys.executable, str(HERE / "compile_calls.py"), "--compiles", str(args.compiles), "--steps",
               str(args.compile_steps), "--sim-steps", str(args.sim_steps)]
    result = subprocess.run(command, capture_output=True, text=True)
    lines = ["## Compile LM calls per step, with and without racing (`benchmarks/compile_calls.py`)", ""]
    paper = re.search(r"paper's schedule: .*", result.stdout)
    rows = re.findall(r"^\s+(ours, [a-z ,]+?)\s+([\d.]+) calls/step \(evol ([\d.]+), optimizer ([\d.]+).*?; "
                      r"([\d.-]+%) fewer than the paper; picked the truly best method in (\d+/\d+) steps",
                      result.stdout, flags=re.MULTILINE)
    if rows:
        lines += [f"{paper.group(0)}" if paper else "", "",
                  "| setting | calls/step | evol | optimizer | fewer than the paper | picked the best |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {label} | {calls} | {evol} | {opt} | {fewer} | {picked} |"
                  for label, calls, evol, opt, fewer, picked in rows]
    else:
        lines += [f"(compile_calls.py produced no figures: exit {result.returncode}: {result.stderr.strip()[-300:]})"]
    part_b = result.stdout.split("Part B", 1)
    if len(part_b) == 2:
        lines += ["", "Selection quality, simulated (Part B, verbatim):", "", "```", "Part B" + part_b[1].rstrip(),
                  "```"]
    return lines


def quality_section(args: argparse.Namespace) -> list[str]:
    import quality

    argv = ["--lm", args.lm, "--seed-file", str(args.seed_file), "--held-out", str(args.held_out)]
    if args.api_base:
        argv += ["--api-base", args.api_base]
    if args.evolver:
        argv += ["--evolver", args.evolver]
    rows = quality.run(quality.parser().parse_args(argv))
    return [f"## Quality: held-out failure rate ({args.lm}, {args.seed_file.name}, {args.held_out} items)", "",
            quality.markdown(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not figures to quote)")
    parser.add_argument("--rows", type=int, default=2000, help="rows per throughput run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--memory-rows", type=int, nargs="+", default=[2000, 10000, 40000])
    parser.add_argument("--compiles", type=int, default=3)
    parser.add_argument("--compile-steps", type=int, default=5)
    parser.add_argument("--sim-steps", type=int, default=300)
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "memory", "compile"])
    parser.add_argument("--lm", default=None, help="run the quality benchmark with this LM spec")
    parser.add_argument("--api-base", default=None)
    parser.add_argument("--seed-file", type=Path, default=HERE.parent / "examples" / "seed.jsonl")
    parser.add_argument("--evolver", default=None)
    parser.add_argument("--held-out", type=int, default=30)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.memory_rows, args.compiles, args.compile_steps, args.sim_steps = 400, [1000, 4000], 1, 2, 50

    started = datetime.datetime.now(datetime.timezone.utc)
    sections = ["# autoevol benchmarks", "", f"Run {started:%Y-%m-%d %H:%M} UTC on: {machine()}.", "",
                "Command: `python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) + "`", ""]
    steps = [("throughput", throughput_section), ("memory", memory_section), ("compile", compile_section)]
    for name, section in steps:
        if name in args.skip:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        sections += section(args) + [""]
    if args.lm:
        print("running quality ...", file=sys.stderr, flush=True)
        sections += quality_section(args) + [""]
    else:
        sections += ["## Quality", "", "Not run: give `--lm SPEC` (and `--api-base URL` for an endpoint) to measure "
                     "the held-out failure rate of e_0, Evol-Instruct and a compiled evolver.", ""]
    args.out.write_text("\n".join(sections))
    print("\n".join(sections))


if __name__ == "__main__":
    main()
