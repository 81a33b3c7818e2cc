"""Local throughput: items per minute of evolve + answer on llama.cpp's native server, by calls in flight.

For each number of calls in flight (``--in-flight``, default 1 2 4) a fresh server with that many
slots serves ``--items`` instructions from ``--seed-file``; each item is evolved by e_0, answered and
judged (two LM calls, as ``autoevol evolve`` does per row). Printed per setting: items per minute,
the server's decoding rate over the run (generated tokens per second of wall time, from its
``/metrics``), and the rows that failed as truncated (cut off at ``--max-tokens``).

With ``--old-python PY`` (an interpreter that has llama-cpp-python's server installed; the
default is this one when it has it) the same items run against ``python -m llama_cpp.server`` in
the same run, the server autoevol used before, which answers one call at a time. ``--embedded``
adds the embedded SmolLM2 model's seconds per row on the whole seed file at the default slots.
``--two-jobs`` measures two jobs on two model files at once (``--lm`` and the embedded model, one
server each, decoding side by side: ``--max-tokens`` tokens of ``--lm``, six times as many of the
embedded model, so that both decode over about the same time), with each server given every core
(as before issue 30 item 4) and with the free cores (today). The figures are measured, not asserted:

    python benchmarks/local_throughput.py --lm local:/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \\
        [--in-flight 1 2 4] [--items 4] [--max-tokens 128] [--embedded] [--old-python PY] [--two-jobs]
    python benchmarks/local_throughput.py --embedded          # the embedded model's figure alone
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dspy

from local_determinism import chat_completion

from autoevol.lm import CallPolicy, LMSession, ManagedLM
from autoevol.lm.cores import available_cores
from autoevol.lm.local import DEFAULT_SLOTS, LocalServer, default_model_path
from autoevol.lm.spec import LOCAL_STRUCTURED_MAX_TOKENS, parse_spec, writes_marked_text
from autoevol.lm.structured import LOCAL_DIALECT, install_routing_adapter
from autoevol.metrics import FailureDetector
from autoevol.programs.evolver import Evolver
from autoevol.programs.pipeline import evaluate_and_answer
from autoevol.threads import run_in_threads

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "examples" / "seed.jsonl"


def read_items(path: Path) -> list[str]:
    """The instructions of a seed file (one JSON object per line with an ``instruction``)."""
    return [json.loads(line)["instruction"] for line in path.read_text().splitlines() if line.strip()]


def generated_tokens(url: str) -> float:
    """The tokens the native server has generated so far (its ``/metrics`` counter)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("llamacpp:tokens_predicted_total"):
                return float(line.split()[-1])
    return float("nan")


def run_items(lm: dspy.LM, items: list[str], in_flight: int) -> tuple[float, int]:
    """Evolve and answer ``items`` with ``in_flight`` calls at once; (seconds, truncated rows)."""
    detector, evolver = FailureDetector(), Evolver()
    started = time.monotonic()
    with dspy.context(lm=lm):
        outcomes = run_in_threads(lambda text: evaluate_and_answer(text, evolver, detector=detector), items, in_flight)
    seconds = time.monotonic() - started
    return seconds, sum(1 for outcome in outcomes if outcome.verdict.rule == "truncated")


def measure_native(spec: str, items: list[str], in_flight: int, max_tokens: int) -> dict[str, float]:
    """One setting on the native server, started with ``in_flight`` slots."""
    policy = CallPolicy(timeout=3600)
    with LMSession(concurrency=in_flight, policy=policy) as session:
        lm = session.lm(spec, role="evol", max_tokens=max_tokens)
        url = session.servers[0].url
        before = generated_tokens(url)
        seconds, truncated = run_items(lm, items, in_flight)
        tokens = generated_tokens(url) - before
    return {"seconds": seconds, "items_per_min": 60 * len(items) / seconds, "tokens_per_s": tokens / seconds,
            "truncated": truncated}


@contextlib.contextmanager
def old_server(python: str, gguf: Path) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free port, as autoevol ran it before; yields its /v1 URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [python, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", "4096", "--n_threads", str(available_cores())]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/v1"
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"llama-cpp-python's server exited: {log.read()[-500:]!r}")
                try:
                    urllib.request.urlopen(f"{url}/models", timeout=2).close()
                    break
                except (urllib.error.URLError, OSError):
                    time.sleep(0.5)
            yield url
        finally:
            process.kill()
            process.wait()


def measure_old(python: str, gguf: Path, items: list[str], in_flight: int, max_tokens: int) -> dict[str, float]:
    """One setting on llama-cpp-python's server, called exactly as a local model is (same adapters)."""
    with old_server(python, gguf) as url:
        install_routing_adapter()
        lm = ManagedLM(f"hosted_vllm/{gguf.stem}", role="evol", api_base=url, api_key="local",
                       policy=CallPolicy(timeout=3600), temperature=0.0, max_tokens=max_tokens,
                       structured_output=LOCAL_DIALECT, structured_max_tokens=LOCAL_STRUCTURED_MAX_TOKENS,
                       marked_text=writes_marked_text(gguf))
        seconds, truncated = run_items(lm, items, in_flight)
        tokens = lm.usage.output_tokens
    return {"seconds": seconds, "items_per_min": 60 * len(items) / seconds, "tokens_per_s": tokens / seconds,
            "truncated": truncated}


#: Tokens the embedded model decodes per token of the measurement model in the two-jobs measurement
#: (SmolLM2-135M decodes several times faster than a 1.5B model).
EMBEDDED_SHARE = 6


def decode_rate(server: LocalServer, tokens: int) -> float:
    """Generated tokens per second of one call that decodes exactly ``tokens`` tokens."""
    started = time.monotonic()
    generated = chat_completion(server.api_base, "Tell a very long story.", tokens, ignore_eos=True)["usage"]
    return generated["completion_tokens"] / (time.monotonic() - started)


def measure_two_jobs(spec: str, tokens: int) -> None:
    """Decoding rates of ``spec``'s model and the embedded one, each alone and beside the other, by how
    threads are counted. Each model's "alone" is a server started with nothing else running, so it gets
    the threads a job alone on this machine would get."""
    gguf = parse_spec(spec).gguf
    if gguf is None:
        raise SystemExit("--lm must be a local model: local:FILE.gguf")
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"# two jobs at once: {gguf.name} beside the embedded {default_model_path().name}, {tokens} tokens "
          f"per call ({EMBEDDED_SHARE * tokens} for the embedded model), {available_cores()} cores, "
          f"load average {load}", flush=True)
    print("| threads of each server | threads beside each other (measurement model / embedded) "
          "| measurement model: alone, beside | ratio | embedded: alone, beside | ratio |")
    print("|---|---|---:|---:|---:|---:|", flush=True)
    for label, threads in (("every core (before)", available_cores()), ("free cores (today)", None)):
        with LocalServer(slots=1, n_threads=threads) as lone_embedded:
            embedded_alone = decode_rate(lone_embedded, EMBEDDED_SHARE * tokens)
            embedded_alone_threads = lone_embedded.n_threads
        with LocalServer(gguf, slots=1, n_threads=threads) as first:
            alone = decode_rate(first, tokens)
            with LocalServer(slots=1, n_threads=threads) as second:
                # the small model decodes EMBEDDED_SHARE times as many tokens, so both decode over about the same time
                beside, embedded_beside = run_in_threads(
                    lambda job: decode_rate(*job), [(first, tokens), (second, EMBEDDED_SHARE * tokens)], 2)
            print(f"| {label} | {first.n_threads} / {second.n_threads} | {alone:.1f} ({first.n_threads} threads), "
                  f"{beside:.2f} tokens/s | {beside / alone:.2f}x | {embedded_alone:.1f} ({embedded_alone_threads} "
                  f"threads), {embedded_beside:.2f} tokens/s | {embedded_beside / embedded_alone:.2f}x |", flush=True)


def default_old_python() -> str | None:
    """This interpreter when it has llama-cpp-python's server, else None."""
    with contextlib.suppress(ImportError):
        import llama_cpp.server  # noqa: F401

        return sys.executable
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lm", help="the measurement model, local:FILE.gguf (without it: --embedded only)")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--items", type=int, default=4, help="items per setting, taken from --seed-file")
    parser.add_argument("--seed-file", type=Path, default=SEED)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--embedded", action="store_true", help="also: the embedded model's seconds per row")
    parser.add_argument("--old-python", default=default_old_python(),
                        help="an interpreter with llama-cpp-python's server, to measure the old runtime too")
    parser.add_argument("--two-jobs", action="store_true",
                        help="with --lm: only the two-jobs measurement (--lm beside the embedded model)")
    args = parser.parse_args()
    if args.two_jobs:
        if not args.lm:
            raise SystemExit("--two-jobs needs --lm local:FILE.gguf")
        measure_two_jobs(args.lm, args.max_tokens)
    elif args.lm:
        measure_model(args)
    if args.embedded:
        rows = read_items(SEED)
        figures = measure_native("local", rows, DEFAULT_SLOTS, 768)  # autoevol evolve's defaults
        print(f"\nembedded SmolLM2-135M on {SEED.name}: {len(rows)} rows, {DEFAULT_SLOTS} in flight, "
              f"{figures['seconds'] / len(rows):.1f} s per row ({figures['seconds']:.0f} s, "
              f"{figures['truncated']} truncated)", flush=True)


def measure_model(args: argparse.Namespace) -> None:
    """The table of items per minute by calls in flight, for ``--lm`` on both runtimes."""
    gguf = parse_spec(args.lm).gguf
    if gguf is None:
        raise SystemExit("--lm must be a local model: local:FILE.gguf")
    items = (read_items(args.seed_file) * args.items)[:args.items]
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"# {gguf.name}, {len(items)} items per setting, max_tokens {args.max_tokens}, "
          f"{available_cores()} cores, load average {load}", flush=True)
    print("| server | in flight | items/min | generated tokens/s | truncated | seconds |")
    print("|---|---:|---:|---:|---:|---:|", flush=True)
    runs: list[tuple[str, int]] = [("xllamacpp (native, slots = in flight)", k) for k in args.in_flight]
    if args.old_python:
        runs += [("llama-cpp-python server (one call at a time)", k) for k in args.in_flight]
    else:
        print("(llama-cpp-python not installed: the old runtime is not measured; give --old-python PY)", flush=True)
    for name, in_flight in runs:
        if name.startswith("xllamacpp"):
            figures = measure_native(args.lm, items, in_flight, args.max_tokens)
        else:
            figures = measure_old(args.old_python, gguf, items, in_flight, args.max_tokens)
        print(f"| {name} | {in_flight} | {figures['items_per_min']:.2f} | {figures['tokens_per_s']:.1f} | "
              f"{figures['truncated']} | {figures['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
