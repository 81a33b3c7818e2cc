"""The evol LLM's answer to an (evolved) instruction: a plain chat reply, with no signature around it.

The paper's response rules read how a chat model reacts to an instruction: whether it asks back
("Sure ... ?"), asks for missing input ("please provide") or refuses. Wrapping the instruction in
a signature with an "answer fully" output field would suppress exactly those reactions, so the
answer role sends the instruction as the only user message and reads the reply as it is.
"""

from __future__ import annotations

from typing import Any

import dspy


def chat_messages(instruction: str) -> list[dict[str, str]]:
    """The request of the answer role: the instruction as the one user message."""
    return [{"role": "user", "content": instruction}]


def chat_reply(instruction: str, lm: Any = None, *, max_tokens: int | None = None) -> str:
    """Send ``instruction`` to ``lm`` (default: the LM configured in DSPy) as a chat message.

    Going through the ``dspy.LM`` keeps its caching, usage accounting, budgets and retries.
    ``max_tokens`` caps this reply (default: the LM's own limit).

    Raises:
        ValueError: no LM is given and none is configured.
    """
    lm = lm or dspy.settings.lm
    if lm is None:
        raise ValueError("no LM to answer with: configure one with dspy.configure(lm=...)")
    settings = {} if max_tokens is None else {"max_tokens": max_tokens}
    outputs = lm(messages=chat_messages(instruction), **settings)
    first = outputs[0] if outputs else ""
    if isinstance(first, dict):  # an LM asked for logprobs or tool calls returns dicts
        first = first.get("text") or ""
    return str(first or "")
