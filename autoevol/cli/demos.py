"""How the CLI shows an evolver's demonstrations (``show``, ``compile``'s summary, ``compare``)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from autoevol.programs.demonstration import Demo

#: Characters of each demonstration field shown in a table cell.
CELL = 160


def demos_table(demos: Sequence[Demo], *, title: str = "demonstrations") -> Table:
    """One row per demonstration: the instruction, its rewrite, and where it came from."""
    table = Table(title=title)
    for column in ("#", "instruction", "evolved instruction", "from"):
        table.add_column(column, justify="right" if column == "#" else "left")
    for number, demo in enumerate(demos, start=1):
        source = demo.origin + (f", item {demo.item_id}" if demo.item_id else "") + (
            f", step {demo.step}" if demo.step else "")
        table.add_row(str(number), _cell(demo.instruction), _cell(demo.evolved_instruction), source)
    return table


def demos_line(demos: Sequence[Demo]) -> str:
    """A demonstration set in a few words: ``2 (observed 2)`` or ``none``."""
    if not demos:
        return "none"
    origins: dict[str, int] = {}
    for demo in demos:
        origins[demo.origin] = origins.get(demo.origin, 0) + 1
    return f"{len(demos)} (" + ", ".join(f"{origin} {count}" for origin, count in origins.items()) + ")"


def _cell(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= CELL else flat[: CELL - 3] + "..."
