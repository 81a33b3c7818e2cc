"""``autoevol compile``: optimize an evolving method on a dataset; ``autoevol show``: inspect the result."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress, TaskID
from rich.table import Table

from autoevol.baselines import starting_methods
from autoevol.cli.common import (
    JUDGE_MAX_TOKENS,
    REPRODUCIBLE_HELP,
    check_output,
    console,
    fail,
    merged_usage,
    probe,
    progress_bar,
    session_judge,
    usage_table,
)
from autoevol.cli.demos import demos_line, demos_table
from autoevol.data import iter_items
from autoevol.estimate import estimate_compile, format_estimate
from autoevol.lm import CallPolicy, LMSession, parse_spec
from autoevol.lm.policy import PERMANENT_ERRORS
from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.rate import describe_error
from autoevol.optimizers.auto_evol import (CompileFoundNothing, CompileSettings, NotEnoughData, RunDirError,
                                          StageProgress)
from autoevol.optimizers.auto_evol.proposal import DEFAULT_MAX_METHOD_WORDS
from autoevol.optimizers.auto_evol.selection import CONFIRM_ALPHA, SELECTION_ALPHA
from autoevol.optimizers.gepa import OPTIMIZERS, build_teleprompter, matched_metric_calls
from autoevol.programs.evolver import Evolver
from autoevol.records import SeedItem

_STAGES = {"trajectory": "trajectory", "analysis": "analysis + candidates", "evaluation": "evaluation on dev",
           "confirmation": "confirmation on held-out items"}


def compile_command(
    data: Annotated[Path, typer.Argument(help="Seed instructions (.jsonl, .json, .csv, .parquet) or saved dataset folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the compiled evolver (.json).")],
    valset: Annotated[Optional[Path], typer.Option(help="Development instructions (default: split off DATA with the seed).")] = None,
    column: Annotated[Optional[str], typer.Option(help="Instruction column (default: detected).")] = None,
    evol_lm: Annotated[str, typer.Option(help="Evol LM: 'local', 'local:FILE.gguf' or a DSPy model string.")] = "local",
    optimizer_lm: Annotated[Optional[str], typer.Option(help="Optimizer LM (default: the same model as --evol-lm).")] = None,
    api_base: Annotated[Optional[str], typer.Option(help="API base URL of the evol LM.")] = None,
    optimizer_api_base: Annotated[Optional[str], typer.Option(help="API base URL of the optimizer LM (default: --api-base when the models are the same).")] = None,
    judge_lm: Annotated[Optional[str], typer.Option(help="LM of the evolution judge (lost task, simpler, not harder, answered instead; one call per item that passes the cheap rules); default: the optimizer LM; 'none' turns it off.")] = None,
    judge_api_base: Annotated[Optional[str], typer.Option(help="API base URL of the judge LM.")] = None,
    disable_rule: Annotated[Optional[list[str]], typer.Option(help="Turn off a failure rule (repeatable).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Most optimization steps T.")] = 10,
    candidates: Annotated[int, typer.Option(min=1, help="Candidate methods m per step.")] = 5,
    batch_size: Annotated[int, typer.Option(min=1, help="Mini-batch size (trajectory cases per step).")] = 10,
    dev_size: Annotated[int, typer.Option(min=1, help="Development set size |D|; below 50 a compile rarely finds even a 20-point gain (docs/compile.md, 'How large a dev set').")] = 50,
    confirm_size: Annotated[Optional[int], typer.Option(min=0, help="Items held out of every selection step to confirm the final gain (default: --dev-size; 0 skips the confirmation and leaves the gain unconfirmed).")] = None,
    selection_alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Family-wise level of accepting a candidate: the k-th candidate tried is accepted when its paired sign test against the current method gives p <= this / k.")] = SELECTION_ALPHA,
    confirm_alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Level of the confirmation test of the final method against the start.")] = CONFIRM_ALPHA,
    rounds: Annotated[int, typer.Option(min=1, help="Evolutions in a row per trajectory case (l).")] = 1,
    patience: Annotated[int, typer.Option(min=1, help="Steps without improvement before stopping.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the dev split, mini-batches and candidate sampling.")] = 0,
    racing: Annotated[bool, typer.Option("--racing/--no-racing", help="Stop measuring candidates that cannot win (--no-racing: every candidate on every dev item, as in the paper).")] = True,
    proposal_mode: Annotated[str, typer.Option(help="'edit': the optimizer adds general rules (at the end or into a step), revises a step, or replaces or deletes a sentence (suits small optimizer LMs); 'rewrite': it rewrites the whole method, as in the paper.")] = "edit",
    proposal_attempts: Annotated[int, typer.Option(min=1, help="Proposals sampled per candidate before an unusable one is given up.")] = 3,
    max_method_words: Annotated[int, typer.Option(min=20, help="Method-length budget in words (longer candidates are shortened or rejected); the default suits small evol LMs.")] = DEFAULT_MAX_METHOD_WORDS,
    answer_max_tokens: Annotated[Optional[int], typer.Option(min=16, help="Output token limit of the evol LM's answers used for failure detection (default: --max-output-tokens); a few hundred keep the response rules intact and save time on slow models.")] = None,
    trajectory_answers: Annotated[bool, typer.Option("--trajectory-answers/--no-trajectory-answers", help="Answer and judge each trajectory case's last stage, so the analysis sees answers and every rule's verdict.")] = True,
    optimizer_name: Annotated[str, typer.Option("--optimizer", help="'auto-evol' (Auto Evol-Instruct, the default) or 'gepa' (DSPy's GEPA with autoevol's failure feedback; see docs/gepa.md).")] = "auto-evol",
    max_metric_calls: Annotated[Optional[int], typer.Option(min=1, help="GEPA's budget in metric calls (one evolution answered and judged each); default: what Auto Evol-Instruct's schedule would measure with --steps, --candidates, --batch-size, --dev-size and --rounds.")] = None,
    keep_unchanged: Annotated[bool, typer.Option(help="Write the evolver even when the compile found no better method (it then exits 0).")] = False,
    max_demos: Annotated[int, typer.Option(min=0, help="Most demonstrations (worked examples from DATA's training part, never dev items) the evolver shows the evol LM; 0 (default): the method text alone, as in the paper.")] = 0,
    demo_candidates: Annotated[int, typer.Option(min=0, help="New demonstration sets tried per step (with --max-demos above 0).")] = 2,
    teacher_demos: Annotated[bool, typer.Option(help="Also let the optimizer LM rewrite failed trajectory cases; rewrites that pass every rule become demonstrations.")] = False,
    keep_demos: Annotated[bool, typer.Option(help="With --from: keep the evolver's demonstrations (default: draw new ones from DATA).")] = False,
    run_dir: Annotated[Optional[Path], typer.Option(help="Checkpoint folder; rerunning with it resumes (default: OUT's name with .run).")] = None,
    from_: Annotated[Optional[Path], typer.Option("--from", help="Start from a compiled evolver instead of e_0 (warm start).")] = None,
    start: Annotated[Optional[list[str]], typer.Option(help="A starting method raced against e_0 (or --from) on the dev set before step 1, replacing it when the paired test supports it: 'weak', an Evol-Instruct operation (add_constraints, deepen, concretize, increase_reasoning, complicate_input, in_breadth) or 'all' (repeatable). Each raced start counts toward the candidates a later gain is tested against (docs/compile.md, 'How large a dev set').")] = None,
    threads: Annotated[int, typer.Option(min=1, help="LM calls in parallel.")] = 4,
    reproducible: Annotated[bool, typer.Option(help=REPRODUCIBLE_HELP)] = False,
    max_output_tokens: Annotated[int, typer.Option(min=16, help="Output token limit per LM call.")] = 1024,
    timeout: Annotated[float, typer.Option(help="Seconds before one LM call is abandoned and retried.")] = 120.0,
    retries: Annotated[int, typer.Option(min=0, help="Retries per LM call on transient errors.")] = 4,
    dry_run: Annotated[bool, typer.Option(help="Print the planned LM calls and estimated tokens and cost; call nothing.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT file.")] = False,
) -> None:
    """Compile an evolver: optimize the evolving method on DATA with Auto Evol-Instruct (or GEPA).

    Each step evolves a mini-batch, lets the optimizer LM analyse the trajectory and propose
    candidate methods, and keeps the one with the lowest evolution failure rate on the dev set.
    Steps are checkpointed in the run directory: rerun the same command to resume.
    """
    if out.suffix.lower() != ".json":
        fail(f"{out}: the compiled evolver is a .json file")
    check_output(out, overwrite)
    student = Evolver().load(from_) if from_ else Evolver()
    trainset = _read_items(data, column)
    dev_items = _read_items(valset, column) if valset else None
    if optimizer_name not in OPTIMIZERS:
        fail(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, not {optimizer_name!r}")
    if max_metric_calls is not None and optimizer_name != "gepa":
        fail("--max-metric-calls is GEPA's budget; add --optimizer gepa (Auto Evol-Instruct's budget is --steps)")
    if proposal_mode not in ("edit", "rewrite"):
        fail(f"--proposal-mode must be 'edit' or 'rewrite', not {proposal_mode!r}")
    try:
        settings = CompileSettings(
            num_candidates=candidates, batch_size=batch_size, dev_size=dev_size, confirm_size=confirm_size,
            max_steps=steps, evolution_rounds=rounds, patience=patience, racing=racing,
            selection_alpha=selection_alpha, confirm_alpha=confirm_alpha,
            starts=_starting_methods(optimizer_name, selection_alpha, confirm_alpha, start),
            proposal_mode=proposal_mode, proposal_attempts=proposal_attempts,  # type: ignore[arg-type]
            max_method_words=max_method_words, answer_max_tokens=answer_max_tokens,
            trajectory_answers=trajectory_answers, max_demos=max_demos, demo_candidates=demo_candidates,
            teacher_demos=teacher_demos, keep_demos=keep_demos, seed=seed, keep_unchanged=keep_unchanged,
            num_threads=threads)
    except ValueError as error:
        fail(str(error))
    if dry_run and optimizer_name == "gepa":
        budget = max_metric_calls or matched_metric_calls(
            dev_size=settings.dev_size, batch_size=settings.batch_size, num_candidates=settings.num_candidates,
            max_steps=settings.max_steps, evolution_rounds=settings.evolution_rounds)
        confirm = settings.confirm_items
        typer.echo(f"GEPA: at most about {budget} metric calls (one evolution, its answer and the judge: 1 to 3 "
                   "LM calls each) plus one optimizer-LM call per iteration"
                   + (f"; then the start and the result on {confirm} confirmation items" if confirm else ""))
        return
    if dry_run:
        judged = (judge_lm or "").strip().casefold() != "none" and "judge" not in (disable_rule or ())
        typer.echo(format_estimate(estimate_compile(
            [item.instruction for item in trainset[:50]], steps=settings.max_steps,
            candidates=settings.num_candidates, batch_size=settings.batch_size, dev_size=settings.dev_size,
            rounds=settings.evolution_rounds, evolver=student, model=parse_spec(evol_lm).display_name,
            optimizer_model=parse_spec(optimizer_lm or evol_lm).display_name,
            max_output_tokens=max_output_tokens, trajectory_answers=settings.trajectory_answers,
            proposal_attempts=settings.proposal_attempts, judge_max_tokens=JUDGE_MAX_TOKENS,
            judge_model=parse_spec(judge_lm or optimizer_lm or evol_lm).display_name if judged else None,
            max_demos=settings.max_demos, demo_candidates=settings.demo_candidates,
            teacher_demos=settings.teacher_demos, keep_demos=settings.keep_demos,
            confirm_size=settings.confirm_items, starts=len(settings.starts))))
        return
    run_dir = run_dir or out.with_suffix(".run")
    policy = CallPolicy(timeout=timeout, max_retries=retries)
    display = _StageDisplay()
    with LMSession(concurrency=threads, policy=policy, reproducible=reproducible) as session:
        evol = session.lm(evol_lm, role="evol", api_base=api_base, max_tokens=max_output_tokens)
        probe(evol, evol_lm, "evol")
        optimizer_spec = optimizer_lm or evol_lm
        optimizer_base = optimizer_api_base or (api_base if optimizer_spec == evol_lm else None)
        optimizer = session.lm(optimizer_spec, role="optimizer", api_base=optimizer_base, max_tokens=max_output_tokens)
        probe(optimizer, optimizer_spec, "optimizer")
        # the judge: --judge-lm, else the optimizer LM's model; 'none' turns it off
        judge = session_judge(session, judge_lm, judge_api_base, default_spec=optimizer_spec,
                              default_base=optimizer_base)
        detector = FailureDetector(judge_lm=judge, disable=disable_rule or ())
        teleprompter = build_teleprompter(optimizer_name, optimizer_lm=optimizer, evol_lm=evol, detector=detector,
                                          settings=settings, max_metric_calls=max_metric_calls,
                                          progress=display.update)
        try:
            teleprompter.split(trainset, dev_items)  # too little data fails here, before any display
        except NotEnoughData as error:
            fail(str(error))
        console.print(f"checkpoints: {run_dir} (rerun the same command to resume)", highlight=False)
        try:
            with display if optimizer_name == "auto-evol" else nullcontext():
                compiled = teleprompter.compile(student, trainset=trainset, valset=dev_items, run_dir=run_dir)
        except (NotEnoughData, RunDirError) as error:
            fail(str(error))
        except CompileFoundNothing as error:
            fail(f"compile found no better method: {error}. No evolver written; the run is kept in "
                 f"{run_dir} (--keep-unchanged writes the unchanged evolver)", code=4)
        except PERMANENT_ERRORS as error:
            fail(f"compile stopped by a permanent LM error: {describe_error(error)}")
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted.[/yellow] Completed steps are kept in {run_dir}; "
                          "rerun the same command to resume.")
            raise typer.Exit(130) from None
        usage = merged_usage(session)
    compiled.save(out)
    _print_summary(compiled, out, start_label="start" if from_ else "e_0")
    console.print(usage_table(usage))


def _starting_methods(optimizer_name: str, selection_alpha: float, confirm_alpha: float,
                      starts: list[str] | None) -> list[str]:
    """The starting methods of ``--start`` (``all``: every one), after the checks of the selection
    options in the CLI's words; GEPA has no starting-method race."""
    for name, value in (("--selection-alpha", selection_alpha), ("--confirm-alpha", confirm_alpha)):
        if not 0 < value < 1:
            fail(f"{name} must be between 0 and 1 (exclusive), not {value}")
    if optimizer_name != "auto-evol":
        if starts:
            fail("--start races starting methods in Auto Evol-Instruct's compile; GEPA starts from e_0 or --from")
        return []
    known = list(starting_methods())
    names = known if "all" in (starts or []) else list(starts or [])
    unknown = [name for name in names if name not in known]
    if unknown:
        fail(f"--start {unknown[0]!r} is not a starting method; choose from {', '.join(known)} or 'all'")
    return names


def show_command(
    evolver: Annotated[Path, typer.Argument(help="A compiled evolver file (.json).")],
) -> None:
    """Show a compiled evolver: its method, demonstrations, metadata, and the failure rates of every step."""
    loaded = Evolver().load(evolver)
    out = Console()
    out.print(Panel(loaded.method, title=f"method {loaded.fingerprint}", expand=False))
    out.print(demos_table(loaded.demos) if loaded.demos else "no demonstrations")
    out.print(_metadata_table(loaded.metadata))
    history = loaded.metadata.get("history") or []
    if loaded.metadata.get("start_race"):
        out.print(start_race_line(loaded.metadata), highlight=False)
    if history:
        out.print(_steps_table(history))
        out.print(confirmation_line(loaded.metadata), highlight=False)
    else:
        out.print("no optimization history: this evolver was not compiled")


def _read_items(path: Path, column: str | None) -> list[SeedItem]:
    if not path.exists():
        fail(f"{path}: no such file or folder")
    items = list(iter_items(path, column=column))
    usable = [item for item in items if item.problem is None]
    skipped = len(items) - len(usable)
    if skipped:
        console.print(f"{path}: skipping {skipped} unusable row(s) (empty or not text)", highlight=False)
    return usable


class _StageDisplay:
    """A rich progress display with one bar per stage of the current step."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._step = -1

    def __enter__(self) -> _StageDisplay:
        self._progress = progress_bar()
        self._progress.__enter__()
        for stage in _STAGES:
            self._tasks[stage] = self._progress.add_task(self._label(stage), total=None, status="")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc_info)
        self._progress = None

    def update(self, event: StageProgress) -> None:
        if self._progress is None:
            return
        if event.step != self._step:
            self._step = event.step
            for stage, task in self._tasks.items():
                self._progress.update(task, description=self._label(stage), completed=0, total=None, status="")
        task = self._tasks.get(event.stage)
        if task is None:
            return
        if event.total == 0:  # nothing to run: every result was known already
            self._progress.update(task, completed=1, total=1, status="cached")
        else:
            self._progress.update(task, completed=event.done, total=event.total, status="")

    def _label(self, stage: str) -> str:
        if stage == "confirmation":
            return f"final check: {_STAGES[stage]}"
        step = "waiting" if self._step < 0 else "starting method" if self._step == 0 else f"step {self._step}"
        return f"{step}: {_STAGES.get(stage, stage)}"


def _rate(value: Any, counts: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    text = f"{100 * value:.1f}%"
    if isinstance(counts, dict) and "failed" in counts:
        text += f" ({counts['failed']}/{counts.get('total', '?')})"
    return text


def _print_summary(compiled: Evolver, out: Path, *, start_label: str) -> None:
    meta = compiled.metadata
    table = Table(title="compile summary")
    table.add_column("")
    table.add_column(start_label, justify="right")
    table.add_column("result", justify="right")
    table.add_row("dev failure rate", _rate(meta.get("initial_dev_failure_rate"), meta.get("initial_dev_failures")),
                  _rate(meta.get("dev_failure_rate"), meta.get("dev_failures")))
    table.add_row("method", str(meta.get("initial_method_fingerprint")), compiled.fingerprint)
    table.add_row("demonstrations", str(meta.get("initial_demos", 0)), demos_line(compiled.demos))
    console.print(table)
    if meta.get("start_race"):
        console.print(start_race_line(meta), highlight=False)
    if meta.get("history"):
        console.print(_steps_table(meta["history"]))
    console.print(confirmation_line(meta), highlight=False)
    console.print(f"{meta.get('steps', 0)} step(s), stopped: {meta.get('stopped')}; "
                  f"wrote {out}", highlight=False)


def _metadata_table(meta: dict[str, Any]) -> Table:
    table = Table(title="metadata", show_header=False)
    table.add_column("key")
    table.add_column("value")
    if not meta:
        table.add_row("(none)", "")
        return table
    rows: Sequence[tuple[str, Any]] = [
        ("optimizer", meta.get("optimizer")), ("autoevol version", meta.get("autoevol_version")),
        ("compiled at", meta.get("compiled_at")), ("models", meta.get("models")),
        ("hyperparameters", meta.get("hyperparameters")), ("dataset", meta.get("dataset")),
        ("dev failure rate of the start",
         _rate(meta.get("initial_dev_failure_rate"), meta.get("initial_dev_failures"))),
        ("dev failure rate of the result", _rate(meta.get("dev_failure_rate"), meta.get("dev_failures"))),
        ("steps", meta.get("steps")), ("stopped", meta.get("stopped")),
        ("started from", meta.get("started_from")), ("usage", meta.get("usage")),
    ]
    known = {"optimizer", "autoevol_version", "compiled_at", "models", "hyperparameters", "dataset",
             "initial_dev_failure_rate", "initial_dev_failures", "dev_failure_rate", "dev_failures", "steps",
             "stopped", "started_from", "usage", "history", "initial_method_fingerprint"}
    rows = [*rows, *((key, value) for key, value in meta.items() if key not in known)]
    for key, value in rows:
        if value is not None and value != "-":
            table.add_row(key, _flat(value))
    return table


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={_flat(item)}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(_flat(item) for item in value)
    return str(value)


def _candidate(rate: float | None, measured: int | None, full: int) -> str:
    if rate is None:
        return "invalid"
    text = f"{100 * rate:.0f}%"
    return text if not measured or measured >= full else f"{text} (dropped after {measured})"


def start_race_line(meta: dict[str, Any]) -> str:
    """The starting-method race in one line: each method's dev failure rate and which one step 1 started from."""
    parts = []
    for entry in meta.get("start_race") or []:
        rate = entry.get("failure_rate")
        name = str(entry.get("method", "?")).removeprefix("starting method: ")
        parts.append(f"{name} {'-' if rate is None else f'{100 * rate:.0f}%'}" + (" (dropped)" if entry.get("dropped") else ""))
    chosen = str(meta.get("start_chosen") or "student").removeprefix("starting method: ")
    return (f"starting methods raced against the start ({_rate(meta.get('initial_dev_failure_rate'), None)}): "
            f"{', '.join(parts)}; step 1 started from: {chosen}")


def confirmation_line(meta: dict[str, Any]) -> str:
    """The confirmation of a compile's result in one line (or why there was none)."""
    confirmation = meta.get("confirmation")
    if not isinstance(confirmation, dict):
        return "confirmation: none (the result is the starting method, or no confirmation split was held out)"
    start = confirmation["reference_only"] + confirmation["both"]
    result = confirmation["challenger_only"] + confirmation["both"]
    verdict = "the gain holds" if meta.get("confirmed") else "the gain does NOT hold"
    return (f"confirmation on {confirmation['items']} held-out items: start failed {start}, result {result} "
            f"(only the start failed {confirmation['reference_only']}, only the result "
            f"{confirmation['challenger_only']}; p={confirmation['p_value']:.3g}, needed <= "
            f"{confirmation['level']:.3g}): {verdict}")


def _paired(entry: dict[str, Any]) -> str:
    paired = entry.get("paired")
    if not isinstance(paired, dict):
        return "-"
    return (f"+{paired['reference_only']}/-{paired['challenger_only']} p={paired['p_value']:.3g} "
            f"(<= {paired['level']:.3g}?)")


def _steps_table(history: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="steps (paired: items only the incumbent failed / only the candidate failed)")
    for column in ("step", "incumbent", "candidates", "winner", "paired", "after", "calls", "seconds"):
        table.add_column(column, justify="left" if column in ("candidates", "winner", "paired") else "right")
    for entry in history:
        rates = entry.get("candidate_failure_rates") or []
        measured = entry.get("candidate_items") or [None] * len(rates)
        full = entry.get("dev_items") or 0
        rates = ", ".join(_candidate(rate, n, full) for rate, n in zip(rates, measured))
        calls = ", ".join(f"{role} {count}" for role, count in (entry.get("calls") or {}).items())
        table.add_row(str(entry.get("step")), _rate(entry.get("incumbent_failure_rate"), None), rates or "-",
                      str(entry.get("winner")), _paired(entry), _rate(entry.get("failure_rate"), None), calls or "-",
                      str(entry.get("seconds", "-")))
    return table
