"""Text outputs under a grammar: DSPy's field-marker format, enforced while decoding on llama.cpp.

Constrained JSON is a poor fit for free text. A small model that writes a JSON string closes it
where it would have started a new line: asked to evolve "Write a conversation based on the given
facts.\\n\\nFacts: ...", Qwen2.5-Coder-1.5B returns the first line alone in JSON mode, and the
whole instruction, facts included, in DSPy's chat format. So a signature whose outputs are all
text is sent to llama.cpp's server with ChatAdapter's prompt and a GBNF ``grammar`` that
allows exactly that format: each output field's ``[[ ## name ## ]]`` marker in order, free text
(newlines included) under each, and the closing ``[[ ## completed ## ]]`` marker. The model still
cannot skip, reorder or invent fields. (The embedded SmolLM2-135M keeps JSON: see
:func:`autoevol.lm.spec.writes_marked_text`.)

Under a token limit, the fields before the last (an evolution's working notes) share at most half
of it (:func:`leading_field_chars`): the grammar then moves on to the last field, so the answer the
call exists for always has room. Without that cap, Qwen2.5-Coder-1.5B's notes on HumanEval stubs
filled a 450-token limit in 20 of 27 evolutions, and the JSON fallback that took over often
returned a bare signature or the function's body instead of a rewrite.
"""

from __future__ import annotations

import logging
from typing import Any

from dspy.adapters.chat_adapter import ChatAdapter
from dspy.clients.base_lm import BaseLM
from dspy.signatures.signature import Signature
from dspy.utils.exceptions import AdapterParseError

logger = logging.getLogger(__name__)

#: Free text under a marker: anything but the start of a new marker (``[[ #``), never empty and
#: not opening with a newline. ``[x``, ``[[0]]`` and ``[[x`` stay possible.
TEXT_RULES = """\
text ::= lead piece*
lead ::= [^\\[\\n] | "[" [^\\[]
piece ::= [^\\[] | "[" [^\\[] | "[[" [^ \\[] | "[[ " [^#]
"""


def has_text_outputs_only(signature: type[Signature]) -> bool:
    """Whether every output field of ``signature`` is a plain string."""
    return all(field.annotation is str for field in signature.output_fields.values())


def _literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


#: Characters per token assumed for the cap, below what Qwen2.5's tokenizer averages on working
#: notes (4.2, measured on 99 answers; code runs lower), so the cap rarely takes more tokens than meant.
CHARS_PER_TOKEN = 3
#: The share of a call's token limit the fields before the last may fill together.
LEADING_SHARE = 0.5


def call_max_tokens(lm: BaseLM, lm_kwargs: dict[str, Any]) -> int | None:
    """A call's output token limit: its own, else its LM's (``None``: no limit)."""
    return lm_kwargs.get("max_tokens") or getattr(lm, "kwargs", {}).get("max_tokens")


def leading_field_chars(signature: type[Signature], max_tokens: int | None) -> int | None:
    """At most how many characters each output field before the last may hold under ``max_tokens``
    (``None``: no limit, or a signature of one output field)."""
    leading = len(signature.output_fields) - 1
    if not max_tokens or leading < 1:
        return None
    return max(1, int(max_tokens * LEADING_SHARE * CHARS_PER_TOKEN) // leading)


def marker_grammar(signature: type[Signature], leading_chars: int | None = None) -> str:
    """The GBNF grammar of ChatAdapter's answer to ``signature``: every output field, in order, the
    fields before the last at most about ``leading_chars`` characters each (``None``: unbounded)."""
    names = list(signature.output_fields)
    if not names:
        raise ValueError(f"{signature.__name__} has no output fields")
    parts = [_literal(("" if index == 0 else "\n\n") + f"[[ ## {name} ## ]]\n")
             + (" capped" if leading_chars is not None and index < len(names) - 1 else " text")
             for index, name in enumerate(names)]
    parts.append(_literal("\n\n[[ ## completed ## ]]"))
    capped = f"capped ::= lead piece{{0,{leading_chars - 1}}}\n" if leading_chars is not None and len(names) > 1 else ""
    return "root ::= " + " ".join(parts) + "\n" + capped + TEXT_RULES


class MarkedTextAdapter(ChatAdapter):
    """DSPy's ``ChatAdapter`` with its field markers enforced by a llama.cpp grammar.

    The prompt and the parser are ChatAdapter's; the request carries a GBNF ``grammar`` (in the
    request body, where llama.cpp's server reads it) built by :func:`marker_grammar`. The
    call keeps the caller's ``max_tokens``: free text has no closing quote to wait for, and a
    model that rambles stops there instead of at the JSON floor (a 2,047-token ramble took 151 s
    on two cores). The fields before the last are capped (:func:`leading_field_chars`), so a limit
    cuts off the last field, never the ones before it. An answer that does not parse is asked again
    through ``fallback``, the JSON-constrained adapter, instead of DSPy's unconstrained JSON retry.

    Args:
        fallback: the adapter that answers when a marked answer cannot be read.
    """

    def __init__(self, fallback: ChatAdapter, **kwargs: Any) -> None:
        super().__init__(use_json_adapter_fallback=False, **kwargs)
        self.fallback = fallback

    def _constrained(self, lm: BaseLM, lm_kwargs: dict[str, Any], signature: type[Signature]) -> dict[str, Any]:
        lm_kwargs = dict(lm_kwargs)
        extra_body = dict(lm_kwargs.get("extra_body") or {})
        leading_chars = leading_field_chars(signature, call_max_tokens(lm, lm_kwargs))
        extra_body["grammar"] = marker_grammar(signature, leading_chars)
        lm_kwargs["extra_body"] = extra_body
        return lm_kwargs

    def __call__(self, lm: BaseLM, lm_kwargs: dict[str, Any], signature: type[Signature],
                 demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            return super().__call__(lm, self._constrained(lm, lm_kwargs, signature), signature, demos, inputs)
        except AdapterParseError as error:
            logger.info("marked answer to %s unreadable (%s); asking for constrained JSON",
                        signature.__name__, unreadable_reason(error, signature))
            return self.fallback(lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm: BaseLM, lm_kwargs: dict[str, Any], signature: type[Signature],
                    demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            return await super().acall(lm, self._constrained(lm, lm_kwargs, signature), signature, demos, inputs)
        except AdapterParseError as error:
            logger.info("marked answer to %s unreadable (%s); asking for constrained JSON",
                        signature.__name__, unreadable_reason(error, signature))
            return await self.fallback.acall(lm, lm_kwargs, signature, demos, inputs)


def unreadable_reason(error: AdapterParseError, signature: type[Signature]) -> str:
    """Which output fields a marked answer lacks and how long it was, for the fallback's log line."""
    answer = error.lm_response if isinstance(error.lm_response, str) else str(error.lm_response or "")
    parsed = error.parsed_result if isinstance(error.parsed_result, dict) else {}
    missing = [name for name in signature.output_fields if name not in parsed]
    lacking = f"no {', '.join(missing)}" if missing else "its fields did not parse"
    return f"{lacking}; {len(answer)} characters ending {answer[-60:]!r}"
