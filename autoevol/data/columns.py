"""Which columns of an input hold the instruction and the id.

The instruction column is named by the caller or detected among the usual names
(:data:`INSTRUCTION_COLUMNS`, then the conversation columns :data:`CONVERSATION_COLUMNS`); the id
column is named by the caller, or ``id`` when present, else ids are row indexes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from autoevol.data.validation import DataError, name_list

#: Plain-text instruction columns, in order of preference.
INSTRUCTION_COLUMNS: tuple[str, ...] = ("instruction", "prompt", "question", "query")
#: Conversation columns (ShareGPT ``from``/``value`` turns, OpenAI ``role``/``content`` messages).
CONVERSATION_COLUMNS: tuple[str, ...] = ("conversations", "messages")

_ID_COLUMN = "id"


def detect_column(columns: Sequence[str]) -> str:
    """Pick the instruction column among ``columns``.

    The first present of ``instruction``, ``prompt``, ``question``, ``query``, then the
    conversation columns ``conversations`` and ``messages``; an exact name wins over a
    case-insensitive match.

    Raises:
        DataError: (without a file name) listing the columns when none matches.
    """
    found = _find_column(columns, INSTRUCTION_COLUMNS + CONVERSATION_COLUMNS)
    if found is None:
        wanted = ", ".join(INSTRUCTION_COLUMNS + CONVERSATION_COLUMNS)
        raise DataError(
            None,
            f"no instruction column found (looked for {wanted}); columns are: {name_list(columns)}; "
            "name the column explicitly",
        )
    return found


def _find_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    present = list(columns)
    for name in candidates:
        if name in present:
            return name
    lowered = {c.lower(): c for c in reversed(present) if isinstance(c, str)}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    return None


def resolve_columns(
    path: Path,
    columns: Sequence[str],
    column: str | None,
    id_column: str | None,
    row: int | None = None,
) -> tuple[str, str | None]:
    """The instruction column and the id column (or None for index ids) of an input.

    ``row`` is the row whose keys are ``columns`` in formats without a schema (JSON).
    """
    if column is None:
        try:
            column = detect_column(columns)
        except DataError as exc:
            raise DataError(path, exc.problem, row) from None
    elif column not in columns:
        raise DataError(path, f"column '{column}' not found; columns are: {name_list(columns)}", row)
    if id_column is not None:
        if id_column not in columns:
            raise DataError(
                path, f"id column '{id_column}' not found; columns are: {name_list(columns)}", row
            )
    elif _ID_COLUMN in columns and column != _ID_COLUMN:
        id_column = _ID_COLUMN
    return column, id_column
