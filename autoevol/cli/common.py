"""What every command shares: error reporting, LM sessions from options, summary tables."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from autoevol.lm import LMSession, ManagedLM, RoleUsage
from autoevol.lm.policy import CallPolicy

console = Console(stderr=True)
DEBUG_ENV = "AUTOEVOL_DEBUG"


class CLIError(Exception):
    """A problem the user can fix; printed as one line, exit code ``code`` (default 2)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 2) -> None:
    raise CLIError(message, code)


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "LiteLLM", "dspy"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.ERROR)


#: ``--reproducible``'s help, the same for every command that measures.
REPRODUCIBLE_HELP = ("Serve local models with one slot and no prompt cache, so that a measurement repeated on this "
                     "machine gets the same replies and verdicts (local calls then run one at a time; remote LMs are "
                     "not affected). See docs/local.md.")

#: Output tokens of a judge call: a verdict word and a one-sentence reason.
JUDGE_MAX_TOKENS = 160


def session_judge(session: LMSession, spec: str | None, api_base: str | None, *, default_spec: str | None = None,
                  default_base: str | None = None) -> ManagedLM | None:
    """The judge LM of ``--judge-lm`` (probed), or ``None`` for ``none`` or when neither it nor a
    default model is given; a spec equal to the default model shares the default's API base."""
    if spec is not None and spec.strip().casefold() == "none":
        return None
    if spec is None or spec == default_spec:
        if default_spec is None:
            return None
        spec, api_base = default_spec, api_base or default_base
    judge = session.lm(spec, role="judge", api_base=api_base, max_tokens=JUDGE_MAX_TOKENS)
    probe(judge, spec, "judge")
    return judge


def probe(lm: ManagedLM, spec: str, role: str, policy: CallPolicy | None = None) -> None:
    """Fail fast, naming the spec, when an LM cannot be reached or does not exist.

    With a ``policy``, transient faults are retried as a real call would retry them (at most 60 s
    per attempt); without one, the first fault is final.
    """
    check = lm.copy(max_tokens=4)
    check.policy = CallPolicy(timeout=60.0, max_retries=0) if policy is None else CallPolicy(
        timeout=min(policy.timeout, 60.0), max_retries=policy.max_retries,
        backoff_base=policy.backoff_base, backoff_cap=policy.backoff_cap)
    check.budget = None
    check.call_cache = None
    try:
        check("Reply with OK.")
    except Exception as error:  # any failure here means the job cannot start
        detail = " ".join(str(error).split())[:300]
        fail(f"{role} LM '{spec}' is not usable: {type(error).__name__}: {detail}")


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console, transient=False)


def usage_table(usages: Iterable[RoleUsage]) -> Table:
    table = Table(title="LM usage")
    for column in ("role", "model", "calls", "cache hits", "failed", "retries", "tokens in", "tokens out", "cost"):
        table.add_column(column, justify="right" if column not in ("role", "model") else "left")
    for usage in usages:
        table.add_row(usage.role, usage.model, str(usage.calls), str(usage.cache_hits), str(usage.failed_calls),
                      str(usage.retries), str(usage.input_tokens), str(usage.output_tokens),
                      f"${usage.cost:.4f}" if usage.cost else "-")
    return table


def merged_usage(session: LMSession) -> list[RoleUsage]:
    """Usage per role (LMs of the same role are added up)."""
    by_role: dict[str, RoleUsage] = {}
    for lm in session.lms:
        usage = lm.usage
        usage.model = getattr(lm, "display_name", usage.model)
        by_role[usage.role] = by_role[usage.role].plus(usage) if usage.role in by_role else usage
    return list(by_role.values())


def check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        fail(f"{out}: the output exists already; use --overwrite to replace it")


def run_main(app: typer.Typer) -> None:
    """Run the app; known errors become one line on stderr and exit code 2, never a traceback."""
    from autoevol.data import DataError
    from autoevol.lm import LMSpecError, LocalModelError
    from autoevol.programs.evolver import EvolverFileError

    known = (CLIError, DataError, LMSpecError, LocalModelError, EvolverFileError)
    try:
        app(standalone_mode=True)
    except known as error:
        console.print(f"[red]error:[/red] {escape(str(error))}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(getattr(error, "code", 2))
    except Exception as error:
        if os.environ.get(DEBUG_ENV):
            raise
        console.print(f"[red]error:[/red] unexpected {type(error).__name__}: {' '.join(str(error).split())[:500]} "
                      f"(set {DEBUG_ENV}=1 for a traceback)", highlight=False, soft_wrap=True)
        sys.exit(1)
