"""Running DSPy programs in worker threads."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import ParamSpec, TypeVar

from dspy.dsp.utils.settings import thread_local_overrides

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


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


def run_in_threads(function: Callable[[T], R], items: Iterable[T], num_threads: int,
                   on_done: Callable[[int], None] | None = None) -> list[R]:
    """``[function(item) for item in items]`` in ``num_threads`` threads, keeping the order.

    The caller's ``dspy.context`` is carried into the threads; ``on_done(count)`` is called in the
    caller's thread as items finish. On the first exception the pending items are cancelled and
    the exception is raised.
    """
    items = list(items)
    if not items:
        return []
    wrapped = carry_dspy_context(function)
    pool = ThreadPoolExecutor(max_workers=min(num_threads, len(items)))
    try:
        futures: list[Future[R]] = [pool.submit(wrapped, item) for item in items]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()  # raise the first error at once
            if on_done is not None:
                on_done(len(done))
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
