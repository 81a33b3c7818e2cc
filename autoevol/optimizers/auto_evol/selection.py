"""Selection that the data supports: paired comparisons on the same items, at a level that counts the tries.

A small evol LM changes its verdict on many items whenever its prompt changes, so two equally good
methods differ by several items on any dev set, and "the fewest failures" alone picks noise. A
challenger therefore replaces a reference method only when its advantage on the *discordant* items
(those exactly one of the two fails) would be unlikely if both were equally good: a one-sided exact
sign test (McNemar's), at a level that shrinks with the number of candidates the compile has tried
(Bonferroni), so trying more candidates does not buy more false wins.

The same comparison confirms the result: the compile's final method against its starting method
on a confirmation split that no selection step has measured.

Example:
    >>> start, final = [True, True, True, False], [False, False, False, False]
    >>> comparison = compare(final, start, level=0.2)
    >>> comparison.reference_only, comparison.challenger_only, comparison.supported
    (3, 0, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field

#: Default family-wise level of the selection steps: a candidate tried as the k-th of a compile
#: is accepted when its one-sided sign-test p-value is at most ``SELECTION_ALPHA / k``. Chosen from
#: ``benchmarks/selection.py`` (figures in benchmarks/RESULTS.md and docs/compile.md).
SELECTION_ALPHA = 0.5
#: Default level of the confirmation test of the final method against the starting method.
CONFIRM_ALPHA = 0.1


def sign_test_p_value(wins: int, losses: int) -> float:
    """One-sided exact sign test: ``P(X >= wins)`` for ``X ~ Binomial(wins + losses, 1/2)``.

    ``wins`` counts the discordant items that favour one side, ``losses`` the rest. A small value
    means "this many wins are unlikely if both sides were equally good".
    """
    if wins < 0 or losses < 0:
        raise ValueError("counts must be non-negative")
    discordant = wins + losses
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(wins, discordant + 1))
    return tail / 2**discordant


class PairedComparison(BaseModel):
    """A challenger against a reference on the same items: the paired counts and the sign test.

    ``p_value`` is the chance of at least ``reference_only`` wins among the discordant items if
    the two were equally good; the challenger's advantage is ``supported`` when it wins more
    discordant items than it loses and ``p_value`` is at most ``level``.
    """

    items: int = Field(description="items both methods were measured on")
    reference_only: int = Field(description="items only the reference failed (wins of the challenger)")
    challenger_only: int = Field(description="items only the challenger failed (losses of the challenger)")
    both: int = Field(description="items both failed")
    p_value: float
    level: float = Field(description="the largest p-value that counts as support")

    @property
    def supported(self) -> bool:
        """Whether the data supports the challenger's advantage at ``level``."""
        return self.reference_only > self.challenger_only and self.p_value <= self.level

    def describe(self) -> str:
        """One line: the discordant counts and the test, e.g. for logs and errors."""
        return (f"{self.reference_only} items only the reference failed, {self.challenger_only} only the "
                f"challenger failed, of {self.items} (sign test p={self.p_value:.3g}, needed <= {self.level:.3g})")


def compare(challenger: Sequence[bool], reference: Sequence[bool], *, level: float) -> PairedComparison:
    """The paired comparison of two methods' failure flags on the same items (in the same order)."""
    if len(challenger) != len(reference):
        raise ValueError("a paired comparison needs outcomes on the same items")
    pairs = list(zip(challenger, reference))
    reference_only = sum(1 for mine, theirs in pairs if theirs and not mine)
    challenger_only = sum(1 for mine, theirs in pairs if mine and not theirs)
    return PairedComparison(items=len(pairs), reference_only=reference_only, challenger_only=challenger_only,
                            both=sum(1 for mine, theirs in pairs if mine and theirs),
                            p_value=sign_test_p_value(reference_only, challenger_only), level=level)


def acceptance_level(alpha: float, tried: int) -> float:
    """The per-candidate level when ``tried`` candidates have been tried so far (Bonferroni)."""
    if tried < 1:
        raise ValueError("at least one candidate must have been tried")
    return alpha / tried
