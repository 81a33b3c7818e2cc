"""``autoevol tune`` and ``autoevol study show|best|plot``: Optuna studies of the teleprompter."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from autoevol.cli.common import REPRODUCIBLE_HELP, console, fail

study_app = typer.Typer(help="Inspect studies made by 'autoevol tune'.", no_args_is_help=True)

STORAGE_HELP = "Optuna storage URL (sqlite:///FILE.db, postgresql://..., journal:FILE.log)."


def _items(path: Path, column: Optional[str]) -> list[str]:
    from autoevol.data import iter_items

    if not path.exists():
        fail(f"{path}: no such file or folder")
    return [item.instruction for item in iter_items(path, column=column) if item.instruction.strip()]


def _worker(index: int, options: dict[str, Any]) -> dict[str, Any]:
    """Run one worker's share of trials with its own LMs (its own llama.cpp server for 'local')."""
    import optuna

    from autoevol.lm import LMSession
    from autoevol.optimizers.tuning import tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lm_options = options.pop("lms")
    with LMSession(concurrency=options["num_threads"], reproducible=lm_options["reproducible"]) as session:
        evol = session.lm(lm_options["evol_lm"], role="evol", api_base=lm_options["api_base"])
        optimizer = session.lm(lm_options["optimizer_lm"], role="optimizer",
                               api_base=lm_options["optimizer_api_base"] or lm_options["api_base"])
        tune(evol_lm=evol, optimizer_lm=optimizer, seed=options.pop("seed") + index, **options)
    return {"worker": index}


def _spawned(index: int, options: dict[str, Any], errors: Any) -> None:
    try:
        _worker(index, options)
    except Exception as error:  # reported by the parent
        errors.put(f"worker {index}: {type(error).__name__}: {error}")


def tune_command(
    data: Annotated[Path, typer.Argument(help="Seed instructions (.jsonl, .json, .csv, .parquet or dataset folder).")],
    trials: Annotated[int, typer.Option("--trials", "-n", min=1, help="Trials to run (split across workers).")],
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "sqlite:///autoevol-studies.db",
    study: Annotated[str, typer.Option("--study", help="Study name (resumed when it exists).")] = "autoevol",
    workers: Annotated[int, typer.Option(min=1, help="Worker processes running trials of the study at once.")] = 1,
    heldout: Annotated[Optional[Path], typer.Option(help="Held-out instructions for the objective (default: 20% of DATA).")] = None,
    space: Annotated[Optional[Path], typer.Option(help="Search space overrides (.yaml or .json).")] = None,
    optimizer_names: Annotated[Optional[list[str]], typer.Option("--optimizer", help="Optimizer(s) the trials compile with: auto-evol, gepa; repeat it to make the optimizer a categorical hyperparameter (default: the space's, else auto-evol).")] = None,
    column: Annotated[Optional[str], typer.Option(help="Instruction column (default: detected).")] = None,
    evol_lm: Annotated[str, typer.Option(help="Evol LM spec.")] = "local",
    optimizer_lm: Annotated[Optional[str], typer.Option(help="Optimizer LM spec (default: the evol LM).")] = None,
    api_base: Annotated[Optional[str], typer.Option(help="API base URL of the evol LM.")] = None,
    optimizer_api_base: Annotated[Optional[str], typer.Option(help="API base URL of the optimizer LM.")] = None,
    pruner: Annotated[str, typer.Option(help="median, halving or none.")] = "median",
    max_trial_calls: Annotated[Optional[int], typer.Option(min=1, help="Per-trial LM call budget (a constraint).")] = None,
    max_trial_tokens: Annotated[Optional[int], typer.Option(min=1, help="Per-trial token budget (a constraint).")] = None,
    max_study_calls: Annotated[Optional[int], typer.Option(min=1, help="Stop the study once its trials spent this many calls.")] = None,
    artifacts: Annotated[Optional[Path], typer.Option(help="Artifact folder (default: next to the storage file).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="Items evaluated in parallel inside a trial.")] = 4,
    reproducible: Annotated[bool, typer.Option(help=REPRODUCIBLE_HELP)] = False,
    heartbeat: Annotated[int, typer.Option(min=0, help="Heartbeat seconds (RDB): a dead worker's trial fails after 2x this; 0 = off.")] = 30,
    seed: Annotated[int, typer.Option(help="Sampler and teleprompter seed.")] = 0,
    dry_run: Annotated[bool, typer.Option(help="Print the planned LM calls and estimated tokens and cost (trials at the paper's settings, clipped to the space, with max_demos at the space's upper end); call nothing.")] = False,
) -> None:
    """Tune AutoEvolInstruct's hyperparameters on DATA; every trial's evolver is kept as an artifact."""
    from autoevol.optimizers.tuning.search_space import SearchSpace, SearchSpaceError
    from autoevol.optimizers.tuning.storage import StudyError, is_journal
    from autoevol.optimizers.tuning.study import open_study

    if pruner not in ("median", "halving", "none"):
        fail(f"--pruner must be median, halving or none, not '{pruner}'")
    try:
        search_space = SearchSpace.from_file(space) if space else SearchSpace()
        if optimizer_names:
            search_space = search_space.with_optimizers(optimizer_names)
    except SearchSpaceError as error:
        fail(str(error))
    items = _items(data, column)
    held = _items(heldout, column) if heldout else None
    if dry_run:
        _dry_run(items, held, search_space, trials=trials, evol_lm=evol_lm, optimizer_lm=optimizer_lm or evol_lm)
        return
    beat = heartbeat if heartbeat and not is_journal(storage) and not storage.startswith("sqlite:///:memory") else None
    try:  # create (or check) the study once, before any worker starts
        open_study(study, storage=storage, search_space=search_space, artifact_dir=artifacts, seed=seed, pruner=pruner)
    except (StudyError, SearchSpaceError) as error:
        fail(str(error))
    shares = [trials // workers + (1 if i < trials % workers else 0) for i in range(workers)]
    options = {"trainset": items, "heldout": held, "storage": storage, "study_name": study,
               "search_space": search_space, "pruner": pruner, "max_trial_calls": max_trial_calls,
               "max_trial_tokens": max_trial_tokens, "max_study_calls": max_study_calls,
               "artifact_dir": artifacts, "num_threads": threads, "seed": seed,
               "heartbeat_interval": beat, "grace_period": 2 * beat if beat else None,
               "lms": {"evol_lm": evol_lm, "optimizer_lm": optimizer_lm or evol_lm, "api_base": api_base,
                       "optimizer_api_base": optimizer_api_base, "reproducible": reproducible}}
    started = time.perf_counter()
    try:
        if workers == 1:
            _worker(0, {**options, "n_trials": shares[0]})
        else:
            context = multiprocessing.get_context("spawn")
            errors = context.Queue()
            processes = [context.Process(target=_spawned, args=(i, {**options, "n_trials": n}, errors))
                         for i, n in enumerate(shares) if n]
            for process in processes:
                process.start()
            for process in processes:
                process.join()
            problems = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
            if problems:
                fail("; ".join(problems))
    except (StudyError, SearchSpaceError) as error:
        fail(str(error))
    console.print(f"{trials} trial(s) in {time.perf_counter() - started:.1f} s with {workers} worker(s)")
    _show(study, storage, limit=None)


def _load(study: str, storage: str) -> Any:
    from autoevol.optimizers.tuning import StudyError, load_study

    try:
        return load_study(study, storage)
    except StudyError as error:
        fail(str(error))


def _show(study_name: str, storage: str, limit: Optional[int]) -> None:
    from autoevol.optimizers.tuning import trial_rows

    study = _load(study_name, storage)
    rows = trial_rows(study)
    names = sorted({k for r in rows for k in r["params"]})
    table = Table(title=f"study {study_name}: {len(rows)} trial(s)")
    for column in ["#", "state", "failure rate", *names, "calls", "tokens", "seconds"]:
        table.add_column(column, justify="left" if column == "state" else "right")
    for r in rows[-limit:] if limit else rows:
        value = "-" if r["value"] is None else f"{r['value']:.3f}" + ("" if r["feasible"] else " (over budget)")
        params = [f"{r['params'][n]:.2f}" if isinstance(r["params"].get(n), float) else str(r["params"].get(n, "-"))
                  for n in names]
        table.add_row(str(r["number"]), r["state"], value, *params, str(r["calls"] if r["calls"] is not None else "-"),
                      str(r["tokens"] if r["tokens"] is not None else "-"),
                      f"{r['seconds']:.2f}" if r["seconds"] is not None else "-")
    Console(width=200).print(table)


@study_app.command("show")
def show(
    study: Annotated[str, typer.Option("--study", help="Study name.")] = "autoevol",
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "sqlite:///autoevol-studies.db",
    last: Annotated[Optional[int], typer.Option(min=1, help="Only the last N trials.")] = None,
) -> None:
    """The trials table: hyperparameters, held-out failure rate, LM calls, state."""
    _show(study, storage, last)


@study_app.command("best")
def best(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the best trial's evolver (.json).")],
    study: Annotated[str, typer.Option("--study", help="Study name.")] = "autoevol",
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "sqlite:///autoevol-studies.db",
    trial: Annotated[Optional[int], typer.Option(help="This trial instead of the best one.")] = None,
    artifacts: Annotated[Optional[Path], typer.Option(help="Artifact folder (default: the one the study records).")] = None,
) -> None:
    """Extract the best trial's compiled evolver (use it with 'autoevol evolve --program')."""
    from autoevol.optimizers.tuning import StudyError, best_evolver, best_trial

    loaded = _load(study, storage)
    try:
        number = trial if trial is not None else best_trial(loaded).number
        evolver = best_evolver(loaded, out, artifact_dir=artifacts, trial_number=number)
    except StudyError as error:
        fail(str(error))
    rate = evolver.metadata.get("study", {}).get("heldout_failure_rate")
    console.print(f"trial {number} (held-out failure rate {rate}) -> {out}")


@study_app.command("plot")
def plot(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG plots.")],
    study: Annotated[str, typer.Option("--study", help="Study name.")] = "autoevol",
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "sqlite:///autoevol-studies.db",
) -> None:
    """Optimization history, parameter importances and slice plots as PNG files."""
    from autoevol.optimizers.tuning import StudyError, plot_study

    try:
        written = plot_study(_load(study, storage), out)
    except StudyError as error:
        fail(str(error))
    for path in written:
        console.print(str(path))


def _dry_run(items: list[str], held: list[str] | None, space: Any, *, trials: int, evol_lm: str, optimizer_lm: str) -> None:
    """Print the plan of ``trials`` compiles at the paper's settings (clipped to the space).

    ``max_demos`` is taken at the space's upper end instead (its fixed value, if fixed): the
    paper's 0 would plan none of the calls choosing demonstrations costs. A trial runs the
    teleprompter's defaults for the settings outside the space (trajectory answers, proposal
    attempts, demonstration candidates) and no judge, and so does the plan.
    """
    from autoevol.estimate import estimate_compile, format_estimate
    from autoevol.lm import parse_spec
    from autoevol.optimizers.tuning.search_space import PAPER_DEFAULTS
    from autoevol.programs.evolver import Evolver

    typical = {**PAPER_DEFAULTS, **space.enqueueable(PAPER_DEFAULTS),
               **{name: param.fixed for name, param in space.params.items() if param.is_fixed},
               "max_demos": int(space.high("max_demos")) if "max_demos" in space.params else 0}
    heldout = len(held) if held is not None else max(1, len(items) // 5)
    estimate = estimate_compile(
        list(items[:50]), steps=typical["max_steps"],
        candidates=typical["num_candidates"], batch_size=typical["batch_size"], dev_size=typical["dev_size"],
        rounds=typical["evolution_rounds"], evolver=Evolver(), model=parse_spec(evol_lm).display_name,
        optimizer_model=parse_spec(optimizer_lm).display_name, trials=trials, heldout=heldout,
        max_demos=typical["max_demos"])
    estimate.notes.insert(1, f"max_demos at the upper end of the search space ({typical['max_demos']}); "
                             "the other hyperparameters at the paper's settings, clipped to the space")
    typer.echo(format_estimate(estimate))
