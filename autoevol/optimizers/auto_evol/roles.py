"""The LMs of one compile: evol, optimizer and judge, each recording its calls in the run's cache."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dspy

from autoevol.lm.cache import CallCache
from autoevol.lm.managed import ManagedLM
from autoevol.lm.structured import leading_field_cap
from autoevol.metrics.failure import FailureDetector
from autoevol.optimizers.auto_evol.records import UsageDelta
from autoevol.signatures.evolve import EvolveInstruction


def model_name(lm: Any) -> str:
    """A display name for an LM (never a key)."""
    return str(getattr(lm, "display_name", None) or getattr(lm, "model", None) or type(lm).__name__)


def evol_notes_limit(evol_lm: Any) -> int | None:
    """How many characters the evol LM's working notes may fill (``None``: no limit): a cap when it
    answers in field markers under a token limit."""
    return leading_field_cap(evol_lm, EvolveInstruction)


def evol_answer_settings(evol_lm: Any) -> dict[str, int]:
    """What shapes the evol LM's rewrites besides its model, for run headers: how many characters its
    working notes may fill (``evol_notes_max_chars``, :func:`evol_notes_limit`); nothing without a
    limit, as in the runs recorded before that cap."""
    cap = evol_notes_limit(evol_lm)
    return {} if cap is None else {"evol_notes_max_chars": cap}


def configured_evol_lm(lm: dspy.LM | None) -> dspy.LM:
    """The evol LM a teleprompter was given, else the one configured with ``dspy.configure(lm=...)``."""
    lm = lm or dspy.settings.lm
    if lm is None:
        raise ValueError("no evol LM: pass evol_lm=... or configure one with dspy.configure(lm=...)")
    return lm


def role_models(evol_lm: dspy.LM, optimizer_lm: dspy.LM, detector: FailureDetector | None) -> dict[str, str]:
    """The model of each compile role, recorded in run headers and evolver metadata."""
    models = {"evol": model_name(evol_lm), "optimizer": model_name(optimizer_lm)}
    judge = detector.judge_lm if detector is not None else None
    if judge is not None:
        models["judge"] = model_name(judge)
    return models


class CompileLMs:
    """Copies of the compile's LMs that share one call cache (the run's, or an in-memory one).

    Args:
        evol_lm, optimizer_lm: the role LMs as given to the teleprompter.
        detector: failure detection; its judge rules get a cached copy of their LM.
        cache: the run directory's call cache, or ``None`` (each ManagedLM keeps its own cache,
            or gets an in-memory one closed with :meth:`close`).
        evol_overrides: settings of the evol LM copy (e.g. ``temperature=0``).
    """

    def __init__(self, evol_lm: dspy.LM, optimizer_lm: dspy.LM, detector: FailureDetector,
                 cache: CallCache | None, **evol_overrides: Any) -> None:
        self._cache = cache
        self._opened: list[CallCache] = [cache] if cache is not None else []
        self.evol = self._cached(evol_lm, **evol_overrides)
        self.optimizer = self._cached(optimizer_lm)
        self.detector = detector.with_judge_lm(self._cached(detector.judge_lm)) if detector.judge_lm else detector

    def _cached(self, lm: dspy.LM, **overrides: Any) -> dspy.LM:
        copy = lm.copy(**overrides) if overrides else lm.copy()
        if isinstance(copy, ManagedLM):
            if self._cache is not None:
                copy.call_cache = self._cache
            elif copy.call_cache is None:
                copy.call_cache = CallCache()
                self._opened.append(copy.call_cache)
        return copy

    def close(self) -> None:
        """Close the call caches this compile opened."""
        for cache in self._opened:
            cache.close()

    def usage(self) -> dict[str, UsageDelta]:
        """Usage so far per role (ManagedLMs only; copies sharing a counter are counted once)."""
        lms = [self.evol, self.optimizer] + ([self.detector.judge_lm] if self.detector.judge_lm else [])
        seen: set[int] = set()
        totals: dict[str, UsageDelta] = {}
        for lm in lms:
            counter = getattr(lm, "_usage", None)
            if not isinstance(lm, ManagedLM) or id(counter) in seen:
                continue
            seen.add(id(counter))
            usage = lm.usage
            total = totals.get(usage.role) or UsageDelta(role=usage.role, model=model_name(lm))
            totals[usage.role] = total.plus(usage)
        return totals

    def usage_since(self, before: Mapping[str, UsageDelta]) -> list[UsageDelta]:
        """What each role used since ``before`` (a result of :meth:`usage`)."""
        return [after.minus(before[role]) if role in before else after for role, after in self.usage().items()]
