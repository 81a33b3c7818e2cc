"""The ``autoevol`` command line."""

from __future__ import annotations

import typer

from autoevol.cli.common import configure_logging, run_main
from autoevol.cli.compare import compare_command
from autoevol.cli.compile import compile_command, show_command
from autoevol.cli.evolve import evolve
from autoevol.cli.export import export_command
from autoevol.cli.report import report_command
from autoevol.cli.tune import study_app, tune_command

app = typer.Typer(
    name="autoevol",
    help="Make instruction datasets harder and more diverse with Auto Evol-Instruct.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)


@app.callback()
def _options(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens.")) -> None:
    configure_logging(verbose)


app.command()(evolve)
app.command("tune")(tune_command)
app.add_typer(study_app, name="study")
app.command("compile")(compile_command)
app.command("show")(show_command)
app.command("report")(report_command)
app.command("compare")(compare_command)
app.command("export")(export_command)


def main() -> None:
    """Entry point of the ``autoevol`` console script."""
    run_main(app)
