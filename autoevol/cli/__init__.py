"""The ``autoevol`` command line."""

from __future__ import annotations

import typer

from autoevol.cli.common import configure_logging, run_main
from autoevol.cli.evolve import evolve

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


def main() -> None:
    """Entry point of the ``autoevol`` console script."""
    run_main(app)
