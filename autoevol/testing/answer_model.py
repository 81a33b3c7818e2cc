"""A fake server responder that plays a separate answer model (for ``evolve --answer-lm`` tests).

Plain chat requests (an answer to an instruction) get ``"Answer model: <the first words>"``, so a
test can tell its answers from the evol model's; DSPy-formatted requests get the default reply.
Serve it with ``serve_in_subprocess(responder="autoevol.testing.answer_model:answer_model_responder")``.
"""

from __future__ import annotations

from autoevol.testing.fake_openai import (
    chat_adapter_responder,
    message_text,
    parse_output_fields,
)

#: What every answer of this model starts with.
ANSWER_PREFIX = "Answer model:"


def answer_model_responder(messages: list[dict], body: dict) -> str:
    """The answer model's reply: tagged for plain chat, ChatAdapter fields otherwise."""
    if parse_output_fields(messages):
        return chat_adapter_responder(messages, body)
    user = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    return f"{ANSWER_PREFIX} a full worked answer to '{' '.join(user.split()[:8])}'."
