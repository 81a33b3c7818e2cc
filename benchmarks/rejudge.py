"""Re-judge recorded outcomes with today's cheap rules: which recorded verdicts would change.

A run's records keep every item's original, rewrite, answer and verdict, and they accumulate over
sessions. When a rule changes in between, verdicts recorded before and after the change no longer
mean the same; this reads a run folder's item files (no LM call), applies the current cheap rules
to each outcome, and counts per file the verdicts that would change. Verdicts that need an LM (the
judge's, LM errors, unparseable rewrites) are kept as recorded, and so is an item whose rewrite
failed an evolution rule before it was answered but passes them now (its answer was never made).

    python benchmarks/rejudge.py benchmarks/runs/h2h-humaneval [--disable-rule NAME]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from quality_eval import read_lines  # noqa: E402
from run_records import replace_section  # noqa: E402

from autoevol.metrics.failure import FailureDetector  # noqa: E402

#: Recorded rules whose verdicts an LM made: re-judging them would need the LM again.
LM_VERDICTS = ("judge", "lm_error", "unparseable")


@dataclass
class Rejudged:
    """One item file's recorded verdicts against today's rules."""

    file: str
    rejudged: int = 0
    kept: int = 0  # verdicts that need an LM, or answers never made
    failed_before: int = 0
    failed_now: int = 0
    changes: list[str] = field(default_factory=list)  # "id: recorded rule -> new rule"


def rejudge_file(path: Path, detector: FailureDetector) -> Rejudged:
    """Every outcome of ``path`` judged again by ``detector``'s cheap rules."""
    result = Rejudged(file=path.name)
    for line in read_lines(path):
        outcome = line.get("outcome") if isinstance(line, dict) else None
        if not outcome:
            continue
        recorded = outcome["verdict"]
        rule = recorded.get("rule") or ""
        if rule.startswith(LM_VERDICTS) or outcome.get("evolved") is None:
            result.kept += 1
            continue
        if outcome.get("answer") is None:  # not answered: only the evolution rules can be applied
            verdict = detector.detect_evolution(outcome["original"], outcome["evolved"])
            if verdict is None and recorded.get("failed"):
                result.kept += 1
                continue
        else:
            verdict = detector.detect(outcome["original"], outcome["evolved"], outcome["answer"])
        failed_now = bool(verdict is not None and verdict.failed)
        result.rejudged += 1
        result.failed_before += bool(recorded.get("failed"))
        result.failed_now += failed_now
        if failed_now != bool(recorded.get("failed")):
            result.changes.append(f"{line.get('id')}: {rule or 'passed'} -> {verdict.rule if failed_now else 'passed'}")
    return result


def markdown(results: list[Rejudged]) -> str:
    """A table of the files, then the changed items of each."""
    lines = ["| records | re-judged | kept as recorded | failed as recorded | failed by today's rules | changed |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.file} | {r.rejudged} | {r.kept} | {r.failed_before} | {r.failed_now} | {len(r.changes)} |"
              for r in results]
    lines += [""] + [f"- {r.file}: {'; '.join(r.changes)}" for r in results if r.changes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("folder", type=Path, help="a run folder (its *.items.jsonl files are read)")
    parse.add_argument("--disable-rule", action="append", help="leave a rule out, as the run did (repeatable)")
    parse.add_argument("--results-md", type=Path, default=None, help="also write the table into this file's "
                                                                     "section for the folder")
    args = parse.parse_args(argv)
    files = sorted(args.folder.glob("*.items.jsonl"))
    if not files:
        raise SystemExit(f"error: {args.folder}: no *.items.jsonl file")
    detector = FailureDetector(disable=args.disable_rule or ())
    body = markdown([rejudge_file(path, detector) for path in files])
    print(body)
    if args.results_md:
        title = f"Recorded verdicts of `{args.folder.name}` judged again by today's cheap rules"
        command = f"python benchmarks/rejudge.py {' '.join(sys.argv[1:])}"
        replace_section(args.results_md, f"rejudge-{args.folder.name}", f"## {title}\n\n`{command}`\n\n{body}")


if __name__ == "__main__":
    main()
