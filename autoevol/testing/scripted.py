"""A deterministic scripted LM for tests: a DSPy engine whose answers depend on the request.

Example:
    >>> def script(request: ScriptedRequest) -> dict[str, str]:
    ...     return {"answer": request.inputs["instruction"].upper()}
    >>> lm = scripted_lm(script)
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dspy.lm15 import Message, Response, TextPart, Usage

from autoevol.lm.managed import ManagedLM

_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]")
_WANTED = re.compile(r"`\[\[ ## (\w+) ## \]\]`")


@dataclass(frozen=True)
class ScriptedRequest:
    """What a scripted LM sees of one call, already parsed out of DSPy's chat format.

    A plain chat call (no DSPy fields: the answer role sends the instruction as the only user
    message) is shown as ``inputs={"instruction": <message>}``, ``outputs=["answer"]`` and
    ``plain=True``; the script's ``"answer"`` value is sent back as the reply text.
    """

    system: str
    user: str
    inputs: dict[str, str]
    outputs: list[str]
    temperature: float | None
    plain: bool = False
    max_tokens: int | None = None
    history: tuple[str, ...] = ()  # the texts of the messages before the last (few-shot demonstrations)

    @property
    def instructions(self) -> str:
        """The signature instructions (the evolving method, for an Evolver call)."""
        marker = "your objective is:"
        index = self.system.find(marker)
        return self.system[index + len(marker):].strip() if index >= 0 else self.system


def parse_fields(text: str) -> dict[str, str]:
    """Split ``[[ ## name ## ]]`` sections of a chat-format text into a dict."""
    parts = _FIELD.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def format_fields(values: dict[str, Any]) -> str:
    """Render field values the way DSPy's ChatAdapter expects an answer."""
    body = "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in values.items())
    return body + "[[ ## completed ## ]]"


def parse_request(request: Any) -> ScriptedRequest:
    system = request.system if isinstance(request.system, str) else "".join(
        part.text for part in (request.system or ())
    )
    user = request.messages[-1].text or "" if request.messages else ""
    history = tuple(message.text or "" for message in request.messages[:-1])
    wanted_from = user.rfind("Respond with the corresponding output fields")
    outputs = [name for name in _WANTED.findall(user[wanted_from:]) if name != "completed"] if wanted_from >= 0 else []
    inputs = parse_fields(user[:wanted_from] if wanted_from >= 0 else user)
    if wanted_from < 0 and not inputs and not system:
        return ScriptedRequest(system=system, user=user, inputs={"instruction": user}, outputs=["answer"],
                               temperature=request.config.temperature, plain=True,
                               max_tokens=request.config.max_tokens, history=history)
    return ScriptedRequest(system=system, user=user, inputs=inputs, outputs=outputs,
                           temperature=request.config.temperature, max_tokens=request.config.max_tokens,
                           history=history)


def edit_reply(rules: Sequence[str] = (), *, revised_step: str = "", old_sentence: str = "",
               new_sentence: str = "") -> dict[str, str]:
    """A scripted optimizer's answer to an edit proposal, every field of
    :class:`~autoevol.signatures.optimize.ProposeMethodEdit` filled (empty where not given)."""
    return {"new_rules": json.dumps(list(rules)), "revised_step": revised_step, "old_sentence": old_sentence,
            "new_sentence": new_sentence}


@dataclass(frozen=True)
class Truncated:
    """A script's raw reply that the engine marks as cut off at the token limit (finish reason "length")."""

    text: str


Script = Callable[[ScriptedRequest], "dict[str, Any] | str | Truncated"]


class ScriptedEngine:
    """A DSPy 3.4 engine answering each request with ``script(request)``.

    The script returns either a dict of output field values (formatted for DSPy; for a plain chat
    call, the ``"answer"`` value as the reply) or raw text (sent as is, e.g. to simulate garbage). It may raise to simulate a failing call. ``calls``
    counts every request the engine received.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.calls = 0
        self.requests: list[ScriptedRequest] = []
        self._lock = threading.Lock()

    def complete(self, request: Any) -> Response:
        parsed = parse_request(request)
        with self._lock:
            self.calls += 1
            self.requests.append(parsed)
        answer = self.script(parsed)
        finish_reason = "length" if isinstance(answer, Truncated) else "stop"
        if isinstance(answer, Truncated):
            text = answer.text
        elif isinstance(answer, str):
            text = answer
        elif parsed.plain:
            text = str(answer.get("answer", ""))
        else:
            text = format_fields(answer)
        input_tokens = len((parsed.system + parsed.user).split())
        output_tokens = len(text.split())
        return Response(id=None, model="scripted", message=Message.assistant([TextPart(text)]),
                        finish_reason=finish_reason,
                        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                                    total_tokens=input_tokens + output_tokens))

    def stream(self, request: Any) -> Any:  # pragma: no cover - autoevol never streams
        raise NotImplementedError

    def close(self) -> None:
        pass


def scripted_lm(script: Script, *, model: str = "openai/scripted", role: str = "evol",
                **kwargs: Any) -> ManagedLM:
    """A ManagedLM backed by a ScriptedEngine (reach the engine as ``lm.engine``)."""
    return ManagedLM(model, role=role, engine=ScriptedEngine(script), **kwargs)
