"""Memoized price metadata for DSPy 3.4.

DSPy prices every completed call with ``model_info(provider, model)``, which for a model missing
from its price table (a local GGUF, a self-hosted vLLM model) scans the whole table on every call:
about 10 ms of CPU per call, more than everything else autoevol does per call together. The table
is static while a process runs (autoevol uses the bundled snapshot, offline), so the lookup is
memoized per (provider, model, namespaces); callers still get their own copy of the result.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from dspy.clients import costs


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


_memoize_model_info()
