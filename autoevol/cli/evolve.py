"""``autoevol evolve``: evolve a dataset with e_0 or a compiled evolver."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import dspy
import typer
from rich.table import Table

from autoevol.cli.common import check_output, console, fail, merged_usage, probe, progress_bar, usage_table
from autoevol.data import count_rows, output_format
from autoevol.lm import Budget, CallPolicy, LMSession
from autoevol.metrics.failure import FailureDetector
from autoevol.programs.evolver import Evolver
from autoevol.programs.journal import Journal
from autoevol.programs.pipeline import EvolveJob, JobSummary
from autoevol.records import EvolvedRow


def evolve(
    data: Annotated[Path, typer.Argument(help="Input file (.jsonl, .json, .csv, .parquet) or saved dataset folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: .jsonl, .parquet, or a folder (save_to_disk).")],
    program: Annotated[Optional[Path], typer.Option(help="A compiled evolver (.json); default: the initial method e_0.")] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Evolve each successful row again this many times in a row.")] = 1,
    column: Annotated[Optional[str], typer.Option(help="Instruction column (default: detected).")] = None,
    id_column: Annotated[Optional[str], typer.Option(help="Row id column (default: 'id' if present, else the row index).")] = None,
    evol_lm: Annotated[str, typer.Option(help="Evol LM: 'local', 'local:FILE.gguf' or a DSPy model string.")] = "local",
    api_base: Annotated[Optional[str], typer.Option(help="API base URL of the evol LM (default: $OPENAI_BASE_URL for openai/...).")] = None,
    judge_lm: Annotated[Optional[str], typer.Option(help="Also run the LLM 'Equal' information-gain judge with this LM.")] = None,
    disable_rule: Annotated[Optional[list[str]], typer.Option(help="Turn off a failure rule (repeatable).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Rows evaluated at once.")] = 4,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N input rows.")] = None,
    max_output_tokens: Annotated[int, typer.Option(min=16, help="Output token limit per LM call.")] = 768,
    timeout: Annotated[float, typer.Option(help="Seconds before one LM call is abandoned and retried.")] = 120.0,
    retries: Annotated[int, typer.Option(min=0, help="Retries per LM call on transient errors.")] = 4,
    max_calls: Annotated[Optional[int], typer.Option(min=1, help="Stop cleanly (resumable) after this many LM calls.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(min=1, help="Stop cleanly (resumable) after this many tokens.")] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Stop cleanly (resumable) at this cost in USD, where prices are known.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output (and discard an unfinished job).")] = False,
) -> None:
    """Evolve every instruction of DATA, answer and judge each evolution, and write OUT.

    Every input row yields one output row per round, evolved or failed with the rule and reason.
    An interrupted job resumes when rerun with the same arguments.
    """
    output_format(out)
    if not data.exists():
        fail(f"{data}: no such file or folder")
    check_output(out, overwrite)
    evolver = Evolver.load(program) if program else Evolver()
    budget = Budget(max_calls=max_calls, max_tokens=max_tokens, max_cost=max_cost)
    policy = CallPolicy(timeout=timeout, max_retries=retries)
    with LMSession(concurrency=concurrency, policy=policy, budget=budget) as session:
        lm = session.lm(evol_lm, role="evol", api_base=api_base, max_tokens=max_output_tokens)
        probe(lm, evol_lm, "evol")
        judge = session.lm(judge_lm, role="judge", max_tokens=64) if judge_lm else None
        detector = FailureDetector(judge_lm=judge, disable=disable_rule or ())
        total = count_rows(data)
        if total is not None and limit is not None:
            total = min(total, limit)
        with progress_bar() as bar:
            task = bar.add_task("evolving", total=total, status="")
            failed = 0

            def advance(row: EvolvedRow) -> None:
                nonlocal failed
                failed += row.failed
                bar.update(task, advance=1, description=f"round {row.round}", status=f"{failed} failed")

            job = EvolveJob(evolver, detector=detector, concurrency=concurrency,
                            evol_model=getattr(lm, "display_name", lm.model), on_row=advance)
            if Journal(out).exists() and not overwrite:
                console.print(f"resuming the unfinished job for {out}")
            with dspy.context(lm=lm):
                summary = job.run(data, out, column=column, id_column=id_column, limit=limit,
                                  rounds=rounds, overwrite=overwrite)
        summary.usage = merged_usage(session)
    print_summary(summary)
    if summary.stopped:
        console.print(f"[yellow]stopped early: {summary.stopped}.[/yellow] Everything done so far is kept; "
                      "rerun the same command to resume.")
        raise typer.Exit(3)


def print_summary(summary: JobSummary) -> None:
    table = Table(title="evolve summary")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("rows", str(summary.rows))
    table.add_row("evolved", str(summary.evolved))
    table.add_row("failed", str(summary.failed))
    for rule, count in summary.failed_by_rule.items():
        table.add_row(f"  failed: {rule}", str(count))
    if summary.resumed_rows:
        table.add_row("rows kept from an earlier run", str(summary.resumed_rows))
    table.add_row("LM calls", str(sum(u.calls for u in summary.usage)))
    table.add_row("tokens", str(sum(u.tokens for u in summary.usage)))
    table.add_row("wall time", f"{summary.seconds:.1f} s")
    if summary.output:
        table.add_row("output", summary.output)
    console.print(table)
    console.print(usage_table(summary.usage))
