"""Paired comparison of evolvers on the same items: failure rates with a bootstrap interval.

Every evolver evolves the same held-out instructions; item ``i`` failed or not under each. The
difference of failure rates (``b - a``) is estimated with a paired bootstrap: items are resampled
with replacement and the same resample is used for both evolvers, so the interval reflects the
per-item pairing rather than two independent samples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from autoevol.metrics.embeddings import Embedder
from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.quality import QualityReport, quality_report
from autoevol.metrics.rate import FailureRate, failure_rate, summarize
from autoevol.records import UNMEASURED

logger = logging.getLogger(__name__)

Program = Callable[..., Any]

_BOOT_CHUNK = 256


def paired_bootstrap(
    failed_a: Sequence[bool],
    failed_b: Sequence[bool],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Difference of failure rates ``rate(b) - rate(a)`` and its percentile bootstrap interval.

    Args:
        failed_a, failed_b: per-item failure flags of two evolvers on the same items, in the same order.
        n_boot: bootstrap resamples.
        confidence: coverage of the interval (0.95 gives the 2.5th and 97.5th percentiles).
        seed: seed of the resampling.

    Returns:
        ``(diff, low, high)``.

    Raises:
        ValueError: different lengths, no items, ``n_boot < 1`` or ``confidence`` outside (0, 1).
    """
    a = np.asarray(failed_a, dtype=np.float64)
    b = np.asarray(failed_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must have the same length ({a.size} vs {b.size})")
    if a.size == 0:
        raise ValueError("paired_bootstrap needs at least one item")
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1")
    delta = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, _BOOT_CHUNK):  # bounded memory: chunk x n indices at a time
        stop = min(start + _BOOT_CHUNK, n_boot)
        picks = rng.integers(0, delta.size, size=(stop - start, delta.size))
        means[start:stop] = delta[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(delta.mean()), float(low), float(high)


class PairedDifference(BaseModel):
    """``rate(other) - rate(reference)`` over the same items, with its bootstrap interval."""

    reference: str
    other: str
    diff: float
    low: float
    high: float
    confidence: float
    n: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero."""
        return self.low > 0.0 or self.high < 0.0


class NothingMeasured(ValueError):
    """No item was measured for every evolver (each hit an LM error or a judge abstention somewhere)."""


class LeftOut(BaseModel):
    """An item whose measurement failed for some evolver (an LM error or a judge abstention): it is
    left out of every evolver's rate, so it is counted against none of them."""

    index: int
    instruction: str
    reasons: dict[str, str] = Field(description="per evolver whose measurement failed: the rule and the reason")


class ComparisonResult(BaseModel):
    """Evolvers side by side on the same items.

    ``items`` counts the items every evolver was measured on; ``left_out`` lists the others.

    ``quality`` holds the quality report of each evolver's successful evolutions (``None`` when
    quality was not measured or nothing succeeded); ``seed_quality`` that of the items themselves.
    ``differences`` compare every evolver with the first one.
    """

    names: list[str]
    items: int
    rates: dict[str, FailureRate]
    quality: dict[str, QualityReport | None]
    seed_quality: QualityReport | None = None
    differences: list[PairedDifference]
    methods: dict[str, str] = {}
    left_out: list[LeftOut] = Field(default_factory=list)

    def rules(self) -> list[str]:
        """Every rule that fired for any evolver, most frequent first."""
        totals: dict[str, int] = {}
        for rate in self.rates.values():
            for rule, count in rate.by_rule.items():
                totals[rule] = totals.get(rule, 0) + count
        return sorted(totals, key=lambda rule: (-totals[rule], rule))

    def summary(self) -> dict[str, Any]:
        """A compact JSON view without per-item outcomes."""
        return {
            "items": self.items,
            "evolvers": {
                name: {
                    "failure_rate": self.rates[name].rate,
                    "failed": self.rates[name].failed,
                    "by_rule": self.rates[name].by_rule,
                    "quality": None if self.quality.get(name) is None else self.quality[name].figures(),
                }
                for name in self.names
            },
            "seed_quality": None if self.seed_quality is None else self.seed_quality.figures(),
            "differences": [d.model_dump() for d in self.differences],
            "left_out": [item.model_dump() for item in self.left_out],
        }


def compare_evolvers(
    evolvers: Mapping[str, Program],
    items: Sequence[str],
    *,
    responder: Program | None = None,
    detector: FailureDetector | None = None,
    num_threads: int = 1,
    quality: bool = True,
    embedder: Embedder | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ComparisonResult:
    """Evolve, answer and judge ``items`` with every evolver, and compare them.

    Runs under the configured DSPy LM (use ``dspy.context(lm=...)``). With ``quality``, the
    successful evolutions of each evolver (and the items themselves) get a
    :func:`~autoevol.metrics.quality.quality_report` with ``embedder`` (default WordLlama).

    Raises:
        ValueError: fewer than one evolver or no items.
    """
    if not evolvers:
        raise ValueError("compare_evolvers needs at least one evolver")
    if not items:
        raise ValueError("compare_evolvers needs at least one item")
    items = [str(t) for t in items]
    names = list(evolvers)
    measured: dict[str, FailureRate] = {}
    for name in names:
        logger.info("evaluating %s on %d items", name, len(items))
        measured[name] = failure_rate(evolvers[name], items, responder=responder, detector=detector,
                                      num_threads=num_threads)
    left_out = [LeftOut(index=index, instruction=text, reasons={
        name: f"{measured[name].outcomes[index].verdict.rule}: {measured[name].outcomes[index].verdict.reason}"
        for name in names if measured[name].outcomes[index].verdict.rule in UNMEASURED})
        for index, text in enumerate(items)]
    left_out = [item for item in left_out if item.reasons]
    skipped = {item.index for item in left_out}
    if skipped:
        logger.warning("%d item(s) left out of every evolver's rate (LM errors or judge abstentions)", len(skipped))
    kept = [index for index in range(len(items)) if index not in skipped]
    if not kept:
        raise NothingMeasured(f"none of the {len(items)} items was measured for every evolver; first problem: "
                              f"{next(iter(left_out[0].reasons.values()))}")
    rates = {name: summarize([measured[name].outcomes[index] for index in kept]) for name in names}
    reference = names[0]
    flags = {name: [o.verdict.failed for o in rates[name].outcomes] for name in names}
    differences = []
    for name in names[1:]:
        diff, low, high = paired_bootstrap(flags[reference], flags[name], n_boot=n_boot,
                                           confidence=confidence, seed=seed)
        differences.append(PairedDifference(reference=reference, other=name, diff=diff, low=low,
                                            high=high, confidence=confidence, n=len(kept)))
    reports: dict[str, QualityReport | None] = {name: None for name in names}
    seed_report = None
    if quality:
        if embedder is None:
            from autoevol.metrics.embeddings import WordLlamaEmbedder

            embedder = WordLlamaEmbedder()
        seed_report = quality_report([items[index] for index in kept], embedder=embedder)
        for name in names:
            good = [o for o in rates[name].outcomes if not o.verdict.failed and o.evolved]
            if good:
                reports[name] = quality_report([o.evolved for o in good], parents=[o.original for o in good],
                                               embedder=embedder)
    methods = {name: str(getattr(program, "method", "")) for name, program in evolvers.items()}
    return ComparisonResult(names=names, items=len(kept), rates=rates, quality=reports,
                            seed_quality=seed_report, differences=differences, methods=methods, left_out=left_out)
