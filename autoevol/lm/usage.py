"""LM usage per role, and what the calls of one piece of work did."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pydantic import BaseModel


class RoleUsage(BaseModel):
    """What one LM role used: billed calls, cache hits, failures and tokens."""

    role: str
    model: str
    calls: int = 0
    cache_hits: int = 0
    failed_calls: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def plus(self, other: RoleUsage) -> RoleUsage:
        """This usage with ``other``'s counts added (role and model stay this one's)."""
        return self.model_copy(update={name: getattr(self, name) + getattr(other, name) for name in COUNTS})

    def minus(self, other: RoleUsage) -> RoleUsage:
        """What was used since ``other`` (an earlier snapshot of the same counter)."""
        return self.model_copy(update={name: getattr(self, name) - getattr(other, name) for name in COUNTS})


#: The additive fields of RoleUsage.
COUNTS = ("calls", "cache_hits", "failed_calls", "retries", "input_tokens", "output_tokens", "cost")


class UsageCounter:
    """Thread-safe running totals behind a RoleUsage snapshot."""

    def __init__(self, role: str, model: str) -> None:
        self._usage = RoleUsage(role=role, model=model)
        self._lock = threading.Lock()

    def add(self, **increments: float) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self._usage, name, getattr(self._usage, name) + value)

    def snapshot(self) -> RoleUsage:
        with self._lock:
            return self._usage.model_copy()


@dataclass
class CallRecord:
    """One LM call as seen by the work that made it."""

    role: str
    cached: bool
    tokens: int
    truncated: bool


@dataclass
class CallLog:
    """The calls made while a ``observe_calls()`` block was active (in this thread/context)."""

    records: list[CallRecord] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return any(record.truncated for record in self.records)

    def count(self, *, cached: bool | None = None) -> int:
        return sum(1 for r in self.records if cached is None or r.cached == cached)


_current_log: contextvars.ContextVar[CallLog | None] = contextvars.ContextVar("autoevol_call_log", default=None)


@contextmanager
def observe_calls() -> Iterator[CallLog]:
    """Collect the LM calls made by this thread inside the block (e.g. for one dataset row)."""
    log = CallLog()
    token = _current_log.set(log)
    try:
        yield log
    finally:
        _current_log.reset(token)


def record_call(record: CallRecord) -> None:
    log = _current_log.get()
    if log is not None:
        log.records.append(record)
