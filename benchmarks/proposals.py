"""Proposal validity with a real optimizer LM: the proposal step of recorded compile steps, sampled again.

A compile run folder (``autoevol compile --run-dir``, or ``<stem>.compile.run`` of
``benchmarks/quality.py``) keeps each step's incumbent method and trajectory. This script gives
them to the compile's proposal step (:class:`autoevol.optimizers.auto_evol.proposal.MethodProposer`: one
analysis, then up to ``proposal_attempts`` proposals per candidate) ``--samples`` times per step,
with rollout ids of its own seed, and prints how many candidates came out valid, how many at their
first attempt, why attempts were rejected, the LM calls and the wall time. No dev item is
evaluated, so this measures "proposals valid" on many more candidates than a compile's m, at a
fraction of a compile's cost.

    python benchmarks/proposals.py --run-dir RUN --lm local:/models/model.gguf --samples 8
    python benchmarks/proposals.py ... --mode rewrite      # the paper's whole-method rewrite instead
    python benchmarks/proposals.py ... --cache calls.sqlite  # paired: run two versions on one cache

The proposal settings (mode, attempts, length budget, temperature, top_p) default to the ones the
run recorded.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dspy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_eval import role_usage  # noqa: E402

from autoevol.lm import CallCache, CallPolicy, LMSession  # noqa: E402
from autoevol.optimizers.auto_evol.proposal import MethodProposer, analysis_context  # noqa: E402
from autoevol.optimizers.auto_evol.records import CandidateRecord, StepRecord  # noqa: E402
from autoevol.optimizers.auto_evol.run_dir import RunDirectory, RunDirError  # noqa: E402

#: Settings of the proposal step, read from the run's ``run.json`` unless a flag gives them.
PROPOSAL_SETTINGS = ("proposal_mode", "proposal_attempts", "max_method_words", "temperature", "top_p")


def recorded_run(run_dir: Path) -> tuple[dict[str, Any], list[StepRecord]]:
    """The settings and the step records of a compile run folder."""
    try:
        run = RunDirectory.read(run_dir)
        steps = run.steps()
    except RunDirError as error:
        raise SystemExit(f"error: {error}") from None
    if not steps:
        raise SystemExit(f"error: {run_dir} has no finished step")
    return run.header.settings, steps


def reason_kind(reason: str) -> str:
    """A rejection reason without its particulars (numbers, quoted text), to count alike reasons together."""
    return re.sub(r"\d+", "N", re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", reason))[:110]


def summary(candidates: list[CandidateRecord]) -> dict[str, Any]:
    """Valid candidates, first-attempt successes, attempts, and the rejection reasons by kind."""
    reasons = Counter(reason_kind(reason) for candidate in candidates for reason in candidate.rejected)
    return {"candidates": len(candidates), "valid": sum(not c.invalid for c in candidates),
            "valid_first_attempt": sum(not c.invalid and c.attempts == 1 for c in candidates),
            "attempts": sum(c.attempts for c in candidates), "rejected_attempts": dict(reasons.most_common())}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Sample the proposal step of every recorded step; the figures, per step and in all."""
    recorded, steps = recorded_run(args.run_dir)
    missing = [name for name in PROPOSAL_SETTINGS if getattr(args, name) is None and name not in recorded]
    if missing:
        raise SystemExit(f"error: {args.run_dir / 'run.json'} does not record {', '.join(missing)}; give them as flags")
    chosen = {name: getattr(args, name) if getattr(args, name) is not None else recorded[name]
              for name in PROPOSAL_SETTINGS}
    proposer = MethodProposer(mode=chosen["proposal_mode"], attempts=chosen["proposal_attempts"],
                              max_method_words=chosen["max_method_words"], temperature=chosen["temperature"],
                              top_p=chosen["top_p"], seed=args.seed)
    report: dict[str, Any] = {"run_dir": str(args.run_dir), "lm": args.lm, "seed": args.seed, **chosen, "steps": []}
    every: list[CandidateRecord] = []
    policy = CallPolicy(timeout=args.timeout, max_retries=args.retries)
    started = time.monotonic()
    cache = CallCache(args.cache) if args.cache is not None else None
    with LMSession(concurrency=1, policy=policy, call_cache=cache) as session:
        optimizer = session.lm(args.lm, role="optimizer", api_base=args.api_base, max_tokens=args.max_tokens)
        for position, step in enumerate(steps):
            context = analysis_context(step.incumbent, steps[:position])
            candidates = []
            with dspy.context(lm=optimizer):
                for index in range(1, args.samples + 1):
                    candidate = proposer.propose(index, step.incumbent, step.trajectory, context, step.step)
                    candidates.append(candidate)
                    elapsed = time.monotonic() - started
                    print(f"step {step.step} sample {index}/{args.samples}: "
                          f"{'invalid: ' + str(candidate.invalid_reason) if candidate.invalid else 'valid'} "
                          f"({candidate.attempts} attempt(s), {elapsed / 60:.1f} min so far)", file=sys.stderr, flush=True)
            every += candidates
            report["steps"].append({"step": step.step, **summary(candidates),
                                    "changes": [c.change for c in candidates if not c.invalid]})
        report["usage"] = role_usage(session)
    report["total"] = summary(every)
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    return report


def markdown(report: dict[str, Any]) -> str:
    """One row per step and one in all."""
    lines = ["| step | candidates | valid | valid at first attempt | attempts | rejected attempts by reason |",
             "|---|---:|---:|---:|---:|---|"]
    for row in [*report["steps"], {"step": "all", **report["total"]}]:
        reasons = "; ".join(f"{reason} ({count})" for reason, count in row["rejected_attempts"].items()) or "-"
        lines.append(f"| {row['step']} | {row['candidates']} | {row['valid']} | {row['valid_first_attempt']} "
                     f"| {row['attempts']} | {reasons} |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--run-dir", type=Path, required=True, help="a compile run folder with finished steps")
    parse.add_argument("--lm", required=True, help="optimizer LM spec: 'local:FILE.gguf' or a DSPy model")
    parse.add_argument("--api-base", default=None)
    parse.add_argument("--samples", type=int, default=8, help="candidates per recorded step")
    parse.add_argument("--seed", type=int, default=1000, help="seeds the rollout ids (not the compile's own)")
    parse.add_argument("--mode", dest="proposal_mode", choices=("edit", "rewrite"), default=None)
    parse.add_argument("--attempts", dest="proposal_attempts", type=int, default=None)
    parse.add_argument("--max-method-words", dest="max_method_words", type=int, default=None)
    parse.add_argument("--temperature", type=float, default=None)
    parse.add_argument("--top-p", dest="top_p", type=float, default=None)
    parse.add_argument("--max-tokens", type=int, default=1024)
    parse.add_argument("--timeout", type=float, default=300.0)
    parse.add_argument("--retries", type=int, default=4)
    parse.add_argument("--json", type=Path, default=None, help="write every figure here")
    parse.add_argument("--cache", type=Path, default=None, metavar="FILE.sqlite",
                       help="keep the LM calls here and reuse them: two versions of the proposal step run with one "
                            "cache see the same analyses and first proposals, and differ only where they act apart")
    parse.add_argument("--verbose", action="store_true", help="log each attempt's problem")
    return parse


def main(argv: list[str] | None = None) -> None:
    """Run and print the table; write ``--json`` when given."""
    args = parser().parse_args(argv)
    if args.samples < 1:
        raise SystemExit("error: --samples must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("LiteLLM", "httpx", "dspy"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    logging.getLogger("autoevol").setLevel(logging.INFO if args.verbose else logging.WARNING)
    report = run(args)
    total = report["total"]
    print(f"proposals valid: {total['valid']}/{total['candidates']} ({100 * total['valid'] / total['candidates']:.0f}%), "
          f"{report['proposal_mode']} mode, {args.lm}, {report['wall_seconds'] / 60:.1f} min, "
          f"optimizer calls {report['usage'].get('optimizer', {}).get('calls', 0)}\n\n{markdown(report)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": sys.argv, **report}, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
