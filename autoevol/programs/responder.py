"""``Responder``: the evol LLM answers instructions as a chat model answers a user."""

from __future__ import annotations

import dspy

from autoevol.signatures.respond import chat_reply


class Responder(dspy.Module):
    """Answers an instruction with a plain chat reply. Returns a prediction with ``answer``.

    The instruction is the only user message (no signature, no output fields), so the reply shows
    how a chat model really reacts to it: what the paper's response rules look at. Calls go
    through the configured ``dspy.LM`` (``dspy.context(lm=...)``), with its cache, usage and retries.

    Args:
        max_tokens: caps each answer (default: the LM's limit). The response rules read how an
            answer opens and whether it is a short reply, so a cap of a few hundred tokens keeps
            failure detection intact while saving most of the decoding on slow models; leave it
            unset where the answers themselves are kept (a dataset to fine-tune on).
    """

    def __init__(self, max_tokens: int | None = None) -> None:
        super().__init__()
        self.max_tokens = max_tokens

    def forward(self, instruction: str) -> dspy.Prediction:
        return dspy.Prediction(answer=chat_reply(instruction, max_tokens=self.max_tokens))
