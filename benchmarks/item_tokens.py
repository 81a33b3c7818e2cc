"""Where an item's tokens go, and what a smaller answer cap changes (issue 29 item 2).

Reads the per-item records of ``quality.py`` or ``head_to_head.py`` runs
(``--records FILE ...``, the ``*.items.jsonl`` files) and prints, per file, the evol role's output
tokens per item split into working notes, rewrite and answer, and the judge's. The records hold
each call's tokens per role, not per part, so the evol role's measured output tokens are shared
out by the characters of each part (an estimate; the total is measured).

With ``--lm`` and ``--answer-caps`` it also answers again every recorded rewrite that reached the
answer (the evolution rules passed) once per cap, the DSPy cache off, and prints per cap: answer
tokens and seconds per answered item, how many items the response rules judge differently than at
the largest cap, and the items per hour of the evaluation with that cap (each file's recorded
seconds per item, with the answer time at ``--recorded-cap``, the records' own cap, replaced by this
cap's):

    python benchmarks/item_tokens.py --records benchmarks/runs/h2h-self-instruct/quality.e0.items.jsonl
    python benchmarks/item_tokens.py --records RUN.items.jsonl --lm local:/models/model.gguf \\
        --answer-caps 450 200 100 --recorded-cap 200 --items 40

The response rules read an answer's opening, whether it is short, and how it ends (see
``autoevol/metrics/rules.py``); the judge, when a run has one, is not replayed.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from quality_eval import read_lines  # noqa: E402

from autoevol.lm import CallPolicy, LMSession  # noqa: E402
from autoevol.metrics import FailureDetector  # noqa: E402
from autoevol.programs.responder import Responder  # noqa: E402


@dataclass
class TokenSplit:
    """One records file's output tokens per item, by part (notes, rewrite, answer estimated)."""

    items: int
    seconds_per_item: float
    evol_output: float
    notes: float
    rewrite: float
    answer: float
    judge_output: float
    answered: int


def token_split(lines: list[dict[str, Any]]) -> TokenSplit:
    """Share the evol role's measured output tokens out by the characters of each part."""
    chars = {"notes": 0, "rewrite": 0, "answer": 0}
    evol = judge = seconds = 0.0
    answered = 0
    for line in lines:
        outcome = line["outcome"]
        chars["notes"] += len(outcome.get("notes") or "")
        chars["rewrite"] += len(outcome.get("evolved") or "")
        chars["answer"] += len(outcome.get("answer") or "")
        answered += outcome.get("answer") is not None
        usage = line.get("usage") or {}
        evol += float((usage.get("evol") or {}).get("output_tokens", 0))
        judge += float((usage.get("judge") or {}).get("output_tokens", 0))
        seconds += float(line.get("seconds") or 0.0)
    items = max(1, len(lines))
    total_chars = sum(chars.values()) or 1
    share = {part: evol * count / total_chars / items for part, count in chars.items()}
    return TokenSplit(items=len(lines), seconds_per_item=seconds / items, evol_output=evol / items,
                      notes=share["notes"], rewrite=share["rewrite"], answer=share["answer"],
                      judge_output=judge / items, answered=answered)


@dataclass
class CapResult:
    """The recorded rewrites answered again at one cap."""

    cap: int
    answered: int
    output_tokens_per_answer: float
    seconds_per_answer: float
    verdicts: list[str | None]  # the rule that failed each item, None when it passed


def replay_answers(lines: list[dict[str, Any]], caps: list[int], session: LMSession, spec: str,
                   api_base: str | None) -> list[CapResult]:
    """Answer every answered item's rewrite at each cap and judge it by the cheap rules."""
    detector = FailureDetector()
    cases = [line["outcome"] for line in lines if line["outcome"].get("answer") is not None]
    results = []
    for cap in caps:
        lm = session.lm(spec, role="evol", api_base=api_base, max_tokens=cap, cache=False)
        responder, verdicts = Responder(max_tokens=cap), []
        before, started = lm.usage.output_tokens, time.monotonic()
        for done, case in enumerate(cases, 1):
            with dspy.context(lm=lm):
                answer = responder(instruction=case["evolved"]).answer
            verdicts.append(detector.detect(case["original"], case["evolved"], answer).rule)
            print(f"[cap {cap}] {done}/{len(cases)} answered", file=sys.stderr, flush=True)
        seconds = time.monotonic() - started
        count = max(1, len(cases))
        results.append(CapResult(cap=cap, answered=len(cases), output_tokens_per_answer=(lm.usage.output_tokens - before) / count,
                                 seconds_per_answer=seconds / count, verdicts=verdicts))
    return results


def split_table(files: list[Path], splits: list[TokenSplit]) -> str:
    lines = ["| records | items | answered | evol output tokens / item | working notes | rewrite | answer | "
             "judge output tokens / item | recorded seconds / item |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for path, s in zip(files, splits):
        lines.append(f"| {path.parent.name}/{path.name} | {s.items} | {s.answered} | {s.evol_output:.0f} | {s.notes:.0f} | "
                     f"{s.rewrite:.0f} | {s.answer:.0f} | {s.judge_output:.0f} | {s.seconds_per_item:.1f} |")
    return "\n".join(lines)


def cap_table(results: list[CapResult], split: TokenSplit, recorded_cap: int) -> str:
    """Per cap: answer cost, verdicts changed against the largest cap, items per hour of the evaluation
    (the records' seconds per item with the answer time at ``recorded_cap``, the cap the records were
    made with, replaced by this cap's)."""
    reference = max(results, key=lambda r: r.cap)
    recorded = next(r for r in results if r.cap == recorded_cap)
    lines = ["| answer cap | answered items | output tokens / answer | seconds / answer | verdicts changed "
             "(against the largest cap) | items / hour |", "|---:|---:|---:|---:|---:|---:|"]
    answered_share = split.answered / max(1, split.items)
    for r in sorted(results, key=lambda r: -r.cap):
        changed = sum(a != b for a, b in zip(r.verdicts, reference.verdicts))
        per_item = split.seconds_per_item + answered_share * (r.seconds_per_answer - recorded.seconds_per_answer)
        lines.append(f"| {r.cap} | {r.answered} | {r.output_tokens_per_answer:.0f} | {r.seconds_per_answer:.1f} | "
                     f"{changed} of {r.answered} | {3600 / per_item:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--records", type=Path, nargs="+", required=True, help="*.items.jsonl files of benchmark runs")
    parse.add_argument("--lm", default=None, help="LM spec to answer again with (the runs' evol LM)")
    parse.add_argument("--api-base", default=None)
    parse.add_argument("--answer-caps", type=int, nargs="+", default=[], metavar="TOKENS",
                       help="answer caps to replay (verdicts are compared with the largest cap's)")
    parse.add_argument("--recorded-cap", type=int, default=None, metavar="TOKENS",
                       help="the answer cap the records were made with, one of --answer-caps (default: the "
                            "largest); items per hour replace its answer time by each cap's")
    parse.add_argument("--items", type=int, default=None, help="replay at most this many answered items per file")
    args = parse.parse_args(argv)
    missing = [str(path) for path in args.records if not path.is_file()]
    if missing:
        raise SystemExit(f"error: no records file {missing[0]}")
    if args.answer_caps and not args.lm:
        raise SystemExit("error: --answer-caps needs --lm")
    recorded_cap = args.recorded_cap if args.recorded_cap is not None else max(args.answer_caps, default=0)
    if args.answer_caps and recorded_cap not in args.answer_caps:
        raise SystemExit(f"error: --recorded-cap {recorded_cap} is not one of --answer-caps")
    records = [list(read_lines(path)) for path in args.records]
    for path, lines in zip(args.records, records):
        odd = next((number for number, line in enumerate(lines, 1) if "outcome" not in line), None)
        if odd is not None or not lines:
            raise SystemExit(f"error: {path}: {'no records' if not lines else f'record {odd} has no outcome'} "
                             "(give the *.items.jsonl of quality.py or head_to_head.py)")
    splits = [token_split(lines) for lines in records]
    print(split_table(args.records, splits), flush=True)
    if not args.answer_caps:
        return
    with LMSession(concurrency=1, policy=CallPolicy(timeout=900)) as session:
        for path, lines, split in zip(args.records, records, splits):
            answered = [line for line in lines if line["outcome"].get("answer") is not None][:args.items]
            results = replay_answers(answered, sorted(set(args.answer_caps), reverse=True), session, args.lm, args.api_base)
            print(f"\n{path.parent.name}/{path.name}: {len(answered)} recorded rewrites answered again per cap\n", flush=True)
            print(cap_table(results, split, recorded_cap), flush=True)


if __name__ == "__main__":
    main()
