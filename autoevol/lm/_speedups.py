"""Two per-call costs of DSPy 3.4 that autoevol removes.

Price metadata: DSPy prices every completed call with ``model_info(provider, model)``, which for a
model missing from its price table (a local GGUF, a self-hosted vLLM model) scans the whole table
on every call: about 10 ms of CPU per call, more than everything else autoevol does per call
together. The table is static while a process runs (autoevol uses the bundled snapshot, offline),
so the lookup is memoized per (provider, model, namespaces); callers still get their own copy.

Engine selection: with ``engine="auto"``, DSPy sends every call of an ``openai/...`` LM through
LiteLLM as soon as ``OPENAI_BASE_URL`` or ``OPENAI_API_BASE`` is set in the environment (in general
``<PREFIX>_API_BASE`` / ``<PREFIX>_BASE_URL``), even when the LM was given its ``api_base``: the
rule protects a public endpoint from a gateway's credentials, which an explicit address makes moot.
The LiteLLM route imports LiteLLM, builds a client per call and costs about four times the CPU of
the native one (and, on a loaded machine, halves the calls per second). Here an LM that carries
its own ``api_base``/``base_url`` is routed as if no such variable were set; every other check of
DSPy's selection (client settings, models, the pre-flight fallback for requests the native engine
cannot carry) is unchanged.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from dspy.clients import backend_selection, capabilities, costs, execution
from dspy.lm15 import UnknownModelError, UnsupportedFeatureError

#: Client settings that name the endpoint of a call.
_ENDPOINT_KEYS = ("api_base", "base_url")


def _memoize_model_info() -> None:
    original = costs.model_info
    if getattr(original, "__autoevol_memoized__", False):
        return

    @functools.lru_cache(maxsize=1024)
    def cached(provider: Any, model: Any, namespaces: tuple[Any, ...] | None) -> Any:
        return original(provider, model, namespaces=namespaces)

    def model_info(provider: Any, model: Any, *, namespaces: Any = None) -> Any:
        key = tuple(namespaces) if namespaces is not None else None
        return copy.deepcopy(cached(provider, model, key))

    model_info.__autoevol_memoized__ = True  # type: ignore[attr-defined]
    costs.model_info = model_info


class _NativeOnly:
    """An LM as DSPy's backend selection reads it, with ``engine="lm15"`` (which reads no gateway variable)."""

    _engine_spec = "lm15"

    def __init__(self, lm: Any) -> None:
        self._lm = lm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lm, name)


def _route_explicit_endpoints_natively() -> None:
    original = backend_selection.select_backend
    if getattr(original, "__autoevol_explicit_endpoint__", False):
        return

    def select_backend(lm: Any, options: Any = None) -> Any:
        selection = original(lm, options)
        if selection.native or lm._engine_spec != "auto" or not any(
                selection.clients.get(key) for key in _ENDPOINT_KEYS):
            return selection
        try:
            return original(_NativeOnly(lm), options)
        except (UnknownModelError, UnsupportedFeatureError):
            return selection  # not native for another reason than the environment

    select_backend.__autoevol_explicit_endpoint__ = True  # type: ignore[attr-defined]
    for module in (backend_selection, execution, capabilities):
        module.select_backend = select_backend  # type: ignore[attr-defined]


_memoize_model_info()
_route_explicit_endpoints_natively()
