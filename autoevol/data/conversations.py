"""Conversation cells: ShareGPT ``from``/``value`` turns and OpenAI-style ``role``/``content`` messages.

A conversation yields one seed item per human turn, with ids ``"<row id>-<k>"`` and ``turn=k``;
an unusable conversation yields one item that carries the problem.
"""

from __future__ import annotations

from typing import Any

from autoevol.data.validation import check_text
from autoevol.records import SeedItem

_HUMAN_SPEAKERS = frozenset({"human", "user"})


def looks_like_conversation(value: Any) -> bool:
    """Whether a cell is a non-empty list of turn objects (each with ``from`` or ``role``)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, dict) and ("from" in t or "role" in t) for t in value)
    )


def conversation_items(value: Any, column: str, row_no: int, row_id: str) -> list[SeedItem]:
    """One item per human turn; one problem item when the conversation is unusable."""

    def problem(text: str) -> list[SeedItem]:
        return [SeedItem(id=f"{row_id}-0", instruction="", row=row_no, problem=text)]

    if value is None:
        return problem(f"{column} is null")
    if not isinstance(value, list):
        return problem(f"{column} is not a list of turns ({type(value).__name__})")
    for number, turn in enumerate(value, 1):
        if not isinstance(turn, dict):
            return problem(f"{column} turn {number} is not an object ({type(turn).__name__})")
    human = [turn_text(t) for t in value if is_human_turn(t)]
    if not human:
        return problem("conversation has no human turn")
    items = []
    for k, content in enumerate(human):
        text, issue = check_text(content)
        items.append(
            SeedItem(id=f"{row_id}-{k}", instruction=text, row=row_no, turn=k, problem=issue)
        )
    return items


def is_human_turn(turn: dict) -> bool:
    """Whether a conversation turn is the user's (ShareGPT ``from: human`` or ``role: user``)."""
    speaker = turn.get("from", turn.get("role"))
    return isinstance(speaker, str) and speaker.lower() in _HUMAN_SPEAKERS


def turn_text(turn: dict) -> Any:
    """The text of a turn (``value`` or ``content``; OpenAI text parts are joined by newlines)."""
    content = turn.get("value") if "from" in turn else turn.get("content")
    # OpenAI content parts: [{"type": "text", "text": "..."}, ...]
    if isinstance(content, list) and content and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "\n".join(p["text"] for p in content)
    return content
