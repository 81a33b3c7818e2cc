"""What the fake server answers: a responder maps a request's messages to the assistant text.

The default, :func:`chat_adapter_responder`, answers in DSPy's ChatAdapter format so DSPy programs
parse its replies; the parsing helpers here let custom responders read such requests too.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable

from autoevol.testing.fake_openai.faults import request_key

Responder = Callable[[list[dict], dict], str]

_FIELD_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_RESPOND = "Respond with the corresponding output fields"
# One requested field: `[[ ## name ## ]]` with an optional " (must be formatted as a valid Python T)".
_WANTED = re.compile(r"`\[\[ ## (\w+) ## \]\]`(?: \(must be formatted as a valid Python (.+?)\))?"
                     r"(?=, then |, and then ending|$)")


def message_text(message: dict) -> str:
    """The text of a chat message whose content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def _output_field_types(messages: list[dict]) -> dict[str, str | None]:
    user = _last_user_text(messages)
    start = user.rfind(_RESPOND)
    if start < 0:
        return {}
    return {name: kind for name, kind in _WANTED.findall(user[start:]) if name != "completed"}


def parse_output_fields(messages: list[dict]) -> list[str]:
    """Output field names DSPy's ChatAdapter asks for in the last user message, in order."""
    return list(_output_field_types(messages))


def parse_input_fields(messages: list[dict]) -> dict[str, str]:
    """Input field values (``[[ ## name ## ]]`` sections) of the last user message."""
    user = _last_user_text(messages)
    start = user.rfind(_RESPOND)
    parts = _FIELD_HEADER.split(user[:start] if start >= 0 else user)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def _typed_value(kind: str, text: str) -> str:
    """A value DSPy parses for an annotation named ``kind`` (e.g. ``int``, ``Literal['a', 'b']``)."""
    if kind.startswith("Literal["):
        return kind[len("Literal["):-1].split(", ")[0].strip("'\"")
    base = kind.split("[", 1)[0]
    simple = {"int": "1", "float": "0.5", "bool": "True", "dict": "{}"}
    if base in simple:
        return simple[base]
    if base in ("list", "tuple", "set"):
        return json.dumps([text])
    return text


def chat_adapter_responder(messages: list[dict], body: dict) -> str:
    """Deterministic answer in DSPy's ChatAdapter format to a ChatAdapter-formatted request.

    Each output field named in the last user message gets text derived from a hash of the input:
    ``evolved_instruction`` becomes "<instruction> Also explain each step and give two examples.";
    other fields a short sentence (or a parseable value for typed fields). Requests not in DSPy's
    format get a short deterministic echo.
    """
    digest = request_key(messages)[:8]
    wanted = _output_field_types(messages)
    if not wanted:
        words = _last_user_text(messages).split()
        return f"Echo {digest}: {' '.join(words[:12])}"
    inputs = parse_input_fields(messages)
    instruction = inputs.get("instruction", next(iter(inputs.values()), ""))
    sections = []
    for name, kind in wanted.items():
        if name == "evolved_instruction":
            text = f"{instruction} Also explain each step and give two examples."
        else:
            text = f"Deterministic {name.replace('_', ' ')} {digest}."
        sections.append(f"[[ ## {name} ## ]]\n{_typed_value(kind, text) if kind else text}")
    return "\n\n".join(sections) + "\n\n[[ ## completed ## ]]"


class ErrorReply(Exception):
    """Raise from a responder to answer that request with an HTTP error (e.g. 401 for a bad key)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def load_responder(spec: str) -> Responder:
    """Import a responder given as ``"module:function"``."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"responder must look like 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module), name)
