"""LM judges: failure rules that ask a language model, run after every cheap rule.

:class:`EvolutionJudge` (rule ``judge``, the default judge) gives a verdict on what cheap rules
cannot see: a rewrite that lost the task, dropped key information, became simpler, answered
instead of rewriting, or is no harder; each verdict is a named rule (``judge_lost_task``, ...)
with the judge's reason. :class:`EqualityJudge` (rule ``equal``) is Evol-Instruct's
information-gain check. Each costs one LM call per evolution that passed every cheap rule.

Example:
    >>> judge = EvolutionJudge(dspy.LM("openai/gpt-4o-mini"))  # doctest: +SKIP
    >>> judge.verdict("Add 2 and 3.", "Add 2 and 3, then double it.", None)  # doctest: +SKIP
"""

from __future__ import annotations

import logging

import dspy

from dspy.utils.exceptions import AdapterParseError

from autoevol.lm.policy import BudgetExceeded
from autoevol.metrics.rules import FailureRule, Target
from autoevol.records import JUDGE_ABSTAINED, Verdict
from autoevol.signatures.judge import JudgeEquality, JudgeEvolution

logger = logging.getLogger(__name__)

#: Name of the information-gain judge rule (only present when a judge LM is given).
EQUAL = "equal"
#: Name of the evolution judge; its verdicts are recorded as ``judge_<verdict>`` rules.
JUDGE = "judge"
#: The evolution judge's failing verdicts, as the rule names recorded in verdicts.
JUDGE_RULES: tuple[str, ...] = ("judge_not_harder", "judge_simpler", "judge_lost_task", "judge_answered",
                                "judge_unsolvable")


class EqualityJudge(FailureRule):
    """Evol-Instruct's information-gain check: an LM compares the parent and the rewrite.

    Fires when the judge answers "Equal". When the LM call raises (other than a budget stop),
    the rule is treated as not fired and a warning is logged.
    """

    name = EQUAL
    description = "an LM judge finds the rewrite equal to its parent (no information gain)"
    target: Target = "evolution"
    expensive = True

    def __init__(self, judge_lm: dspy.LM) -> None:
        self.judge_lm = judge_lm
        self.predict = dspy.Predict(JudgeEquality)

    def check(self, original: str, evolved: str, response: str | None) -> str | None:
        try:
            with dspy.context(lm=self.judge_lm):
                verdict = self.predict(first_instruction=original, second_instruction=evolved).verdict
        except BudgetExceeded:
            raise
        except Exception as error:  # the caller counts LM failures; the judge just abstains
            logger.warning("equality judge failed, treating the evolution as not equal: %s: %s",
                           type(error).__name__, error)
            return None
        if str(verdict).strip().strip("\"'").casefold() == "equal":
            return "the judge found the rewrite equal to its parent: no information gain"
        return None


class EvolutionJudge(FailureRule):
    """An LM verdict on one rewrite: harder, or which way it failed (the verdict names the rule).

    The verdict ``harder`` passes; ``not_harder``, ``simpler``, ``lost_task``, ``answered`` and
    ``unsolvable`` fail with rule ``judge_<verdict>`` and the judge's one-sentence reason. An LM
    error propagates (the item's measurement failed, not the evolution); a reply that does not
    parse, or names no known verdict, is an abstention: rule ``judge_abstained``, which a paired
    comparison of methods leaves out like an LM error (never a pass).
    """

    name = JUDGE
    description = ("an LM judge finds the rewrite not harder, simpler, off the task, an answer, or "
                   "unsolvable (rules judge_*)")
    target: Target = "evolution"
    expensive = True

    def __init__(self, judge_lm: dspy.LM) -> None:
        self.judge_lm = judge_lm
        self.predict = dspy.Predict(JudgeEvolution)

    def verdict(self, original: str, evolved: str, response: str | None) -> Verdict | None:
        """The failure verdict (an abstention included), or ``None`` when the judge finds the rewrite harder."""
        try:
            with dspy.context(lm=self.judge_lm):
                judged = self.predict(original_instruction=original, rewritten_instruction=evolved)
        except AdapterParseError as error:
            detail = " ".join(str(error).split())[:200]
            logger.warning("the evolution judge's reply did not parse; the item is not judged: %s", detail)
            return Verdict.failure(JUDGE_ABSTAINED, f"the judge's reply did not parse: {detail}")
        label = str(judged.verdict).strip().strip("\"'").casefold()
        if label == "harder":
            return None
        if f"judge_{label}" not in JUDGE_RULES:
            return Verdict.failure(JUDGE_ABSTAINED, f"the judge named no known verdict: {label[:80]!r}")
        reason = " ".join(str(judged.reason or "").split())[:300] or f"the judge says: {label}"
        return Verdict.failure(f"judge_{label}", reason)

    def check(self, original: str, evolved: str, response: str | None) -> str | None:
        found = self.verdict(original, evolved, response)
        return found.reason if found is not None else None
