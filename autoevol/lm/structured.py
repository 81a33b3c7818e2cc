"""Constrained outputs: an LM that supports JSON-schema decoding answers signatures in their schema.

A signature call (the Evolver's rewrite, the information-gain judge, the trajectory analysis, the
method rewrite) is sent with a ``response_format`` built from the signature's output fields, so a
server that constrains decoding (llama.cpp, vLLM, SGLang...) cannot emit anything but a JSON object
with exactly those fields, in order, of the declared types (strings, ``Literal`` choices, lists of
pydantic models). A plain ``lm(messages=[...])`` call never gets a ``response_format``.

Two dialects of the OpenAI API exist for this:

- ``json_object``: ``{"type": "json_object", "schema": {...}}``, what llama.cpp's server (the
  embedded default) reads;
- ``json_schema``: ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``, the
  OpenAI Structured Outputs form that vLLM and most OpenAI-compatible servers read.

An LM opts in by carrying ``structured_output = "<dialect>"`` (``LMSession`` sets it for local
models and for ``structured_output=...``). :class:`RoutingAdapter` is the DSPy adapter that reads it:
constrained JSON for such LMs, DSPy's ``ChatAdapter`` (unchanged) for every other LM. A local LM
with ``marked_text`` answers signatures whose outputs are all text in ChatAdapter's format under a
grammar instead (:mod:`autoevol.lm.grammar`), because constrained JSON makes small models drop
every line after the first.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any, Literal

import dspy
from dspy.adapters.chat_adapter import ChatAdapter
from dspy.adapters.json_adapter import JSONAdapter, _get_structured_outputs_response_format
from dspy.clients.base_lm import BaseLM
from dspy.signatures.signature import Signature

from autoevol.lm.grammar import MarkedTextAdapter, call_max_tokens, has_text_outputs_only, leading_field_chars

logger = logging.getLogger(__name__)

Dialect = Literal["json_object", "json_schema"]
#: The dialects a spec or the CLI can name.
DIALECTS: tuple[str, ...] = ("json_object", "json_schema")
#: The dialect of llama.cpp's server (the embedded default and ``local:FILE.gguf``).
LOCAL_DIALECT: Dialect = "json_object"
#: The dialect of OpenAI-compatible servers that support JSON-schema outputs (vLLM, SGLang...).
OPENAI_DIALECT: Dialect = "json_schema"


class StructuredOutputError(ValueError):
    """A signature's output fields cannot be expressed as a closed JSON schema."""


def output_schema(signature: type[Signature]) -> dict[str, Any]:
    """The JSON schema of ``signature``'s output fields: one required property per field, in order.

    Built with DSPy's own Structured Outputs helper (every object closed, every property required).
    Raises ``StructuredOutputError`` for open-ended fields such as ``dict[str, Any]``.
    """
    try:
        model = _get_structured_outputs_response_format(signature, use_native_function_calling=False)
    except ValueError as error:
        raise StructuredOutputError(f"{signature.__name__}: {error}") from error
    return copy.deepcopy(model.model_json_schema())


def response_format(signature: type[Signature], dialect: Dialect) -> dict[str, Any]:
    """The ``response_format`` request field that constrains an answer to ``signature``'s outputs."""
    schema = output_schema(signature)
    if dialect == "json_object":
        return {"type": "json_object", "schema": schema}
    if dialect == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": signature.__name__ or "outputs", "schema": schema, "strict": True}}
    raise ValueError(f"unknown structured-output dialect '{dialect}' (known: {', '.join(DIALECTS)})")


def structured_dialect(lm: Any) -> Dialect | None:
    """The structured-output dialect ``lm`` declares, or ``None`` for an ordinary LM."""
    dialect = getattr(lm, "structured_output", None)
    return dialect if dialect in DIALECTS else None


def answers_in_markers(lm: Any, signature: type[Signature]) -> bool:
    """Whether ``lm`` answers ``signature`` in field markers under a grammar (a local model with
    ``marked_text``, a signature of text outputs only)."""
    return (structured_dialect(lm) == LOCAL_DIALECT and bool(getattr(lm, "marked_text", False))
            and has_text_outputs_only(signature))


def leading_field_cap(lm: Any, signature: type[Signature]) -> int | None:
    """The characters each of ``signature``'s output fields before the last may hold when ``lm``
    answers it (``None``: no cap; see :func:`~autoevol.lm.grammar.leading_field_chars`). It shapes
    what the LM writes, so records of its answers name it."""
    if not answers_in_markers(lm, signature):
        return None
    return leading_field_chars(signature, call_max_tokens(lm, {}))


def raise_to_output_floor(lm: BaseLM, lm_kwargs: dict[str, Any]) -> None:
    """Give a constrained call at least the LM's ``structured_max_tokens`` output tokens."""
    floor = getattr(lm, "structured_max_tokens", None)
    if floor:
        current = call_max_tokens(lm, lm_kwargs) or 0
        lm_kwargs["max_tokens"] = max(int(current), int(floor))


class StructuredAdapter(JSONAdapter):
    """DSPy's ``JSONAdapter``, always sending the output fields' schema in one dialect.

    The prompt is DSPy's JSON prompt; the request carries ``response_format`` in ``dialect``
    whatever LiteLLM believes the model supports (the caller vouches for the server). When the LM
    has ``structured_max_tokens``, a call gets at least that many output tokens, so that the
    closing fields of a constrained answer fit.

    Args:
        dialect: ``json_object`` (llama.cpp) or ``json_schema`` (OpenAI, vLLM).
    """

    def __init__(self, dialect: Dialect = OPENAI_DIALECT, **kwargs: Any) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown structured-output dialect '{dialect}' (known: {', '.join(DIALECTS)})")
        super().__init__(**kwargs)
        self.dialect = dialect

    def _prepare_response_format(self, lm: BaseLM, lm_kwargs: dict[str, Any],
                                 signature: type[Signature]) -> None:
        lm_kwargs["response_format"] = response_format(signature, self.dialect)
        raise_to_output_floor(lm, lm_kwargs)

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Read the constrained object as JSON first (servers may leave raw newlines in strings).

        ``json_repair``, which ``JSONAdapter`` reads with, splits such a string at the first quote
        it finds after a newline; the standard parser in non-strict mode reads it whole. Anything
        that is not one JSON object goes to ``JSONAdapter``'s lenient parse as before.
        """
        try:
            fields = json.loads(completion, strict=False)
        except ValueError:
            fields = None
        if isinstance(fields, dict):
            completion = json.dumps(fields, ensure_ascii=False)
        return super().parse(signature, completion)


class RoutingAdapter(ChatAdapter):
    """The adapter of every autoevol job: constrained JSON where the LM supports it, else chat.

    An LM with a ``structured_output`` dialect (see :func:`structured_dialect`) is called through
    :class:`StructuredAdapter` (or, for a local LM with ``marked_text`` and a signature of text
    outputs only, :class:`~autoevol.lm.grammar.MarkedTextAdapter`); a signature whose outputs have
    no closed schema, and every other LM, go through ``ChatAdapter`` exactly as DSPy would call them.
    """

    def _route(self, lm: BaseLM, signature: type[Signature]) -> ChatAdapter | None:
        dialect = structured_dialect(lm)
        if dialect is None:
            return None
        try:
            output_schema(signature)
        except StructuredOutputError as error:
            logger.info("no constrained output for %s: %s", signature.__name__, error)
            return None
        structured = StructuredAdapter(dialect, callbacks=self.callbacks,
                                       use_native_function_calling=self.use_native_function_calling)
        if answers_in_markers(lm, signature):
            return MarkedTextAdapter(structured, callbacks=self.callbacks)
        return structured

    def __call__(self, lm: BaseLM, lm_kwargs: dict[str, Any], signature: type[Signature],
                 demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        structured = self._route(lm, signature)
        if structured is not None:
            return structured(lm, lm_kwargs, signature, demos, inputs)
        return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm: BaseLM, lm_kwargs: dict[str, Any], signature: type[Signature],
                    demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        structured = self._route(lm, signature)
        if structured is not None:
            return await structured.acall(lm, lm_kwargs, signature, demos, inputs)
        return await super().acall(lm, lm_kwargs, signature, demos, inputs)


def install_routing_adapter() -> bool:
    """Make :class:`RoutingAdapter` DSPy's default adapter in this process, once.

    It behaves as DSPy's default ``ChatAdapter`` for every LM without a ``structured_output``
    dialect, so installing it changes nothing for other LMs. An adapter the user configured is
    kept (and ``False`` returned), as is DSPy's rule that only the thread that first configured
    DSPy may configure it again; ``dspy.context(adapter=RoutingAdapter())`` works in any thread.
    """
    current = dspy.settings.adapter
    if isinstance(current, RoutingAdapter):
        return True
    if current is not None:
        logger.warning("DSPy's adapter is set to %s; structured outputs need autoevol's RoutingAdapter "
                       "(dspy.configure(adapter=autoevol.lm.RoutingAdapter()))", type(current).__name__)
        return False
    try:
        dspy.configure(adapter=RoutingAdapter())
    except RuntimeError as error:  # another thread owns DSPy's settings
        logger.warning("could not install the structured-output adapter: %s", error)
        return False
    return True
