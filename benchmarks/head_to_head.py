"""The real-model verdict: e_0, the classic operations, Auto Evol-Instruct and GEPA at equal LM-call budgets.

The seed file is split exactly as ``benchmarks/quality.py`` splits it (same seed, same held-out
items); the same LM spec serves the evol, optimizer (GEPA's reflection) and judge roles. These
methods are evaluated on the held-out items with the same failure rules: e_0; the classic
Evol-Instruct operations (one drawn per item); the starting method Auto Evol-Instruct's race picked
(``--start``; evaluated only when it is neither e_0 nor already measured); the evolver Auto
Evol-Instruct compiles on the compile part; and the evolver GEPA compiles on the same part (the
same train/dev/confirmation split inside the compile). GEPA's budget is what Auto Evol-Instruct really
spent, as its records count it over all its runs (or ``--gepa-max-lm-calls``): GEPA stops once its
compile made as many LM calls, every role counted (``max_lm_calls``, checked between GEPA
iterations), and never passes the metric calls of Auto Evol-Instruct's schedule
(``max_metric_calls``, or ``--gepa-max-metric-calls``).
Prints the held-out failure rates, failures by rule, evaluation LM calls and evol prompt tokens per
item, the paired bootstrap intervals of every method against e_0 and against the classic
operations, and each compile's LM calls, wall time, start race and confirmation.

    python benchmarks/head_to_head.py --lm local:/models/model.gguf --seed-set self-instruct --held-out 40 \\
        --json runs/h2h.json --e0-from runs/quality.json --resume

Per-item outcomes go to ``<prefix>.<method>.items.jsonl`` as in ``quality.py`` (``--resume`` reuses
them and both compiles' run directories). ``--e0-from QUALITY_JSON`` reads and extends e_0's item
file of a ``quality.py`` run made with ``--json QUALITY_JSON`` and the same LM settings (its keys
match, so finished items are reused); run it when that ``quality.py`` run has finished.
The Auto Evol-Instruct settings are ``quality.py``'s flags (``--steps``, ``--candidates``, ...,
``--compile-arg``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import quality  # noqa: E402
import quality_eval  # noqa: E402
from quality_eval import MethodResult, evaluate_method, role_usage, usage_delta  # noqa: E402
from run_progress import run_progress  # noqa: E402
from run_records import GitCheckpoint  # noqa: E402

from autoevol.baselines import EvolInstructBaseline, starting_methods  # noqa: E402
from autoevol.estimate import Estimate, estimate_compile, estimate_item_evaluations, format_estimate  # noqa: E402
from autoevol.lm import LMSession, parse_spec  # noqa: E402
from autoevol.metrics.compare import paired_bootstrap  # noqa: E402
from autoevol.optimizers import CompileFoundNothing  # noqa: E402
from autoevol.optimizers.gepa import GEPAEvolInstruct  # noqa: E402
from autoevol.programs.evolver import Evolver  # noqa: E402
from autoevol.programs.responder import Responder  # noqa: E402

@dataclass
class Report:
    """Everything one run measured (``--json`` writes it as is)."""

    settings: dict[str, Any]
    seed_file: str
    compile_items: int
    held_out_ids: list[str]
    methods: list[MethodResult]
    compiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    differences: list[dict[str, Any]] = field(default_factory=list)


def calls_of(usage: dict[str, Any]) -> int:
    """LM calls over every role of a usage mapping."""
    return int(sum(int(counts.get("calls", 0)) for counts in usage.values()))


def run_compile(name: str, optimizer: Any, train: list[Any], run_dir: Path, session: LMSession,
                resume: bool) -> tuple[Evolver, dict[str, Any]]:
    """Compile e_0 with ``optimizer`` (resumable in ``run_dir``); the result, even when it found nothing."""
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    started, before = time.monotonic(), role_usage(session)
    found_nothing = None
    try:
        compiled = optimizer.compile(Evolver(), trainset=train, run_dir=run_dir)
    except CompileFoundNothing as error:  # the result is e_0: say so, measure it anyway
        compiled, found_nothing = error.evolver, str(error)
    meta = compiled.metadata
    figures = {
        "optimizer": name, "method_fingerprint": compiled.fingerprint, "found_nothing": found_nothing,
        "initial_dev_failure_rate": meta.get("initial_dev_failure_rate"), "dev_failure_rate": meta.get("dev_failure_rate"),
        "steps": meta.get("steps"), "stopped": meta.get("stopped"), "usage": meta.get("usage") or {}, "recorded_seconds": meta.get("seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "session_usage": usage_delta(role_usage(session), before), "hyperparameters": meta.get("hyperparameters"),
        "start_chosen": meta.get("start_chosen"), "confirmation": meta.get("confirmation"),
    }
    if "gepa" in meta:
        figures["gepa"] = {key: meta["gepa"][key] for key in ("max_metric_calls", "total_metric_calls", "best_idx")}
        figures["gepa"]["max_lm_calls"] = (meta.get("hyperparameters") or {}).get("max_lm_calls")
        figures["gepa"]["candidates"] = len(meta["gepa"]["candidates"])
    return compiled, figures


def run(args: argparse.Namespace, checkpoint: GitCheckpoint | None = None) -> Report:
    """Split, compile with Auto Evol-Instruct, evaluate e_0 and the classic operations, compile with GEPA at
    the same LM-call budget, evaluate both compiled evolvers (and the start the race picked), compare.

    ``checkpoint`` commits the run's records as they grow (after each evaluated item).
    """
    after_item = checkpoint.due_commit if checkpoint is not None else None
    data, train, held_out = quality.split_seed_file(args)
    prefix = quality.output_prefix(args, data)
    shared = args.e0_from.parent / args.e0_from.stem if args.e0_from is not None else prefix
    print(f"{data}: {len(train)} compile items, {len(held_out)} held-out items; outputs {prefix}.*",
          file=sys.stderr, flush=True)
    with quality.lm_session(args) as session:
        evol = session.lm(args.lm, role="evol", api_base=args.api_base, max_tokens=args.max_tokens)
        quality.probe(evol, args.lm)
        optimizer_lm = session.lm(args.lm, role="optimizer", api_base=args.api_base, max_tokens=args.max_tokens)
        detector = quality.build_detector(session, args)
        settings = quality.outcome_settings(args, detector, evol)
        report = Report(settings={**settings, "api_base": args.api_base, "threads": args.threads,
                                  "reproducible": args.reproducible},
                        seed_file=str(data), compile_items=len(train), held_out_ids=[i.id for i in held_out],
                        methods=[])

        def evaluate(key: str, label: str, program: Any, path: Path, resume: bool) -> MethodResult:
            result = evaluate_method(key, label, program, held_out, session=session, lm=evol,
                                     responder=Responder(max_tokens=args.answer_max_tokens), detector=detector,
                                     settings=settings, path=path, resume=resume, threads=args.threads,
                                     after_item=after_item)
            report.methods.append(result)
            return result

        auto_optimizer = quality.teleprompter(evol, optimizer_lm, detector, args,  # fails fast on bad settings
                                              after_progress=after_item)  # commits the compile's records as it goes
        # the compile first: its start race, steps and confirmation are a result of their own
        auto, report.compiles["auto-evol"] = run_compile("auto-evol", auto_optimizer, train,
                                                         Path(f"{prefix}.h2h-auto-evol.run"), session, args.resume)
        auto.save(f"{prefix}.h2h-auto-evol.json")
        # e_0's file may be quality.py's: always resumed, so that none of its lines is dropped
        e0 = evaluate("e0", "e_0 (initial method)", Evolver(), Path(f"{shared}.e0.items.jsonl"), True)
        classic = evaluate("evol-instruct", "Evol-Instruct operations", EvolInstructBaseline(seed=args.seed),
                           Path(f"{prefix}.evol-instruct.items.jsonl"), args.resume)
        results = {}
        picked = str(report.compiles["auto-evol"]["start_chosen"] or "student").removeprefix("starting method: ")
        if picked != "student":
            evaluate(f"start-{picked}", f"starting method the race picked ({picked})",
                     Evolver(starting_methods()[picked]), Path(f"{prefix}.start-{picked}.items.jsonl"), args.resume)
        budget = args.gepa_max_lm_calls or calls_of(report.compiles["auto-evol"]["usage"])
        gepa_optimizer = GEPAEvolInstruct(
            optimizer_lm=optimizer_lm, evol_lm=evol, detector=detector, dev_size=args.dev_size,
            batch_size=args.batch_size, num_candidates=args.candidates, max_steps=args.steps,
            max_metric_calls=args.gepa_max_metric_calls, max_lm_calls=max(1, budget),
            reflection_minibatch_size=args.reflection_minibatch_size, answer_max_tokens=args.answer_max_tokens,
            seed=args.seed, num_threads=args.threads, **confirmation_settings(auto_optimizer))
        gepa, report.compiles["gepa"] = run_compile("gepa", gepa_optimizer, train, Path(f"{prefix}.h2h-gepa.run"),
                                                    session, args.resume)
        gepa.save(f"{prefix}.h2h-gepa.json")
        for key, label, compiled in (("h2h-auto-evol", "Auto Evol-Instruct", auto), ("h2h-gepa", "GEPA", gepa)):
            figures = report.compiles[key.removeprefix("h2h-")]
            label += " (found nothing)" if figures["found_nothing"] else ""
            same = next((m for m in report.methods if m.fingerprint == compiled.fingerprint), None)
            if same is not None:  # a method measured already (e_0, the race's start): its outcomes are that one's
                results[key] = replace(same, key=key, label=f"{label} (= {same.label})", seconds=0.0, usage={})
                report.methods.append(results[key])
            else:
                results[key] = evaluate(key, label, compiled, Path(f"{prefix}.{key}.items.jsonl"), args.resume)
    others = [method for method in report.methods if method is not e0 and method is not classic]
    pairs = [(e0, classic), *((e0, other) for other in others), *((classic, other) for other in others),
             (results["h2h-auto-evol"], results["h2h-gepa"])]
    for reference, other in pairs:
        diff, low, high = paired_bootstrap(reference.failed_flags, other.failed_flags, n_boot=args.n_boot,
                                           confidence=quality.CONFIDENCE, seed=args.seed)
        report.differences.append({"method": other.key, "reference": reference.key, "diff": diff, "low": low,
                                   "high": high, "confidence": quality.CONFIDENCE, "items": len(held_out)})
    return report


def confirmation_settings(auto_optimizer: Any) -> dict[str, Any]:
    """Auto Evol-Instruct's confirmation split and level, for GEPA to confirm its result the same way."""
    settings = auto_optimizer.settings
    return {"confirm_size": settings.confirm_items, "confirm_alpha": settings.confirm_alpha}


def markdown(report: Report) -> str:
    """The held-out table, the paired differences, and each compile's calls and time."""
    lines = ["| method | held-out failure rate | failed / items | failures by rule | evaluation LM calls | "
             "evol prompt tokens / item | evaluation wall time |", "|---|---:|---:|---|---|---:|---:|"]
    lines += [f"| {m.label} | {m.failure_rate:.1%} | {m.failed} / {m.items} | "
              f"{', '.join(f'{r} {n}' for r, n in m.by_rule.items()) or '-'} | {quality.calls_by_role(m.usage)} | "
              f"{quality.prompt_tokens_per_item(m)} | {quality_eval.format_seconds(m.seconds)} |" for m in report.methods]
    labels = {m.key: m.label for m in report.methods}
    lines.append("")
    for d in report.differences:
        lines.append(f"- {labels[d['method']]} minus {labels[d['reference']]}: {100 * d['diff']:+.1f} points, "
                     f"{d['confidence']:.0%} paired bootstrap interval [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] "
                     f"({d['items']} items)")
    for name, c in report.compiles.items():
        roles = ", ".join(f"{role} {int(counts.get('calls', 0))}" for role, counts in c["usage"].items()) or "-"
        rates = (f"{100 * c['initial_dev_failure_rate']:.0f}% -> {100 * c['dev_failure_rate']:.0f}%"
                 if c.get("dev_failure_rate") is not None else "-")
        extra = ""
        if "gepa" in c:
            g = c["gepa"]
            recorded = calls_of(report.compiles["auto-evol"]["usage"]) if "auto-evol" in report.compiles else None
            extra = (f"; LM-call budget {g['max_lm_calls']} (Auto Evol-Instruct's compile records {recorded} calls), "
                     f"{g['total_metric_calls']} of at "
                     f"most {g['max_metric_calls']} metric calls, {g['candidates']} candidates, stopped: {c['stopped']}")
        if c.get("start_chosen") and c.get("start_chosen") != "student":
            extra += f"; start race picked {c['start_chosen']}"
        if c.get("confirmation"):
            k = c["confirmation"]
            extra += (f"; confirmation on {k['items']} items: start only failed {k['reference_only']}, result only "
                      f"{k['challenger_only']} (p={k['p_value']:.3g}, needed <= {k['level']:.3g})")
        lines.append(f"- compile {name}: {calls_of(c['usage'])} LM calls ({roles}), dev failure rate {rates}, "
                     f"recorded time {quality_eval.format_seconds(c['recorded_seconds'] or 0)}, wall time of this run "
                     f"{quality_eval.format_seconds(c['wall_seconds'])}{extra}"
                     + (f"; found nothing: {c['found_nothing']}" if c["found_nothing"] else ""))
    return "\n".join(lines)


#: Methods evaluated on the held-out items at most: e_0, the classic operations, the race's start, and
#: the two compiled evolvers (a compiled evolver equal to one already measured costs nothing more).
HELD_OUT_METHODS = 5


def dry_run(args: argparse.Namespace) -> None:
    """``--dry-run``: the most LM calls and the tokens of the whole run, per part and role, before any call.

    Auto Evol-Instruct's compile is planned as the paper's schedule without caching or racing (an upper
    bound); GEPA's budget is at most what that compile spends; the held-out part evaluates up to
    ``HELD_OUT_METHODS`` methods (an evolution and its answer per item). The hours are the estimated
    output tokens at ``--decode-rate``: prompt reading comes on top of it, and finished items that a
    resumed run reuses come off it.
    """
    data, train, held_out = quality.split_seed_file(args)
    settings = quality.compile_settings(args)
    model = parse_spec(args.lm).display_name
    judge = quality.judge_spec(args)
    judge_model = parse_spec(judge).display_name if judge is not None else None
    compile_part = estimate_compile(
        [item.instruction for item in train[:50]], steps=settings.max_steps, candidates=settings.num_candidates,
        batch_size=settings.batch_size, dev_size=settings.dev_size, rounds=settings.evolution_rounds,
        evolver=Evolver(), model=model, optimizer_model=model, max_output_tokens=args.max_tokens,
        trajectory_answers=settings.trajectory_answers, proposal_attempts=settings.proposal_attempts,
        judge_model=judge_model, max_demos=settings.max_demos, confirm_size=settings.confirm_items,
        starts=len(settings.starts))
    evaluations = HELD_OUT_METHODS * len(held_out)
    held_out_part = estimate_item_evaluations(
        [item.instruction for item in held_out], evaluations=evaluations, evolver=Evolver(), model=model,
        max_output_tokens=args.max_tokens, judge_model=judge_model)
    print(f"{data.name}: {len(train)} compile items, {len(held_out)} held-out items, {model} in every role")
    parts = (("Auto Evol-Instruct compile", compile_part),
             ("GEPA compile (stops at Auto Evol-Instruct's LM calls: at most as many)", compile_part),
             (f"held-out evaluations ({HELD_OUT_METHODS} methods x {len(held_out)} items at most)", held_out_part))
    hours = 0.0
    for title, estimate in parts:
        part_hours = output_hours(estimate, args.decode_rate)
        hours += part_hours
        print(f"\n{title}: ~{part_hours:.1f} h of decoding at {args.decode_rate:g} tokens/s\n{format_estimate(estimate)}")
    print(f"\nwhole run: at most {2 * compile_part.calls + held_out_part.calls} LM calls, ~{hours:.1f} h of decoding "
          f"at {args.decode_rate:g} tokens/s (prompt reading on top; a resumed run reuses its finished items)")


def output_hours(estimate: Estimate, decode_rate: float) -> float:
    """Hours to decode the estimated output tokens of ``estimate`` at ``decode_rate`` tokens per second."""
    return sum(role.output_tokens for role in estimate.roles) / decode_rate / 3600


def parser() -> argparse.ArgumentParser:
    """``quality.py``'s flags (the split, the LM, Auto Evol-Instruct's settings) and GEPA's."""
    parse = quality.parser()
    parse.description = __doc__.splitlines()[0]
    parse.add_argument("--gepa-max-metric-calls", type=int, default=None,
                       help="GEPA's metric-call bound (default: Auto Evol-Instruct's schedule)")
    parse.add_argument("--gepa-max-lm-calls", type=int, default=None,
                       help="GEPA's LM-call budget (default: the LM calls Auto Evol-Instruct's compile records). "
                            "For records that undercount their spend: a compile resumed inside a phase counted only "
                            "its last run's calls there until phases kept their spending over runs")
    parse.add_argument("--reflection-minibatch-size", type=int, default=3, help="GEPA's items per iteration")
    parse.add_argument("--e0-from", type=Path, default=None, metavar="QUALITY_JSON",
                       help="share e_0's item file with the quality.py run that wrote QUALITY_JSON")
    parse.add_argument("--dry-run", action="store_true",
                       help="print the most LM calls and the tokens of the run, per part and role; call nothing")
    parse.add_argument("--decode-rate", type=float, default=20.0, metavar="TOKENS_PER_S",
                       help="with --dry-run: generated tokens per second, to turn output tokens into hours "
                            "(default 20: Qwen2.5-Coder-1.5B Q4 on 2 cores)")
    return parse


def finished_report(document: dict[str, Any]) -> tuple[str, str]:
    """The title and the held-out table of a finished run's ``report.json``."""
    report = Report(**document)
    return f"Head to head: {report_title(report)}", markdown(report)


def report_title(report: Report) -> str:
    """What a finished run compared, on which seeds, with which model."""
    return (f"e_0, the classic operations, Auto Evol-Instruct and GEPA on {Path(report.seed_file).name} with "
            f"{report.settings['lm']} ({len(report.held_out_ids)} held-out items, {report.compile_items} compile "
            f"items, seed {report.settings['seed']})")


def main(argv: list[str] | None = None) -> None:
    """Run, print the table; write ``--json`` and the ``--results-md`` section when given."""
    args = parser().parse_args(argv)
    if args.report:
        quality.report_from_records(args, "head_to_head.py", "Head to head", finished_report)
        return
    quality.require_inputs(args)
    if args.dry_run:
        dry_run(args)
        return
    if args.evolver or args.max_demos:
        raise SystemExit("error: head_to_head.py compiles both evolvers itself, on the method text alone "
                         "(--evolver and --max-demos are quality.py's)")
    quality.configure_logging(args.verbose)
    if args.json is not None and args.e0_from is not None and args.json.resolve() == args.e0_from.resolve():
        raise SystemExit("error: --json must not be quality.py's file (--e0-from): it would be overwritten")
    report = quality.run_recorded(args, "head_to_head.py", run)
    details = run_progress(quality.RUNS_DIR / args.name) if args.name else ""
    quality.publish(args, "head_to_head.py", report, f"Head to head: {report_title(report)}",
                    f"{markdown(report)}\n\n{details}".strip())


if __name__ == "__main__":
    main()
