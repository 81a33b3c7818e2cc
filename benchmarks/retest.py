"""Test-retest: measure a method again on items a run already measured, and count the verdicts that changed.

Nothing but the run differs: the same method, items, model file, settings and rules (with
``--other-settings``, items recorded under other settings or rules are measured anyway, and the
figures say what that change does). With temperature 0 a local model is still not repeatable bit
for bit (llama.cpp's arithmetic depends on the CPU's
instruction set and on how the server batches concurrent requests), and a 1.5B model's rewrite can
tip from passing to failing on such a difference. A paired comparison inside one run shares that
noise between its methods; failure rates from different runs or machines do not, and this says by
how much they can differ for no reason.

    python benchmarks/retest.py --lm local:FILE.gguf --seed-set humaneval --held-out 60 --threads 2 \\
        --judge-lm none --max-tokens 450 --answer-max-tokens 200 --name h2h-humaneval \\
        --retest quality.e0.items.jsonl --items 30 --results-md benchmarks/RESULTS.md

The new outcomes go next to the recorded file (``LABEL.<file>``, ``--label`` being ``retest`` by
default), resumable and, with ``--name``, committed as they grow like every run record. They record
the same method, so ``--retest retest.<file>`` measures once more and compares the two retests (the
same machine, say). With ``--reproducible`` (one slot, no prompt cache) two such measurements on one
machine should agree on every item; ``--label`` keeps them apart from the earlier retests.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import quality  # noqa: E402
from quality_eval import evaluate_method, item_key, read_lines  # noqa: E402
from run_records import GitCheckpoint  # noqa: E402

from autoevol.baselines import EvolInstructBaseline  # noqa: E402
from autoevol.optimizers.auto_evol.selection import sign_test_p_value  # noqa: E402
from autoevol.programs.evolver import Evolver  # noqa: E402
from autoevol.programs.responder import Responder  # noqa: E402

#: The recorded methods this script can measure again, by the key their items file records.
METHODS = {"e0": lambda args: Evolver(), "evol-instruct": lambda args: EvolInstructBaseline(seed=args.seed)}


@dataclass
class Retest:
    """The recorded and the new verdicts of the same items."""

    method: str
    recorded_file: str
    retest_file: str
    items: int
    recorded_failed: int
    retest_failed: int
    recorded_only: list[str]  # item ids that failed only in the recorded run
    retest_only: list[str]  # item ids that failed only in the retest
    changed_rules: list[str]  # "id: recorded rule -> new rule" for every item whose verdict or rule changed
    identical: int  # items whose working notes, rewrite and answer are the same text in both
    recorded_seconds: float  # mean seconds per item, as each measurement recorded them
    retest_seconds: float
    recorded_calls: float  # mean LM calls per item (an answer that did not parse was asked again)
    retest_calls: float
    recorded_output_tokens: float  # mean output tokens per item
    retest_output_tokens: float

    @property
    def changed(self) -> int:
        return len(self.recorded_only) + len(self.retest_only)


def compare(recorded: dict[str, dict], retested: dict[str, dict], method: str, recorded_file: str,
            retest_file: str) -> Retest:
    """The two measurements of the items both hold, by item id."""
    ids = [item_id for item_id in recorded if item_id in retested]

    def verdict(line: dict) -> tuple[bool, str | None]:
        found = line["outcome"]["verdict"]
        return bool(found.get("failed")), found.get("rule")

    def texts(line: dict) -> tuple[str | None, ...]:
        return tuple(line["outcome"].get(field) for field in ("notes", "evolved", "answer"))

    def mean(lines: dict[str, dict], figure: Callable[[dict], float]) -> float:
        return round(sum(figure(lines[i]) for i in ids) / max(len(ids), 1), 1)

    def seconds(line: dict) -> float:
        return float(line.get("seconds") or 0.0)

    def usage(field: str) -> Callable[[dict], float]:
        return lambda line: float(sum(role.get(field) or 0 for role in (line.get("usage") or {}).values()))

    before, after = {i: verdict(recorded[i]) for i in ids}, {i: verdict(retested[i]) for i in ids}
    return Retest(
        method=method, recorded_file=recorded_file, retest_file=retest_file, items=len(ids),
        recorded_failed=sum(before[i][0] for i in ids), retest_failed=sum(after[i][0] for i in ids),
        recorded_only=[i for i in ids if before[i][0] and not after[i][0]],
        retest_only=[i for i in ids if after[i][0] and not before[i][0]],
        changed_rules=[f"{i}: {before[i][1] or 'passed'} -> {after[i][1] or 'passed'}"
                       for i in ids if before[i] != after[i]],
        identical=sum(texts(recorded[i]) == texts(retested[i]) for i in ids),
        recorded_seconds=mean(recorded, seconds), retest_seconds=mean(retested, seconds),
        recorded_calls=mean(recorded, usage("calls")), retest_calls=mean(retested, usage("calls")),
        recorded_output_tokens=mean(recorded, usage("output_tokens")),
        retest_output_tokens=mean(retested, usage("output_tokens")))


def markdown(result: Retest) -> str:
    """The retest's figures."""
    before, after = len(result.recorded_only), len(result.retest_only)
    p_value = min(1.0, 2 * min(sign_test_p_value(before, after), sign_test_p_value(after, before)))
    lines = [
        "| measurement | failed / items |", "|---|---:|",
        f"| recorded (`{result.recorded_file}`) | {result.recorded_failed} / {result.items} |",
        f"| retest (`{result.retest_file}`) | {result.retest_failed} / {result.items} |", "",
        f"- verdicts changed: {result.changed} of {result.items} items ({result.changed / max(result.items, 1):.0%}): "
        f"{len(result.recorded_only)} failed only in the recorded run, {len(result.retest_only)} only in the retest "
        f"(two-sided sign test p={p_value:.3g}: a systematic shift, or noise)",
        f"- items whose verdict or rule changed: {'; '.join(result.changed_rules) or 'none'}",
        f"- items with the same working notes, rewrite and answer, word for word: {result.identical} of {result.items}",
        f"- seconds per item as recorded (each item's own time; items measured side by side overlap): "
        f"{result.recorded_seconds} recorded, {result.retest_seconds} in the retest",
        f"- LM calls per item (a reply that did not parse is asked again): {result.recorded_calls} recorded, "
        f"{result.retest_calls} in the retest; output tokens per item: {result.recorded_output_tokens} recorded, "
        f"{result.retest_output_tokens} in the retest",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace, checkpoint: GitCheckpoint | None = None) -> Retest:
    """Measure ``--retest``'s method again on its first ``--items`` items and compare the verdicts."""
    folder = quality.RUNS_DIR / args.name if args.name is not None else Path(".")
    recorded_path = args.retest if args.retest.is_absolute() or args.name is None else folder / args.retest
    if not recorded_path.is_file():
        raise SystemExit(f"error: {recorded_path}: no such items file")
    recorded = {line["id"]: line for line in read_lines(recorded_path) if "outcome" in line and "id" in line}
    methods = {line.get("method") for line in recorded.values()}
    if len(methods) != 1 or next(iter(methods)) not in METHODS:
        raise SystemExit(f"error: {recorded_path}: records method(s) {sorted(map(str, methods))}; "
                         f"this script measures one of: {', '.join(METHODS)}")
    method = methods.pop()
    _, _, held_out = quality.split_seed_file(args)
    by_id = {item.id: item for item in held_out}
    unknown = [item_id for item_id in recorded if item_id not in by_id]
    if unknown:
        raise SystemExit(f"error: {recorded_path}: item {unknown[0]!r} is not among this split's held-out items "
                         "(check --seed-set/--seed-file, --held-out and --seed)")
    items = sorted((by_id[item_id] for item_id in recorded), key=lambda item: recorded[item.id]["index"])
    items = items[: args.items] if args.items else items
    program = METHODS[method](args)
    with quality.lm_session(args) as session:
        evol = session.lm(args.lm, role="evol", api_base=args.api_base, max_tokens=args.max_tokens)
        quality.probe(evol, args.lm)
        detector = quality.build_detector(session, args)
        settings = quality.outcome_settings(args, detector, evol)
        fingerprint = str(getattr(program, "fingerprint", ""))
        stale = [item.id for item in items if recorded[item.id]["key"] != item_key(settings, fingerprint,
                                                                                    item.instruction)]
        if stale and not args.other_settings:
            raise SystemExit(f"error: {recorded_path}: item {stale[0]!r} was measured under other settings "
                             "(--lm, --max-tokens, --answer-max-tokens, the rules, --judge-lm or --seed differ; "
                             "--other-settings measures what that change does)")
        retest_path = recorded_path.with_name(f"{args.label}.{recorded_path.name}")
        evaluate_method(method, f"{method} again", program, items, session=session, lm=evol,
                        responder=Responder(max_tokens=args.answer_max_tokens), detector=detector, settings=settings,
                        path=retest_path, resume=True, threads=args.threads,
                        after_item=checkpoint.due_commit if checkpoint is not None else None)
    retested = {line["id"]: line for line in read_lines(retest_path) if "outcome" in line}
    return compare({item.id: recorded[item.id] for item in items}, retested, method, recorded_path.name,
                   retest_path.name)


def parser() -> argparse.ArgumentParser:
    """``quality.py``'s flags (the split, the LM, the detector) and the file to measure again."""
    parse = quality.parser()
    parse.description = __doc__.splitlines()[0]
    parse.add_argument("--retest", type=Path, required=True, metavar="ITEMS_JSONL",
                       help="the recorded items file (of e_0 or the classic operations) to measure again; "
                            "with --name, relative to its run folder")
    parse.add_argument("--items", type=int, default=None, help="only the first N recorded items (default: all)")
    parse.add_argument("--label", default="retest", help="the new file is LABEL.<the recorded file's name>")
    parse.add_argument("--other-settings", action="store_true",
                       help="measure items recorded under other settings or rules anyway: the figures then say "
                            "what that change does, not how repeatable a verdict is")
    return parse


def main(argv: list[str] | None = None) -> None:
    """Measure again, print the figures, write ``--results-md``'s section."""
    args = parser().parse_args(argv)
    quality.require_inputs(args)
    quality.configure_logging(args.verbose)
    result = quality.run_recorded(args, "retest.py", run)
    title = (f"{result.method} measured under changed settings or code on {result.items} items of "
             f"`{result.recorded_file}`" if args.other_settings else
             f"Test-retest: {result.method} measured again on {result.items} items of `{result.recorded_file}`")
    body = markdown(result)
    print(f"{title}\n\n{body}")
    if args.results_md:  # a section per recorded file
        quality.write_section(args, "retest.py", title, f"python benchmarks/retest.py {' '.join(sys.argv[1:])}", body,
                              part=Path(result.retest_file).stem)


if __name__ == "__main__":
    main()
