"""Running DSPy programs in worker threads."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from dspy.dsp.utils.settings import thread_local_overrides

P = ParamSpec("P")
R = TypeVar("R")


def carry_dspy_context(function: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``function`` so that worker threads see the caller's ``dspy.context`` (LM, adapter...)."""
    overrides = thread_local_overrides.get().copy()

    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        token = thread_local_overrides.set({**thread_local_overrides.get(), **overrides})
        try:
            return function(*args, **kwargs)
        finally:
            thread_local_overrides.reset(token)

    return wrapped
