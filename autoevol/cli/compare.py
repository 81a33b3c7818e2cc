"""``autoevol compare``: evolvers side by side on the same held-out items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import dspy
import typer
from rich.table import Table

from autoevol.baselines import CLASSIC_NAME, method_names, named_program
from autoevol.cli.common import (
    REPRODUCIBLE_HELP,
    check_output,
    console,
    fail,
    merged_usage,
    probe,
    session_judge,
    usage_table,
)
from autoevol.cli.demos import demos_line
from autoevol.data import iter_items
from autoevol.lm import CallPolicy, LMSession
from autoevol.metrics.compare import NothingMeasured
from autoevol.metrics.failure import FailureDetector
from autoevol.programs.evolver import Evolver

#: The hand-written baselines ``--baseline`` adds.
BASELINES = (CLASSIC_NAME,)


def _load(spec: str, seed: int) -> tuple[str, Any]:
    """The evolver ``spec`` names: an evolver file, else a method by name (``e0``, ``deepen``, ...)."""
    path = Path(spec)
    if path.is_file():
        return path.stem, Evolver().load(path)
    try:
        return spec, named_program(spec, seed=seed)
    except ValueError:
        fail(f"{spec}: no such evolver file, nor a method name ({', '.join(method_names())})")


def _unique(name: str, taken: dict[str, Any]) -> str:
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}-{k}", k + 1
    return candidate


def compare_command(
    evolvers: Annotated[list[str], typer.Argument(help="Evolver files (.json) or method names (e0 for the initial method, evol-instruct for the classic operations, or one operation such as deepen); the first is the reference.")],
    data: Annotated[Path, typer.Option(help="Held-out items (.jsonl, .json, .csv, .parquet or a saved dataset folder).")] = ...,  # type: ignore[assignment]
    column: Annotated[Optional[str], typer.Option(help="Instruction column (default: detected).")] = None,
    baseline: Annotated[Optional[str], typer.Option(help="Add a hand-written baseline: 'evol-instruct' (the same as naming it among the evolvers).")] = None,
    evol_lm: Annotated[str, typer.Option(help="Evol LM: 'local', 'local:FILE.gguf' or a DSPy model string.")] = "local",
    api_base: Annotated[Optional[str], typer.Option(help="API base URL of the evol LM.")] = None,
    judge_lm: Annotated[Optional[str], typer.Option(help="LM of the evolution judge (one call per item that passes the cheap rules), as in a compile; default: none (the cheap rules only). A compile's default detector includes the judge: give the same model here to measure held-out rates with the detector the compile optimized against.")] = None,
    judge_api_base: Annotated[Optional[str], typer.Option(help="API base URL of the judge LM (default: --api-base when it is the evol LM's model).")] = None,
    disable_rule: Annotated[Optional[list[str]], typer.Option(help="Turn off a failure rule (repeatable).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Items evaluated at once.")] = 4,
    reproducible: Annotated[bool, typer.Option(help=REPRODUCIBLE_HELP)] = False,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N items.")] = None,
    quality: Annotated[bool, typer.Option(help="Measure complexity and diversity (WordLlama embeddings, offline).")] = True,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="Coverage of the bootstrap interval.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the baseline's operation choice.")] = 0,
    max_output_tokens: Annotated[int, typer.Option(min=16, help="Output token limit per LM call.")] = 768,
    out: Annotated[Optional[Path], typer.Option(help="Save the results (without per-item outcomes unless --outcomes) as JSON.")] = None,
    outcomes: Annotated[bool, typer.Option(help="With --out: include every item's evolution, answer and verdict.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Compare evolvers on the same held-out items, side by side (each with its demonstrations).

    Shows failure rates with a paired bootstrap interval of the difference to the first evolver,
    failures by rule, and quality metrics of the successful evolutions. An item whose measurement
    failed for any evolver (an LM error, a judge abstention) is left out of every rate and listed.
    """
    from autoevol.metrics.compare import compare_evolvers

    if baseline is not None and baseline not in BASELINES:
        fail(f"unknown baseline '{baseline}'; choose from: {', '.join(BASELINES)}")
    if not evolvers:
        fail("give at least one evolver (a .json file or a method name such as 'e0')")
    if len(evolvers) + (baseline is not None) < 2:
        fail("a comparison needs two evolvers (or one and --baseline evol-instruct)")
    if out is not None:
        check_output(out, overwrite)
    programs: dict[str, Any] = {}
    for spec in evolvers:
        name, program = _load(spec, seed)
        programs[_unique(name, programs)] = program
    if baseline is not None:
        programs[_unique(baseline, programs)] = named_program(baseline, seed=seed)
    try:
        FailureDetector(disable=disable_rule or ())  # an unknown rule stops here, before any LM starts
    except ValueError as error:
        fail(str(error))
    if not data.exists():
        fail(f"{data}: no such file or folder")
    items = [item.instruction for item in iter_items(data, column=column, limit=limit) if item.problem is None]
    if not items:
        fail(f"{data}: no usable instruction")
    with LMSession(concurrency=concurrency, policy=CallPolicy(), reproducible=reproducible) as session:
        lm = session.lm(evol_lm, role="evol", api_base=api_base, max_tokens=max_output_tokens)
        probe(lm, evol_lm, "evol")
        judge = session_judge(session, judge_lm, judge_api_base or (api_base if judge_lm == evol_lm else None))
        detector = FailureDetector(judge_lm=judge, disable=disable_rule or ())
        with dspy.context(lm=lm):
            try:
                result = compare_evolvers(programs, items, detector=detector, num_threads=concurrency,
                                          quality=quality, confidence=confidence, seed=seed)
            except NothingMeasured as error:
                fail(str(error))
        usage = merged_usage(session)
    console.print(results_table(result))
    for item in result.left_out:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in item.reasons.items())
        console.print(f"left out: item {item.index + 1} ({reasons[:200]})", highlight=False)
    demos = {name: program.demos for name, program in programs.items() if isinstance(program, Evolver)}
    console.print("demonstrations: " + "; ".join(f"{name} {demos_line(shown)}" for name, shown in demos.items()),
                  highlight=False)
    console.print(usage_table(usage))
    if out is not None:
        document = result.model_dump(mode="json") if outcomes else result.summary()
        document["demos"] = {name: [demo.model_dump(mode="json") for demo in shown] for name, shown in demos.items()}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        console.print(f"results written to {out}", highlight=False)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"


def results_table(result: Any) -> Table:
    """Failure rates, intervals, failures by rule and quality figures, one column per evolver."""
    left_out = f" ({len(result.left_out)} more left out: their measurement failed)" if result.left_out else ""
    table = Table(title=f"{result.items} held-out items{left_out}")
    table.add_column("")
    for name in result.names:
        table.add_column(name, justify="right")
    table.add_row("failure rate", *(f"{result.rates[n].rate:.1%} ({result.rates[n].failed})" for n in result.names))
    diffs = {d.other: d for d in result.differences}
    level = f"{result.differences[0].confidence:.0%}" if result.differences else ""
    table.add_row(f"difference vs {result.names[0]} ({level} CI)", "-", *(
        f"{diffs[n].diff:+.1%} [{diffs[n].low:+.1%}, {diffs[n].high:+.1%}]" for n in result.names[1:]))
    for rule in result.rules():
        table.add_row(f"  {rule}", *(str(result.rates[n].by_rule.get(rule, 0)) for n in result.names))
    reports = [result.quality.get(n) for n in result.names]
    if any(r is not None for r in reports):
        figures = [r.figures() if r is not None else {} for r in reports]
        seed = result.seed_quality.figures() if result.seed_quality is not None else {}
        names = list(dict.fromkeys(k for f in figures for k in f))
        for key in names:
            if all(f.get(key) is None for f in figures):
                continue
            label = f"{key} (seed {_fmt(seed.get(key))})" if seed.get(key) is not None else key
            table.add_row(label, *(_fmt(f.get(key)) for f in figures))
    return table
