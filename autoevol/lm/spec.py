"""LM specs: one string selects a model, ``local`` selects the embedded offline default."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from autoevol.lm.cache import CallCache
from autoevol.lm.local import DEFAULT_SLOTS, LocalModelError, LocalServer, default_model_path
from autoevol.lm.managed import ManagedLM
from autoevol.lm.policy import AdaptiveLimiter, Budget, CallPolicy
from autoevol.lm.structured import LOCAL_DIALECT, OPENAI_DIALECT, install_routing_adapter

LOCAL = "local"
#: Calls in flight per remote endpoint when the session is not told.
DEFAULT_CONCURRENCY = 8
#: The fewest output tokens of a constrained signature call on a local model: room for the
#: working fields and the closing ones of a JSON answer (the server caps it at its context).
LOCAL_STRUCTURED_MAX_TOKENS = 2048


def writes_marked_text(gguf: Path) -> bool:
    """Whether a local model answers text-only signatures in field markers rather than JSON.

    Every local model does except the embedded SmolLM2-135M: under the marker grammar it writes
    text without end until the token limit (about 170 s a call, measured), while in JSON it closes
    its strings early, which is all a 135M model can give. Larger models lose every line after the
    first in JSON (Qwen2.5-Coder-1.5B dropped the input block of 31 of 34 Self-Instruct tasks).
    """
    try:
        return gguf.resolve() != default_model_path().resolve()
    except LocalModelError:  # no embedded model installed: this one is the user's own
        return True


class LMSpecError(ValueError):
    """An LM spec cannot be used; the message names the spec."""


@dataclass(frozen=True)
class LMSpec:
    """A parsed LM spec: either a DSPy model string or a local GGUF file."""

    text: str
    model: str | None = None
    gguf: Path | None = None

    @property
    def is_local(self) -> bool:
        return self.gguf is not None

    @property
    def display_name(self) -> str:
        """The model name recorded in outputs (never contains a secret)."""
        return f"local:{self.gguf.name}" if self.gguf else str(self.model)


def parse_spec(text: str) -> LMSpec:
    """Parse ``local``, ``local:PATH.gguf`` or a DSPy model string such as ``openai/gpt-4o-mini``."""
    text = (text or "").strip()
    if text == LOCAL:
        return LMSpec(text=text, gguf=default_model_path())
    if text.startswith(LOCAL + ":"):
        path = Path(text[len(LOCAL) + 1:]).expanduser()
        if not path.is_file():
            raise LMSpecError(f"LM spec '{text}': GGUF file not found: {path}")
        return LMSpec(text=text, gguf=path)
    provider, slash, name = text.partition("/")
    if not slash or not provider or not name:
        raise LMSpecError(
            f"LM spec '{text}' is not a model string like 'openai/gpt-4o-mini', "
            "'hosted_vllm/MODEL' or 'ollama_chat/MODEL'; use 'local' for the embedded model"
        )
    return LMSpec(text=text, model=text)


def endpoint_variables(model: str) -> tuple[str, ...]:
    """The environment variables that can hold the endpoint of ``model``, first one first.

    ``openai/...``: ``OPENAI_BASE_URL`` (the OpenAI SDK's name), then ``OPENAI_API_BASE``
    (LiteLLM's); any other provider prefix ``P``: ``P_API_BASE``, then ``P_BASE_URL``
    (``HOSTED_VLLM_API_BASE`` for ``hosted_vllm/...``).
    """
    prefix = model.split("/", 1)[0].upper()
    if prefix == "OPENAI":
        return ("OPENAI_BASE_URL", "OPENAI_API_BASE")
    return (f"{prefix}_API_BASE", f"{prefix}_BASE_URL")


def endpoint_from_environment(model: str) -> str | None:
    """The endpoint of ``model`` given in the environment (see :func:`endpoint_variables`), or None.

    Read once when an LM is built: the LM then carries it as its ``api_base``, exactly as if it
    had been given with ``--api-base``, so both ways cost the same per call.
    """
    return next((os.environ[name] for name in endpoint_variables(model) if os.environ.get(name)), None)


class LMSession(AbstractContextManager["LMSession"]):
    """Builds the LMs of one job and owns what they need: local servers, cache, budget.

    One llama.cpp server serves each distinct GGUF file, shared by every role that uses it and by
    every other job on the machine that uses the same file (see :class:`LocalServer`); the
    session's leases end when it closes, whatever happened, and a server whose last user ends stops.

    Args:
        concurrency: the most calls in flight per endpoint (adaptive below that on rate limits);
            for a local model also the number of the server's parallel slots. Default: 8 per
            remote endpoint, and ``DEFAULT_SLOTS`` (4) on a local server.
        policy: timeout and retries for every call. On a local server the timeout is multiplied
            by the server's slots: a call there shares the cores with up to that many others.
        budget: limits shared by every LM of the session.
        call_cache: completed responses shared by every LM of the session.
        structured_output: constrain signature calls of non-local LMs to their output schema
            (OpenAI's ``json_schema`` form, which vLLM reads); local models always are unless
            ``False``. ``lm(..., structured_output=...)`` overrides it per LM.
        reproducible: serve local models with one slot and no prompt cache, so that a
            temperature-0 call gets the same reply every time on this machine, and seed their
            sampled calls by rollout (:class:`ManagedLM`'s ``seeded_sampling``), so that those
            repeat too (calls to a local model then run one at a time; remote LMs are not
            affected). A server already running for the same file with other settings is not
            joined: :class:`LocalModelError`.
    """

    def __init__(
        self,
        *,
        concurrency: int | None = None,
        policy: CallPolicy | None = None,
        budget: Budget | None = None,
        call_cache: CallCache | None = None,
        server_log_dir: str | Path | None = None,
        structured_output: bool | None = None,
        reproducible: bool = False,
    ) -> None:
        self.structured_output = structured_output
        self.reproducible = reproducible
        self.concurrency = concurrency
        self.policy = policy or CallPolicy()
        self.budget = budget
        self.call_cache = call_cache
        self.server_log_dir = Path(server_log_dir) if server_log_dir else None
        self._servers: dict[Path, LocalServer] = {}
        self._limiters: dict[str, AdaptiveLimiter] = {}
        self.lms: list[ManagedLM] = []

    def lm(
        self,
        spec: str,
        *,
        role: str,
        api_base: str | None = None,
        temperature: float = 0.0,
        max_tokens: int | None = 1024,
        structured_output: bool | None = None,
        **settings: Any,
    ) -> ManagedLM:
        """A ManagedLM for ``spec`` in ``role`` (evol, optimizer, judge...).

        ``api_base``: the endpoint; default: the one in the environment
        (:func:`endpoint_from_environment`), else the provider's own. LMs of one endpoint share
        one adaptive limiter.

        ``structured_output``: ``None`` follows the session (local models: on, others: the
        session's setting), ``True`` constrains signature calls to their output schema, ``False``
        never does. Plain chat calls are never constrained.
        """
        parsed = parse_spec(spec)
        wanted = self.structured_output if structured_output is None else structured_output
        kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, **settings}
        policy = self.policy
        if parsed.is_local:
            server = self._server(parsed.gguf)  # type: ignore[arg-type]
            # The vLLM dialect of the OpenAI API sends `max_tokens`, the field llama.cpp's server reads.
            model = f"hosted_vllm/{parsed.gguf.stem}"  # type: ignore[union-attr]
            kwargs.update(api_base=server.api_base, api_key="local")
            # a server another job started keeps its own slots: more calls than slots would only queue
            endpoint, concurrency = server.api_base, min(self.concurrency or server.slots, server.slots)
            policy = replace(policy, timeout=policy.timeout * server.slots)
            kwargs["seeded_sampling"] = self.reproducible
            if wanted is not False:
                kwargs.update(structured_output=LOCAL_DIALECT, structured_max_tokens=LOCAL_STRUCTURED_MAX_TOKENS,
                              marked_text=writes_marked_text(parsed.gguf))  # type: ignore[arg-type]
        else:
            model = str(parsed.model)
            api_base = api_base or endpoint_from_environment(model)
            if api_base:
                kwargs["api_base"] = api_base
                kwargs.setdefault("api_key", os.environ.get("OPENAI_API_KEY") or "not-needed")
            endpoint, concurrency = api_base or model.split("/", 1)[0], self.concurrency or DEFAULT_CONCURRENCY
            if wanted:
                kwargs["structured_output"] = OPENAI_DIALECT
        if kwargs.get("structured_output"):
            install_routing_adapter()
        limiter = self._limiters.setdefault(endpoint, AdaptiveLimiter(concurrency))
        lm = ManagedLM(model, role=role, policy=policy, limiter=limiter, budget=self.budget,
                       call_cache=self.call_cache, **kwargs)
        lm.display_name = parsed.display_name  # type: ignore[attr-defined]
        self.lms.append(lm)
        return lm

    def _server(self, gguf: Path) -> LocalServer:
        key = gguf.resolve()
        if key not in self._servers:
            log = self.server_log_dir / f"llama-server-{len(self._servers)}.log" if self.server_log_dir else None
            if self.reproducible:
                server = LocalServer(gguf, slots=1, prompt_cache=False, log_path=log).start()
                if not server.reproducible:
                    server.stop()
                    raise LocalModelError(
                        f"a llama.cpp server for {gguf.name} is already running (pid {server.pid}) with "
                        f"{server.slots} slots and the prompt cache {'on' if server.prompt_cache else 'off'}; "
                        "a reproducible job needs one slot without it: run it when the other jobs have ended")
            else:
                server = LocalServer(gguf, slots=self.concurrency or DEFAULT_SLOTS, log_path=log).start()
            self._servers[key] = server
        return self._servers[key]

    @property
    def servers(self) -> list[LocalServer]:
        return list(self._servers.values())

    def close(self) -> None:
        """Give back this session's lease on every local server (the last user's return stops it)."""
        for server in self._servers.values():
            server.stop()
        self._servers.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
