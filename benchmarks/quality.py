"""Held-out failure rate of e_0, of classic Evol-Instruct and of a compiled evolver, with a real LM.

The seed file is split with a fixed seed into a compile part and a held-out part (the compile
never sees a held-out item); an Evolver is compiled with AutoEvolInstruct on the compile part, the
same LM spec serving the evol and optimizer roles (unless ``--evolver`` gives a compiled one), and
every method is evaluated on the same held-out items with the same LM and failure rules
(``failure rate = failed / items``). Prints a Markdown table, the paired bootstrap interval of
compiled minus e_0, the compile's proposals and LM calls per role.

    python benchmarks/quality.py --lm local:/models/model.gguf --seed-set self-instruct --held-out 20
    python benchmarks/quality.py --lm openai/MODEL --api-base http://host:8000/v1 --seed-file seeds.jsonl
    python benchmarks/quality.py ... --evolver evolver.json            # skip compiling
    python benchmarks/quality.py ... --compile-arg proposal_mode=edit  # any AutoEvolInstruct keyword
    python benchmarks/quality.py ... --max-demos 2                     # demonstrations as well

Without ``--max-demos`` the compile optimizes the method text alone (the paper; ``max_demos=0``) and
the methods are e_0, the compiled evolver and Evol-Instruct. With ``--max-demos K`` the compile also
chooses up to K demonstrations, and four rows compare: e_0, e_0 with K demonstrations bootstrapped
from the compile part (its own first successes), the compiled method alone, and the compiled method
with its demonstrations. Their files carry ``demosK`` in their names, so the runs without
demonstrations stay reusable with ``--resume``.

Per-item outcomes go to ``<json stem>.<method>.items.jsonl`` next to ``--json`` (or under
``--work-dir``) as they finish, the compile checkpoints to ``<stem>.compile.run/``; rerun the same
command with ``--resume`` to reuse finished items and compile steps. ``--seed-set`` prepares the
file with ``benchmarks/seeds.py``.

A measurement that spans sessions: ``--name NAME`` keeps everything under ``benchmarks/runs/NAME/``
(tracked in git; LM call caches excepted), resumes from it, and commits it every
``--commit-every`` minutes and when the run stops; ``--budget-minutes`` stops the run cleanly
(no LM call starts after it, exit code 3), everything finished so far written and committed.

    python benchmarks/quality.py --lm local:FILE.gguf --seed-set humaneval --name he60 --budget-minutes 120

``--name NAME --report`` prints what the folder holds from its records alone, without an LM: a run
stopped by its budget (or still going) shows its compile and its held-out items so far, a finished
one its table above them; ``--results-md`` makes that the run's section.

    python benchmarks/quality.py --name he60 --held-out 60 --report --results-md benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import dspy  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import quality_eval  # noqa: E402
import seeds  # noqa: E402
from quality_eval import MethodResult, StageReporter, evaluate_method, role_usage, usage_delta  # noqa: E402
from run_progress import run_progress  # noqa: E402
from run_records import GitCheckpoint, replace_section  # noqa: E402

from autoevol.data import iter_items  # noqa: E402
from autoevol.lm import Budget, BudgetExceeded, CallPolicy, LMSession, ManagedLM, parse_spec  # noqa: E402
from autoevol.metrics.compare import paired_bootstrap  # noqa: E402
from autoevol.metrics.failure import FailureDetector  # noqa: E402
from autoevol.optimizers import AutoEvolInstruct, CompileFoundNothing, CompileSettings  # noqa: E402
from autoevol.optimizers.auto_evol.demos import bootstrap_demos  # noqa: E402
from autoevol.optimizers.auto_evol.roles import evol_answer_settings  # noqa: E402
from autoevol.programs.evolver import Evolver  # noqa: E402
from autoevol.programs.responder import Responder  # noqa: E402
from autoevol.records import SeedItem, fingerprint  # noqa: E402

#: The tracked folder of ``--name`` runs.
RUNS_DIR = HERE / "runs"
#: Exit code of a run stopped by ``--budget-minutes`` (rerun the same command to continue).
EXIT_BUDGET = 3
#: Output token limit of the information-gain judge (a one-word verdict), as in ``autoevol compile``.
JUDGE_MAX_TOKENS = 64
CONFIDENCE = 0.95


@dataclass
class Report:
    """Everything one run measured (``--json`` writes it as is)."""

    settings: dict[str, Any]
    seed_file: str
    compile_items: int
    held_out_ids: list[str]
    methods: list[MethodResult]
    differences: list[dict[str, Any]] = field(default_factory=list)
    compile: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------ data


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def split(items: list[SeedItem], held_out: int, seed: int) -> tuple[list[SeedItem], list[SeedItem]]:
    """Distinct items shuffled with ``seed``: ``(compile part, held-out part)``, never overlapping.

    The last ``held_out`` items of the shuffle are held out; the split depends only on the data,
    ``held_out`` and ``seed``, never on the compile settings.
    """
    first: dict[str, SeedItem] = {}
    for item in items:
        first.setdefault(_normalized(item.instruction), item)
    distinct = list(first.values())
    shuffled = random.Random(seed).sample(distinct, len(distinct))
    if held_out < 1 or len(shuffled) <= held_out:
        raise SystemExit(f"--held-out must be between 1 and {len(shuffled) - 1} "
                         f"(the seed file has {len(shuffled)} distinct instructions)")
    return shuffled[:-held_out], shuffled[-held_out:]


def seed_file(args: argparse.Namespace) -> Path:
    """``--seed-file``, or the file of ``--seed-set`` prepared by ``seeds.py``."""
    if args.seed_file is not None:
        return args.seed_file
    try:
        return seeds.prepare(args.seed_set, args.seeds_dir)
    except seeds.SeedSetError as error:
        raise SystemExit(f"error: {error}") from None


def split_seed_file(args: argparse.Namespace) -> tuple[Path, list[SeedItem], list[SeedItem]]:
    """The run's seed file and its usable items, split by :func:`split`: ``(file, compile part, held-out part)``."""
    data = seed_file(args)
    items = [item for item in iter_items(data, column=args.column) if item.problem is None]
    return (data, *split(items, args.held_out, args.seed))


def output_prefix(args: argparse.Namespace, data: Path) -> Path:
    """Where per-item outcomes and the compile checkpoint go: the run's tracked folder, next to ``--json``,
    or a work folder."""
    if args.name is not None:
        return RUNS_DIR / args.name / "quality"
    if args.work_dir is not None:
        return args.work_dir / "quality"
    if args.json is not None:
        return args.json.parent / args.json.stem
    run = fingerprint(json.dumps([str(data.resolve()), args.lm, args.held_out, args.seed]))
    return Path("~/.cache/autoevol/quality").expanduser() / run / "quality"


# ------------------------------------------------------------------------------ LMs, detector, compile


def probe(lm: ManagedLM, spec: str) -> None:
    """One tiny call, so that an unreachable LM stops the run instead of failing every item."""
    check = lm.copy(max_tokens=4)
    check.call_cache, check.budget = None, None
    try:
        check("Reply with OK.")
    except Exception as error:  # any failure here means the benchmark cannot run
        raise SystemExit(f"error: LM '{spec}' is not usable: {type(error).__name__}: {error}") from None


def judge_spec(args: argparse.Namespace) -> str | None:
    """The judge LM spec: ``None`` for ``--judge-lm none``, the evol LM's for ``same``."""
    if args.judge_lm == "none":
        return None
    return args.lm if args.judge_lm == "same" else args.judge_lm


def build_detector(session: LMSession, args: argparse.Namespace) -> FailureDetector:
    """The failure detector of the compile and of every evaluation (the one place to change it)."""
    spec = judge_spec(args)
    judge = None
    if spec is not None:
        judge = session.lm(spec, role="judge", api_base=args.api_base if spec == args.lm else None,
                           max_tokens=JUDGE_MAX_TOKENS)
    return FailureDetector(judge_lm=judge, disable=args.disable_rule or ())


def compile_args(pairs: list[str] | None) -> dict[str, Any]:
    """``key=value`` flags as AutoEvolInstruct keywords; values are JSON when they parse as JSON."""
    parsed: dict[str, Any] = {}
    for pair in pairs or ():
        key, equal, text = pair.partition("=")
        if not equal or not key.strip().isidentifier():
            raise SystemExit(f"--compile-arg {pair!r}: expected KEY=VALUE")
        literals = {"true": True, "false": False, "none": None, "null": None}
        try:
            value = literals[text.strip().lower()] if text.strip().lower() in literals else json.loads(text)
        except json.JSONDecodeError:
            value = text
        parsed[key.strip()] = value
    return parsed


def compile_settings(args: argparse.Namespace) -> CompileSettings:
    """The run's Auto Evol-Instruct settings: from flags, ``--compile-arg`` overriding them."""
    try:
        settings = CompileSettings(
            num_candidates=args.candidates, batch_size=args.batch_size, dev_size=args.dev_size, max_steps=args.steps,
            patience=args.patience, seed=args.seed, num_threads=args.threads, answer_max_tokens=args.answer_max_tokens,
            max_demos=args.max_demos or 0,  # without --max-demos: the method text alone, as every earlier run
        )
        return replace(settings, **compile_args(args.compile_arg))
    except (TypeError, ValueError) as error:
        raise SystemExit(f"error: AutoEvolInstruct does not accept these settings: {error}") from None


def teleprompter(evol: ManagedLM, optimizer: ManagedLM, detector: FailureDetector, args: argparse.Namespace,
                 after_progress: Callable[[], None] | None = None) -> Any:
    """The AutoEvolInstruct of the run, with :func:`compile_settings`."""
    return AutoEvolInstruct(optimizer_lm=optimizer, evol_lm=evol, detector=detector, settings=compile_settings(args),
                            progress=StageReporter(after_progress))


def in_repository(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (a report names no machine's folders)."""
    resolved = path.resolve()
    return str(resolved.relative_to(HERE.parent)) if resolved.is_relative_to(HERE.parent) else str(path)


def compile_figures(evolver: Evolver, wall: float | None, source: str) -> dict[str, Any]:
    """Steps, dev failure rates, proposals valid/total (with why the others were invalid), usage, time."""
    meta = evolver.metadata
    history = getattr(evolver, "compile_history", None) or []
    reasons: Counter[str] = Counter()
    if history:
        candidates = [c for record in history for c in record.candidates]
        total, valid = len(candidates), sum(not c.invalid for c in candidates)
        reasons.update(re.sub(r"\d+", "N", c.invalid_reason or "?")[:100] for c in candidates if c.invalid)
    else:  # a loaded evolver: only its metadata summary is left
        steps = meta.get("history") or []
        total = sum(len(step.get("candidate_failure_rates") or []) for step in steps)
        valid = total - sum(int(step.get("invalid_candidates") or 0) for step in steps)
    return {
        "source": source, "method_fingerprint": evolver.fingerprint, "steps": meta.get("steps"),
        "stopped": meta.get("stopped"), "initial_dev_failure_rate": meta.get("initial_dev_failure_rate"),
        "dev_failure_rate": meta.get("dev_failure_rate"), "proposals_valid": valid, "proposals_total": total,
        "invalid_reasons": dict(reasons.most_common()), "usage": meta.get("usage") or {},
        "recorded_seconds": meta.get("seconds"), "wall_seconds": None if wall is None else round(wall, 1),
        "hyperparameters": meta.get("hyperparameters"), "demos": len(evolver.demos),
    }


def outcome_settings(args: argparse.Namespace, detector: FailureDetector, evol: dspy.LM) -> dict[str, Any]:
    """What decides an item's outcome (part of every item's key; other scripts share e_0's lines through it)."""
    judge = judge_spec(args)
    return {"lm": parse_spec(args.lm).display_name, "max_tokens": args.max_tokens, **evol_answer_settings(evol),
            "answer_max_tokens": args.answer_max_tokens, "rules": detector.rule_ids,
            "judge": judge and parse_spec(judge).display_name, "seed": args.seed}


def bootstrapped_e0(train: list[SeedItem], args: argparse.Namespace, detector: FailureDetector, path: Path,
                    session: LMSession) -> tuple[Evolver, dict[str, Any]]:
    """e_0 with ``--max-demos`` demonstrations of its own successes on the compile part (saved to ``path``).

    With ``--resume`` an earlier run's file is reused, so its demonstrations (and the item keys of
    its evaluation) stay the same.
    """
    if args.resume and path.exists():
        loaded = Evolver().load(path)
        return loaded, {"demos": len(loaded.demos), "reused": str(path)}
    before = role_usage(session)
    demos = bootstrap_demos(Evolver(), train, args.max_demos, detector=detector,
                            responder=Responder(max_tokens=args.answer_max_tokens), num_threads=args.threads)
    evolver = Evolver(demos=demos)
    evolver.save(path)
    return evolver, {"demos": len(demos), "usage": usage_delta(role_usage(session), before), "file": str(path)}


# ------------------------------------------------------------------------------ the run


def run(args: argparse.Namespace, checkpoint: GitCheckpoint | None = None) -> Report:
    """Split, compile (or load), evaluate every method on the held-out items, compare with e_0.

    ``checkpoint`` commits the run's records as they grow (after items and compile progress).
    """
    after_item = checkpoint.due_commit if checkpoint is not None else None
    from autoevol.baselines import EvolInstructBaseline

    data, train, held_out = split_seed_file(args)
    prefix = output_prefix(args, data)
    print(f"{data}: {len(train)} compile items, {len(held_out)} held-out items; outputs {prefix}.*",
          file=sys.stderr, flush=True)
    with lm_session(args) as session:
        evol = session.lm(args.lm, role="evol", api_base=args.api_base, max_tokens=args.max_tokens)
        probe(evol, args.lm)
        optimizer = session.lm(args.lm, role="optimizer", api_base=args.api_base, max_tokens=args.max_tokens)
        detector = build_detector(session, args)
        settings = outcome_settings(args, detector, evol)
        report = Report(settings={**settings, "api_base": args.api_base, "local_servers": len(session.servers),
                                  "threads": args.threads, "reproducible": args.reproducible},
                        seed_file=str(data), compile_items=len(train),
                        held_out_ids=[item.id for item in held_out], methods=[])

        def evaluate(key: str, label: str, program: Any) -> MethodResult:
            result = evaluate_method(key, label, program, held_out, session=session, lm=evol,
                                     responder=Responder(max_tokens=args.answer_max_tokens),
                                     detector=detector, settings=settings, path=Path(f"{prefix}.{key}.items.jsonl"),
                                     resume=args.resume, threads=args.threads, after_item=after_item)
            report.methods.append(result)
            return result

        optimize = None if args.evolver else teleprompter(evol, optimizer, detector, args, after_item)  # fails fast
        demos = f"-demos{args.max_demos}" if args.max_demos else ""  # files of runs with demonstrations
        # the compile first: it is what the run is for, and the held-out evaluations resume around it
        if args.evolver:
            compiled = Evolver().load(args.evolver)
            report.compile.update(compile_figures(compiled, None, str(args.evolver)))
            label = f"compiled ({Path(args.evolver).name})"
        else:
            run_dir = Path(f"{prefix}.compile{demos}.run")
            if not args.resume and run_dir.exists():
                shutil.rmtree(run_dir)
            started, before = time.monotonic(), role_usage(session)
            found_nothing = None
            try:
                compiled = optimize.compile(Evolver(), trainset=train, run_dir=run_dir)
            except CompileFoundNothing as error:  # the result is the starting method: say so, measure it anyway
                compiled, found_nothing = error.evolver, str(error)
            saved = Path(f"{prefix}.compiled{demos}.json")
            compiled.save(saved)
            report.compile.update(compile_figures(compiled, time.monotonic() - started, in_repository(saved)))
            report.compile.update(session_usage=usage_delta(role_usage(session), before), found_nothing=found_nothing)
            label = f"compiled here ({report.compile['steps']} steps" + (", found nothing)" if found_nothing else ")")
        e0 = evaluate("e0", "e_0 (initial method)", Evolver())
        if args.max_demos:
            with dspy.context(lm=evol):
                bootstrapped = bootstrapped_e0(train, args, detector, Path(f"{prefix}.e0{demos}.json"), session)
            report.compile["bootstrap"] = bootstrapped[1]
            evaluate(f"e0{demos}", f"e_0 + {len(bootstrapped[0].demos)} bootstrapped demonstrations", bootstrapped[0])
        if demos and compiled.demos:
            alone = compiled.with_demos([])
            if alone.fingerprint == e0.fingerprint:
                report.methods.append(replace(e0, key=f"compiled-method{demos}", label="compiled method alone = e_0",
                                              seconds=0.0, usage={}))
            else:
                evaluate(f"compiled-method{demos}", "compiled method alone", alone)
            label += f" + {len(compiled.demos)} demonstrations"
        if compiled.fingerprint == e0.fingerprint:  # the same method: its outcomes are e_0's
            compiled_result = replace(e0, key=f"compiled{demos}", label=f"{label} = e_0", seconds=0.0, usage={})
            report.methods.append(compiled_result)
        else:
            compiled_result = evaluate(f"compiled{demos}", label, compiled)
        # the baseline last: the comparison the benchmark is for (compiled against e_0) comes first
        evaluate("evol-instruct", "Evol-Instruct operations", EvolInstructBaseline(seed=args.seed))
    for other in report.methods[1:]:
        diff, low, high = paired_bootstrap(e0.failed_flags, other.failed_flags, n_boot=args.n_boot,
                                           confidence=CONFIDENCE, seed=args.seed)
        report.differences.append({"method": other.key, "reference": e0.key, "diff": diff, "low": low, "high": high,
                                   "confidence": CONFIDENCE, "items": len(held_out),
                                   "primary": other is compiled_result})
    return report


def lm_session(args: argparse.Namespace, concurrency: int | None = None) -> LMSession:
    """The run's LM session: ``--threads`` calls in flight (or ``concurrency``), ``--timeout`` and
    ``--retries`` per call, ``--budget-minutes`` shared by every LM, ``--reproducible`` local servers."""
    budget = Budget(max_seconds=60 * args.budget_minutes) if args.budget_minutes else None
    return LMSession(concurrency=concurrency or args.threads, policy=CallPolicy(timeout=args.timeout,
                                                                               max_retries=args.retries),
                     budget=budget, reproducible=args.reproducible)


def _exit_on_terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def run_recorded(args: argparse.Namespace, script: str, run_function: Any) -> Any:
    """``run_function(args, checkpoint)`` with ``--name``'s records committed as they grow and at the end.

    A run stopped by ``--budget-minutes`` says so and exits with :data:`EXIT_BUDGET`; a terminated
    one (SIGTERM) commits its records too.
    """
    args.resume = args.resume or args.name is not None
    signal.signal(signal.SIGTERM, _exit_on_terminate)  # a killed run still commits what it finished
    checkpoint = None
    if args.name is not None:
        checkpoint = GitCheckpoint(RUNS_DIR / args.name, None if args.no_commit else args.commit_every,
                                   f"benchmarks/{script} --name {args.name}")
    try:
        return run_function(args, checkpoint)
    except BudgetExceeded as error:
        print(f"stopped: {error}; everything finished is kept, rerun the same command to continue", file=sys.stderr)
        raise SystemExit(EXIT_BUDGET) from None
    finally:
        if checkpoint is not None:
            checkpoint.final_commit()


# ------------------------------------------------------------------------------ output


def calls_by_role(usage: dict[str, Any]) -> str:
    return ", ".join(f"{role} {int(counts.get('calls', 0))}" for role, counts in usage.items()) or "-"


def prompt_tokens_per_item(result: MethodResult) -> str:
    """Prompt tokens of the evol role per item (the evolution, with its demonstrations, and the answer)."""
    tokens = (result.usage.get("evol") or {}).get("input_tokens", 0)
    return f"{tokens / result.items:.0f}" if tokens and result.items else "-"


def _rules(by_rule: dict[str, int]) -> str:
    return ", ".join(f"{rule} {count}" for rule, count in by_rule.items()) or "-"


def markdown(report: Report) -> str:
    """The table, the paired differences with e_0, and the compile's figures."""
    lines = ["| method | held-out failure rate | failed / items | failures by rule | LM calls | "
             "evol prompt tokens / item | wall time |",
             "|---|---:|---:|---|---|---:|---:|"]
    lines += [f"| {m.label} | {m.failure_rate:.1%} | {m.failed} / {m.items} | {_rules(m.by_rule)} | "
              f"{calls_by_role(m.usage)} | {prompt_tokens_per_item(m)} | {quality_eval.format_seconds(m.seconds)} |"
              for m in report.methods]
    labels = {m.key: m.label for m in report.methods}
    lines.append("")
    for d in report.differences:
        lines.append(f"- {labels[d['method']]} minus e_0: {100 * d['diff']:+.1f} points, "
                     f"{d['confidence']:.0%} paired bootstrap interval [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] "
                     f"({d['items']} items)")
    c = report.compile
    if c.get("bootstrap"):
        b = c["bootstrap"]
        lines.append(f"- bootstrapped demonstrations of e_0: {b['demos']} from the compile part"
                     + (f" (LM calls: {calls_by_role(b['usage'])})" if b.get("usage") else f" (reused {b.get('reused')})"))
    if c.get("source"):
        rates = (f"{100 * c['initial_dev_failure_rate']:.0f}% -> {100 * c['dev_failure_rate']:.0f}%"
                 if c.get("dev_failure_rate") is not None else "-")
        invalid = "; ".join(f"{reason}: {n}" for reason, n in c["invalid_reasons"].items())
        wall = "-" if c["wall_seconds"] is None else quality_eval.format_seconds(c["wall_seconds"])
        recorded = quality_eval.format_seconds(c["recorded_seconds"] or 0)
        found = f"; found nothing: {c['found_nothing']}" if c.get("found_nothing") else ""
        lines += [f"- compile ({c['source']}): {c['steps']} step(s), stopped: {c['stopped']}, "
                  f"dev failure rate {rates}{found}, demonstrations {c.get('demos', 0)}",
                  f"- proposals valid {c['proposals_valid']}/{c['proposals_total']}"
                  + (f" (invalid: {invalid})" if invalid else ""),
                  f"- compile LM calls: {calls_by_role(c['usage'])}; recorded compile time {recorded}, "
                  f"wall time of this run {wall}"]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The command-line flags (``run_all.py`` builds its quality section from them too)."""
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--lm", default=None, help="LM spec of every role: 'local', 'local:FILE.gguf' or a DSPy model "
                                                 "(required)")
    parse.add_argument("--api-base", default=None)
    source = parse.add_mutually_exclusive_group()  # one is required to measure: see require_inputs
    source.add_argument("--seed-file", type=Path, default=None)
    source.add_argument("--seed-set", choices=sorted(seeds.SEED_SETS), default=None,
                        help="a measurement seed set prepared by benchmarks/seeds.py")
    parse.add_argument("--seeds-dir", type=Path, default=None, help="cache folder of --seed-set files")
    parse.add_argument("--column", default=None)
    parse.add_argument("--evolver", default=None, help="a compiled evolver (.json) instead of compiling here")
    parse.add_argument("--held-out", type=int, default=30)
    parse.add_argument("--dev-size", type=int, default=10)
    parse.add_argument("--candidates", type=int, default=4)
    parse.add_argument("--steps", type=int, default=3)
    parse.add_argument("--batch-size", type=int, default=4)
    parse.add_argument("--patience", type=int, default=2)
    parse.add_argument("--threads", type=int, default=1)
    parse.add_argument("--reproducible", action="store_true",
                       help="local models on one slot without the prompt cache: the same replies when measured again "
                            "on this machine (docs/local.md)")
    parse.add_argument("--max-demos", type=int, default=None, metavar="K",
                       help="also compile with up to K demonstrations and compare e_0 + bootstrapped demonstrations, "
                            "the compiled method alone and with its demonstrations (default: the method text alone)")
    parse.add_argument("--compile-arg", action="append", metavar="KEY=VALUE",
                       help="another AutoEvolInstruct keyword (repeatable; JSON values, else text)")
    parse.add_argument("--judge-lm", default="same", help="information-gain judge: 'none', 'same' (the --lm) or a spec")
    parse.add_argument("--disable-rule", action="append", help="leave a failure rule out (repeatable)")
    parse.add_argument("--max-tokens", type=int, default=1024)
    parse.add_argument("--answer-max-tokens", type=int, default=None,
                       help="cap of the answers read by failure detection (also passed to the compile)")
    parse.add_argument("--timeout", type=float, default=300.0)
    parse.add_argument("--retries", type=int, default=4)
    parse.add_argument("--seed", type=int, default=0)
    parse.add_argument("--n-boot", type=int, default=2000)
    parse.add_argument("--json", type=Path, default=None, help="write every figure here")
    parse.add_argument("--results-md", type=Path, default=None,
                       help="write the table into this file's section of the run (e.g. benchmarks/RESULTS.md), "
                            "replacing an earlier one")
    parse.add_argument("--work-dir", type=Path, default=None, help="per-item outcomes and checkpoints (default: "
                       "next to --json)")
    parse.add_argument("--resume", action="store_true", help="reuse finished items and compile steps")
    parse.add_argument("--name", default=None, help="keep the run under benchmarks/runs/NAME/ (tracked, committed as "
                       "it grows) and resume from it; implies --resume")
    parse.add_argument("--commit-every", type=float, default=30.0, metavar="MINUTES",
                       help="with --name: commit the run's folder this often, and when the run stops")
    parse.add_argument("--no-commit", action="store_true", help="with --name: never commit the run's folder")
    parse.add_argument("--budget-minutes", type=float, default=None,
                       help="stop cleanly after this long (no LM call starts later); rerun to continue")
    parse.add_argument("--verbose", action="store_true", help="log the compile's steps")
    parse.add_argument("--report", action="store_true",
                       help="with --name: report what the run has finished so far, from its records alone (no LM)")
    return parse


def require_inputs(args: argparse.Namespace) -> None:
    """``--lm`` and a seed source are required to measure (argparse cannot say "unless --report")."""
    if args.lm is None:
        raise SystemExit("error: the following arguments are required: --lm")
    if args.seed_file is None and args.seed_set is None:
        raise SystemExit("error: one of the arguments --seed-file --seed-set is required")


def configure_logging(verbose: bool) -> None:
    """Warnings on stderr with their time; LiteLLM, httpx and DSPy only on errors; autoevol's steps with ``verbose``."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("LiteLLM", "httpx", "dspy"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    logging.getLogger("autoevol").setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    """Run, print the table; write ``--json`` and the ``--results-md`` section when given."""
    args = parser().parse_args(argv)
    if args.report:
        report_from_records(args, "quality.py", "Quality", finished_report)
        return
    require_inputs(args)
    configure_logging(args.verbose)
    report = run_recorded(args, "quality.py", run)
    publish(args, "quality.py", report, report_title(report), markdown(report))


def report_title(report: Report) -> str:
    """What a run measured, on which seeds, with which model."""
    return (f"Quality: held-out failure rate on {Path(report.seed_file).name} with {report.settings['lm']} "
            f"({len(report.held_out_ids)} held-out items, {report.compile_items} compile items, "
            f"seed {report.settings['seed']})")


def finished_report(document: dict[str, Any]) -> tuple[str, str]:
    """The title and the held-out table of a finished run's ``report.json``."""
    report = Report(**document)
    return report_title(report), markdown(report)


def report_from_records(args: argparse.Namespace, script: str, label: str,
                        finished: Callable[[dict[str, Any]], tuple[str, str]]) -> None:
    """``--report``: print what ``--name``'s folder holds; with ``--results-md``, make it the run's section.

    A finished run's ``report.json`` (written at its end) gives the held-out table, the paired
    differences and the compile's figures (``finished``: its title and table) above the records'
    details; otherwise, a run stopped by its budget or still going, the section is the run's
    progress so far (:func:`run_progress.run_progress`).
    """
    if args.name is None:
        raise SystemExit("error: --report needs --name (the run folder under benchmarks/runs/)")
    folder = RUNS_DIR / args.name
    progress = run_progress(folder, planned_items=args.held_out)
    command = f"python benchmarks/{script} --name {args.name} --held-out {args.held_out} --report"
    done = folder / "report.json"
    if done.exists():
        document = json.loads(done.read_text(encoding="utf-8"))
        command = " ".join(["python", *document.pop("command", [])])
        document["methods"] = [MethodResult(**method) for method in document["methods"]]
        title, table = finished(document)
        body = f"{table}\n\n{progress}"
    else:
        title, body = f"{label} `{args.name}`, in progress (from its records)", progress
    print(f"{title}\n\n{body}")
    if args.results_md:
        write_section(args, script, title, command, body)


def publish(args: argparse.Namespace, script: str, report: Any, title: str, table: str) -> None:
    """Print the table; write ``--json`` (by default, with ``--name``, the run folder's ``report.json``) and
    the run's section of ``--results-md`` (replaced, so a rerun regenerates it from the records)."""
    print(f"{title}\n\n{table}")
    document_path = args.json or (RUNS_DIR / args.name / "report.json" if args.name else None)
    if document_path is not None:
        document_path.parent.mkdir(parents=True, exist_ok=True)
        document = {"command": sys.argv, **asdict(report)}
        document_path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    if args.results_md:
        write_section(args, script, title, f"python benchmarks/{script} {' '.join(sys.argv[1:])}", table)


def write_section(args: argparse.Namespace, script: str, title: str, command: str, body: str, *,
                  part: str | None = None) -> None:
    """The run's section of ``--results-md`` (named after the script and the run, and ``part`` when a run
    has several), replaced by ``body``."""
    section = f"{Path(script).stem}-{args.name or (args.json.stem if args.json else 'run')}"
    section += f"-{part}" if part else ""
    replace_section(args.results_md, section, f"## {title}\n\n`{command}`\n\n{body}")


if __name__ == "__main__":
    main()
