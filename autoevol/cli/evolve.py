"""``autoevol evolve``: evolve a dataset with e_0 or a compiled evolver."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Optional

import dspy
import typer
from rich.markup import escape
from rich.table import Table

from autoevol.baselines import INITIAL_NAME, EvolInstructBaseline, named_program
from autoevol.cli.common import (
    REPRODUCIBLE_HELP,
    check_output,
    console,
    fail,
    merged_usage,
    probe,
    progress_bar,
    usage_table,
)
from autoevol.data import DataError, iter_items, output_format, read_rows
from autoevol.estimate import estimate_evolve, estimate_item_evaluations, format_estimate
from autoevol.lm import Budget, CallCache, CallPolicy, LMSession, parse_spec
from autoevol.lm.spec import LOCAL
from autoevol.metrics.failure import FailureDetector
from autoevol.programs.evolver import Evolver
from autoevol.programs.journal import Journal
from autoevol.programs.pipeline import EvolveJob, JobSummary, previous_rows
from autoevol.records import EvolvedRow

#: Said when most rows failed on the embedded model: what it is for, and how to use a real one.
EMBEDDED_HINT = (
    "Most rows failed: the embedded SmolLM2-135M only checks that the pipeline runs offline (a plumbing "
    "check); it is too small to rewrite instructions well. For usable rows point --evol-lm at a real "
    "model: local:FILE.gguf, ollama_chat/MODEL, or hosted_vllm/MODEL --api-base URL (add "
    "--structured-output when that server supports JSON-schema outputs)."
)
#: How many output rows the summary shows, and how far into the output it looks for them.
SAMPLE_ROWS = 3
SAMPLE_SCAN = 1000
#: Characters of each text a sample row shows.
SAMPLE_CHARS = 220


def evolve(
    data: Annotated[Optional[Path], typer.Argument(help="Input file (.jsonl, .json, .csv, .parquet) or saved dataset folder.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: .jsonl, .parquet, or a folder (save_to_disk, with a dataset card README.md).")] = ...,  # type: ignore[assignment]
    program: Annotated[Optional[Path], typer.Option(help="A compiled evolver (.json); default: the initial method e_0.")] = None,
    method: Annotated[Optional[str], typer.Option(help="A named method instead of a compiled evolver: 'e0' (the default), 'evol-instruct' (the classic Evol-Instruct operations, one drawn per row), or one operation for every row: weak, add_constraints, deepen, concretize, increase_reasoning, complicate_input, in_breadth.")] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Evolve each successful row again this many times in a row.")] = 1,
    column: Annotated[Optional[str], typer.Option(help="Instruction column (default: detected).")] = None,
    id_column: Annotated[Optional[str], typer.Option(help="Row id column (default: 'id' if present, else the row index).")] = None,
    evol_lm: Annotated[str, typer.Option(help="Evol LM: 'local', 'local:FILE.gguf' or a DSPy model string.")] = "local",
    api_base: Annotated[Optional[str], typer.Option(help="API base URL of the evol LM (default: $OPENAI_BASE_URL for openai/...).")] = None,
    answer_lm: Annotated[Optional[str], typer.Option(help="The model that writes the final answer of every successful evolution (a spec like --evol-lm); default: the evol LM's answer made for failure detection is kept, with no extra call.")] = None,
    answer_api_base: Annotated[Optional[str], typer.Option(help="API base URL of the answer LM (default: $OPENAI_BASE_URL for openai/...).")] = None,
    judge_lm: Annotated[Optional[str], typer.Option(help="Also run the LLM 'Equal' information-gain judge with this LM.")] = None,
    structured_output: Annotated[Optional[bool], typer.Option(
        "--structured-output/--no-structured-output",
        help="Constrain the rewrites (and judge verdicts) to their JSON schema on a server that supports "
             "JSON-schema outputs (vLLM, SGLang, OpenAI). On for local models unless --no-structured-output.")] = None,
    disable_rule: Annotated[Optional[list[str]], typer.Option(help="Turn off a failure rule (repeatable).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Rows evaluated at once.")] = 4,
    reproducible: Annotated[bool, typer.Option(help=REPRODUCIBLE_HELP)] = False,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N input rows.")] = None,
    max_output_tokens: Annotated[int, typer.Option(min=16, help="Output token limit per LM call.")] = 768,
    timeout: Annotated[float, typer.Option(min=0.01, help="Seconds before one LM call is abandoned and retried.")] = 120.0,
    retries: Annotated[int, typer.Option(min=0, help="Retries per LM call on transient errors.")] = 4,
    backoff: Annotated[float, typer.Option(min=0.0, help="Base of the exponential backoff between retries, in seconds (jittered).")] = 1.0,
    max_calls: Annotated[Optional[int], typer.Option(min=1, help="Stop cleanly (resumable) after this many LM calls.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(min=1, help="Stop cleanly (resumable) after this many tokens.")] = None,
    max_cost: Annotated[Optional[float], typer.Option(min=0.0, help="Stop cleanly (resumable) at this cost in USD, where prices are known.")] = None,
    resume: Annotated[bool, typer.Option(help="Resume the unfinished job for OUT (the default when one exists); error if there is none.")] = False,
    retry_failed: Annotated[Optional[Path], typer.Option(help="Rerun only the failed rows of this earlier output; OUT gets every row of it once.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the planned LM calls and estimated tokens and cost; call nothing.")] = False,
    engine: Annotated[str, typer.Option(help="'local' (threads in this process) or 'ray' (an actor pool on Ray Data; pip install 'autoevol[ray]').")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster to join ('auto' or ray://HOST:PORT); default: start a local one.")] = None,
    actors: Annotated[int, typer.Option(min=1, help="With --engine ray: evolve actors, each with --concurrency rows at once.")] = 2,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output (and discard an unfinished job).")] = False,
) -> None:
    """Evolve every instruction of DATA, answer and judge each evolution, and write OUT.

    Every input row yields one output row per round, evolved or failed with the rule and reason.
    An interrupted job (Ctrl-C, a crash, a budget) resumes when rerun with the same arguments;
    the LM calls it had completed are not paid again. With --retry-failed PREVIOUS, DATA is not
    needed: only the failed rows of PREVIOUS are evaluated again.
    """
    output_format(out)
    if retry_failed is not None:
        if data is not None:
            fail("--retry-failed reads its rows from the earlier output; do not give DATA as well")
        if not retry_failed.exists():
            fail(f"{retry_failed}: no such file or folder")
        output_format(retry_failed)
        source = retry_failed
    else:
        if data is None:
            fail("missing DATA: the input file or folder to evolve")
        assert data is not None
        if not data.exists():
            fail(f"{data}: no such file or folder")
        source = data
    if overwrite and resume:
        fail("--resume and --overwrite contradict each other")
    if engine not in ("local", "ray"):
        fail(f"--engine must be 'local' or 'ray', not '{engine}'")
    if reproducible and engine == "ray":
        fail("--reproducible serves local models one call at a time; it needs --engine local")
    evolver = _evolver(program, method, engine)
    if engine == "ray":
        _check_ray(retry_failed)
    journal = Journal(out)
    if resume and not journal.exists():
        fail(f"{out}: there is no unfinished job to resume (no {journal.path.name})")
    check_output(out, overwrite)
    _check_card(out, overwrite)
    try:
        FailureDetector(disable=disable_rule or ())  # an unknown rule stops here, before any LM starts
    except ValueError as error:
        fail(str(error))
    if answer_lm is not None and answer_lm.strip() == evol_lm.strip() and answer_api_base in (None, api_base):
        answer_lm = None  # the evol LM itself: its answers are already there
    if answer_lm is None and answer_api_base is not None:
        fail("--answer-api-base needs --answer-lm")
    if dry_run:
        _dry_run(source, evolver, retry=retry_failed is not None, evol_lm=evol_lm, judge_lm=judge_lm,
                 answer_lm=answer_lm,
                 column=column, id_column=id_column, limit=limit, rounds=rounds,
                 max_output_tokens=max_output_tokens)
        return
    policy = CallPolicy(timeout=timeout, max_retries=retries, backoff_base=backoff,
                        backoff_cap=max(30.0, backoff))
    if engine == "ray":
        summary = _run_on_ray(source, out, evolver, evol_lm=evol_lm, api_base=api_base, judge_lm=judge_lm,
                              answer_lm=answer_lm, answer_api_base=answer_api_base,
                              disable_rules=tuple(disable_rule or ()), actors=actors, concurrency=concurrency,
                              ray_address=ray_address, column=column, id_column=id_column, limit=limit,
                              rounds=rounds, overwrite=overwrite, max_output_tokens=max_output_tokens,
                              policy=policy, structured_output=structured_output, max_calls=max_calls,
                              max_tokens=max_tokens, max_cost=max_cost)
        _finish(summary, f"{out}.shards", "the same command", evol_lm)
        return
    budget = Budget(max_calls=max_calls, max_tokens=max_tokens, max_cost=max_cost)
    if overwrite:
        journal.discard()
        journal.discard_calls()
    # read the whole input once before anything is spent: a bad file fails here, in one line
    total = _check_input(source, retry=retry_failed is not None, column=column, id_column=id_column, limit=limit)
    resuming = journal.exists()
    calls = CallCache(journal.calls_path)
    try:
        with LMSession(concurrency=concurrency, policy=policy, budget=budget, call_cache=calls,
                       structured_output=structured_output, reproducible=reproducible) as session:
            lm = session.lm(evol_lm, role="evol", api_base=api_base, max_tokens=max_output_tokens)
            probe(lm, evol_lm, "evol", policy)
            judge = session.lm(judge_lm, role="judge", max_tokens=64) if judge_lm else None
            answerer = None
            if answer_lm is not None:
                answerer = session.lm(answer_lm, role="answer", api_base=answer_api_base,
                                      max_tokens=max_output_tokens)
                probe(answerer, answer_lm, "answer", policy)
            detector = FailureDetector(judge_lm=judge, disable=disable_rule or ())
            summary = _run(source, out, evolver, detector, lm, answerer, retry=retry_failed is not None,
                           concurrency=concurrency, column=column, id_column=id_column, limit=limit,
                           rounds=rounds, overwrite=overwrite, resuming=resuming, total=total,
                           card_settings={"max_output_tokens": max_output_tokens,
                                          "structured_output": structured_output})
            summary.usage = merged_usage(session)
    finally:
        empty = len(calls) == 0
        calls.close()
        if empty and not journal.exists():  # nothing began (e.g. the LM was unusable): leave nothing behind
            journal.discard_calls()
    if summary.output and not summary.stopped:
        journal.discard_calls()
    again = "the same command" if retry_failed is None else "the same command (same --retry-failed)"
    _finish(summary, journal.path, again + " (or add --resume)", evol_lm)


def _finish(summary: JobSummary, kept_in: object, again: str, evol_lm: str) -> None:
    """Print the summary; a job stopped early (budget, Ctrl-C) says how to resume and exits with 3."""
    if summary.output:
        print_samples(summary.output)
    print_summary(summary)
    if evol_lm.strip() == LOCAL and summary.rows and summary.failed * 2 > summary.rows:
        console.print(EMBEDDED_HINT, highlight=False, soft_wrap=True)
    if summary.stopped:
        console.print(f"[yellow]stopped early: {summary.stopped}.[/yellow] Every finished row is kept in "
                      f"{kept_in}; rerun {again} to continue where it stopped.", highlight=False)
        raise typer.Exit(3)


def _check_card(out: Path, overwrite: bool) -> None:
    """Refuse to replace a dataset folder holding a README.md autoevol did not write (a user's card)."""
    from autoevol.export import CARD_NAME, is_own_card

    readme = out / CARD_NAME
    if overwrite and output_format(out) == "dataset" and readme.is_file() and not is_own_card(readme):
        fail(f"{readme}: was not written by autoevol and --overwrite would replace the folder holding it; "
             "move it away first")


def _check_ray(retry_failed: Path | None) -> None:
    from autoevol.engines import ray_available

    if retry_failed is not None:
        fail("--retry-failed runs on the local engine only; drop --engine ray")
    if not ray_available():
        fail("--engine ray needs Ray Data: pip install 'autoevol[ray]'")


def _run_on_ray(source: Path, out: Path, evolver: Evolver, **settings: object) -> JobSummary:
    from autoevol.engines import run_ray_evolve

    with progress_bar() as bar:
        task = bar.add_task("evolving on ray", total=None, status="")
        failed = 0

        def advance(row: EvolvedRow) -> None:
            nonlocal failed
            failed += row.failed
            bar.update(task, advance=1, description=f"round {row.round} (ray)", status=f"{failed} failed")

        return run_ray_evolve(source, out, evolver=evolver, on_row=advance, **settings)


def _run(source: Path, out: Path, evolver: Evolver | EvolInstructBaseline, detector: FailureDetector, lm: dspy.LM,
         answerer: dspy.LM | None, *, retry: bool,
         concurrency: int, column: str | None, id_column: str | None, limit: int | None, rounds: int,
         overwrite: bool, resuming: bool, total: int, card_settings: dict[str, Any]) -> JobSummary:
    with progress_bar() as bar:
        task = bar.add_task("evolving" if not retry else "retrying failed rows", total=total, status="")
        failed = 0

        def advance(row: EvolvedRow) -> None:
            nonlocal failed
            failed += row.failed
            bar.update(task, advance=1, description=f"round {row.round}", status=f"{failed} failed")

        job = EvolveJob(evolver, detector=detector, concurrency=concurrency,
                        evol_model=getattr(lm, "display_name", lm.model), answer_lm=answerer, on_row=advance,
                        card_settings=card_settings)
        if resuming and not overwrite:
            console.print(f"resuming the unfinished job for {out}")
        with dspy.context(lm=lm):
            try:
                if retry:
                    return job.retry_failed(source, out, overwrite=overwrite)
                return job.run(source, out, column=column, id_column=id_column, limit=limit,
                               rounds=rounds, overwrite=overwrite)
            except KeyboardInterrupt:  # outside the row loop (e.g. while finalizing): still resumable
                return JobSummary(stopped="interrupted")


def _evolver(program: Path | None, method: str | None, engine: str) -> Evolver | EvolInstructBaseline:
    """The program that evolves the rows: ``--program``'s file, else ``--method``'s named method (e_0 by default)."""
    if program is not None and method is not None:
        fail("--program and --method are alternatives: give a compiled evolver file or a method name, not both")
    if program is not None:
        return Evolver().load(program)
    try:
        evolver = named_program(method or INITIAL_NAME)
    except ValueError as error:
        fail(f"--method: {error}")
    if engine == "ray" and not isinstance(evolver, Evolver):
        fail(f"--method {method} runs on the local engine only: Ray's actors evolve every row with one method text")
    return evolver


def _check_input(source: Path, *, retry: bool, column: str | None, id_column: str | None,
                 limit: int | None) -> int:
    """Stream the input once (DataError on the first bad row); returns the number of items to do."""
    if retry:
        return sum(1 for row in previous_rows(source) if row["failed"])
    return sum(1 for _ in iter_items(source, column=column, id_column=id_column, limit=limit))


def _dry_run(source: Path, evolver: Evolver | EvolInstructBaseline, *, retry: bool, evol_lm: str, judge_lm: str | None,
             answer_lm: str | None, column: str | None, id_column: str | None, limit: int | None, rounds: int,
             max_output_tokens: int) -> None:
    model = parse_spec(evol_lm).display_name
    judge = parse_spec(judge_lm).display_name if judge_lm else None
    answer = parse_spec(answer_lm).display_name if answer_lm else None
    if retry:
        sample = [row["original"] for row in read_rows(source) if row.get("failed") and row.get("original")]
        estimate = estimate_item_evaluations(sample[:50], evaluations=len(sample), evolver=evolver, model=model,
                                             max_output_tokens=max_output_tokens, judge_model=judge,
                                             answer_model=answer)
        estimate.items = len(sample)
    else:
        estimate = estimate_evolve(source, evolver=evolver, model=model, column=column, id_column=id_column,
                                   limit=limit, rounds=rounds, max_output_tokens=max_output_tokens,
                                   judge_model=judge, answer_model=answer)
    typer.echo(format_estimate(estimate))


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


def pick_samples(rows: Iterable[dict[str, Any]], count: int = SAMPLE_ROWS,
                 scan: int = SAMPLE_SCAN) -> list[dict[str, Any]]:
    """Up to ``count`` rows to show: evolved ones first, and one failed row when there is one.

    Only the first ``scan`` rows are read; the chosen rows keep their order in the output.
    """
    evolved: list[tuple[int, dict[str, Any]]] = []
    failed: list[tuple[int, dict[str, Any]]] = []
    for index, row in enumerate(itertools.islice(rows, scan)):
        (failed if row.get("failed") else evolved).append((index, row))
        if len(evolved) >= count - 1 and failed:
            break
    chosen = evolved[: count - 1] + failed[:1]
    rest = evolved[count - 1:] + failed[1:]
    chosen += rest[: count - len(chosen)]
    return [row for _, row in sorted(chosen, key=lambda item: item[0])]


def _clip(text: object) -> str:
    words = " ".join(str(text or "").split())
    return words if len(words) <= SAMPLE_CHARS else words[: SAMPLE_CHARS - 1] + "\u2026"


def print_samples(output: str | Path) -> None:
    """Show a few output rows side by side: original, then the evolution or the rule and reason."""
    try:
        samples = pick_samples(read_rows(output))
    except DataError:  # the summary already names the output; a sample is a courtesy
        return
    if not samples:
        return
    table = Table(title="sample rows", show_lines=True)
    table.add_column("id", no_wrap=True)
    table.add_column("original", ratio=1)
    table.add_column("evolved, or why it failed", ratio=1)
    for row in samples:
        result = (f"[red]{escape(str(row.get('rule')))}[/red]: {escape(_clip(row.get('reason')))}" if row.get("failed")
                  else escape(_clip(row.get("evolved"))))
        table.add_row(escape(str(row.get("id"))), escape(_clip(row.get("original"))), result)
    console.print(table)
