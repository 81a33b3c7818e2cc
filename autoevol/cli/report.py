"""``autoevol report``: one self-contained HTML report of a compile run or an evolve output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autoevol.cli.common import check_output, console, fail
from autoevol.lm import LMSession


def report_command(
    source: Annotated[Path, typer.Argument(help="A compile run directory (with run.json) or an evolve output.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path("report.html"),
    quality: Annotated[bool, typer.Option(help="Measure complexity and diversity (WordLlama embeddings, offline).")] = True,
    tagger_lm: Annotated[Optional[str], typer.Option(help="Also tag instructions with InsTag using this LM (one call per instruction).")] = None,
    api_base: Annotated[Optional[str], typer.Option(help="API base URL of the tagger LM.")] = None,
    title: Annotated[Optional[str], typer.Option(help="Page title.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report.")] = False,
) -> None:
    """Write an HTML report (plots embedded, no network needed to view it) of SOURCE."""
    from autoevol.report import write_report

    if not source.exists():
        fail(f"{source}: no such run directory or output")
    if out.suffix.lower() not in (".html", ".htm"):
        fail(f"{out}: the report is an .html file")
    check_output(out, overwrite)
    if tagger_lm:
        with LMSession(concurrency=4) as session:
            lm = session.lm(tagger_lm, role="tagger", api_base=api_base, max_tokens=256)
            write_report(source, out, quality=quality, tagger_lm=lm, title=title)
    else:
        write_report(source, out, quality=quality, title=title)
    console.print(f"report written to {out}", highlight=False)
