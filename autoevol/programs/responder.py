"""``Responder``: the evol LLM answers instructions as a chat model answers a user."""

from __future__ import annotations

import dspy

from autoevol.signatures.respond import chat_reply


class Responder(dspy.Module):
    """Answers an instruction with a plain chat reply. Returns a prediction with ``answer``.

    The instruction is the only user message (no signature, no output fields), so the reply shows
    how a chat model really reacts to it: what the paper's response rules look at. Calls go
    through the configured ``dspy.LM`` (``dspy.context(lm=...)``), with its cache, usage and retries.
    """

    def forward(self, instruction: str) -> dspy.Prediction:
        return dspy.Prediction(answer=chat_reply(instruction))
