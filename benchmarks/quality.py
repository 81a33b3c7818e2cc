"""Held-out failure rate of e_0, of classic Evol-Instruct and of a compiled evolver, with a real LM.

The seed file is split with a fixed seed into a training part (used to compile, unless
``--evolver`` gives an already compiled one) and a held-out part; every method is evaluated on
the same held-out items with the same LM and failure rules (``failure rate = failed / items``).

    # an OpenAI-compatible endpoint (vLLM, llama.cpp server, OpenAI...)
    python benchmarks/quality.py --lm openai/MODEL --api-base http://host:8000/v1 --seed-file seeds.jsonl
    # the embedded llama.cpp model, or any local GGUF file (slow on a CPU: keep --held-out small)
    python benchmarks/quality.py --lm local:/models/qwen2.5-1.5b-instruct-q4_k_m.gguf --seed-file seeds.jsonl
    # skip compiling: evaluate a compiled evolver saved by `autoevol compile`
    python benchmarks/quality.py --lm ... --seed-file seeds.jsonl --evolver evolver.json

Prints a Markdown table; ``--json FILE`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import dspy

from autoevol.data import iter_items
from autoevol.lm import CallPolicy, LMSession
from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.rate import failure_rate
from autoevol.programs.evolver import Evolver


@dataclass
class QualityRow:
    """The held-out failure rate of one method."""

    method: str
    failure_rate: float
    failed: int
    items: int
    top_rules: str
    seconds: float


def split(texts: list[str], held_out: int, seed: int) -> tuple[list[str], list[str]]:
    """Shuffle with ``seed``; the last ``held_out`` texts are held out, the rest train."""
    shuffled = list(dict.fromkeys(texts))
    random.Random(seed).shuffle(shuffled)
    if len(shuffled) <= held_out:
        raise SystemExit(f"need more than {held_out} distinct instructions, the seed file has {len(shuffled)}")
    return shuffled[:-held_out], shuffled[-held_out:]


def evaluate(name: str, program: dspy.Module, items: list[str], detector: FailureDetector,
             threads: int) -> QualityRow:
    started = time.monotonic()
    result = failure_rate(program, items, detector=detector, num_threads=threads)
    rules = ", ".join(f"{rule} {count}" for rule, count in sorted(result.by_rule.items(), key=lambda kv: -kv[1])[:3])
    return QualityRow(name, result.rate, result.failed, result.total, rules or "-", time.monotonic() - started)


def compile_evolver(train: list[str], lm: dspy.LM, args: argparse.Namespace) -> Evolver:
    """A small Auto Evol-Instruct compile (the settings are flags; the defaults fit a slow LM)."""
    from autoevol.optimizers import AutoEvolInstruct

    teleprompter = AutoEvolInstruct(optimizer_lm=lm, evol_lm=lm, num_candidates=args.candidates,
                                    batch_size=args.batch, dev_size=args.dev, max_steps=args.steps,
                                    seed=args.seed, num_threads=args.threads)
    return teleprompter.compile(Evolver(), trainset=train)


def run(args: argparse.Namespace) -> list[QualityRow]:
    """Evaluate every method on the held-out items; returns one row per method."""
    texts = [item.instruction for item in iter_items(args.seed_file, column=args.column) if not item.problem]
    train, held_out = split(texts, args.held_out, args.seed)
    rows: list[QualityRow] = []
    policy = CallPolicy(timeout=args.timeout)
    with LMSession(concurrency=args.threads, policy=policy) as session:
        lm = session.lm(args.lm, role="evol", api_base=args.api_base, max_tokens=args.max_tokens)
        detector = FailureDetector()
        with dspy.context(lm=lm):
            rows.append(evaluate("e_0 (initial method)", Evolver(), held_out, detector, args.threads))
            try:
                from autoevol.baselines import EvolInstructBaseline
            except ImportError:
                EvolInstructBaseline = None  # noqa: N806  (the baseline module is optional)
            if EvolInstructBaseline is not None:
                rows.append(evaluate("Evol-Instruct operations", EvolInstructBaseline(seed=args.seed), held_out,
                                     detector, args.threads))
            if args.evolver:
                compiled, label = Evolver.load(args.evolver), f"compiled ({Path(args.evolver).name})"
            else:
                compiled, label = compile_evolver(train, lm, args), f"compiled here ({args.steps} steps)"
            rows.append(evaluate(label, compiled, held_out, detector, args.threads))
    return rows


def markdown(rows: list[QualityRow]) -> str:
    lines = ["| method | held-out failure rate | failed / items | most frequent rules | seconds |",
             "|---|---:|---:|---|---:|"]
    lines += [f"| {r.method} | {r.failure_rate:.1%} | {r.failed} / {r.items} | {r.top_rules} | {r.seconds:.0f} |"
              for r in rows]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--lm", required=True, help="LM spec: 'local', 'local:FILE.gguf' or a DSPy model string")
    parse.add_argument("--seed-file", required=True, type=Path)
    parse.add_argument("--api-base", default=None)
    parse.add_argument("--column", default=None)
    parse.add_argument("--evolver", default=None, help="a compiled evolver (.json) instead of compiling here")
    parse.add_argument("--held-out", type=int, default=30)
    parse.add_argument("--steps", type=int, default=2)
    parse.add_argument("--candidates", type=int, default=3)
    parse.add_argument("--batch", type=int, default=5)
    parse.add_argument("--dev", type=int, default=10)
    parse.add_argument("--threads", type=int, default=4)
    parse.add_argument("--max-tokens", type=int, default=512)
    parse.add_argument("--timeout", type=float, default=300.0)
    parse.add_argument("--seed", type=int, default=0)
    parse.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parse


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    rows = run(args)
    print(f"held-out failure rate on {args.seed_file} with {args.lm} ({args.held_out} items)\n")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
