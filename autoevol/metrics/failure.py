"""Failure detection F: decide whether one evolution failed, which rule decided it, and why.

An evolution is judged on three texts: the parent instruction (``original``), its rewrite
(``evolved``) and the evol LLM's answer to the rewrite (``response``, ``None`` when no answer was
produced). Rules come in three phases, checked in this order; the first rule that fires wins:

1. cheap *evolution* rules, which look at the rewrite only (empty, unchanged, copied prompt wording,
   cut off, an answer instead of a rewrite, simpler than the parent, the question lost);
2. cheap *response* rules, which look at the answer (the paper's three failure patterns and
   Evol-Instruct's elimination rules 5 and 6);
3. the expensive LM judges, which run only when every cheap rule passed and only when a judge LM
   is given: the evolution judge (rule ``judge``, the default: lost task, simpler, not harder,
   answered instead, unsolvable, each recorded as ``judge_<verdict>``) and, when asked for by
   name, Evol-Instruct's "Equal" information-gain check (rule ``equal``).

The cheap rules live in :mod:`autoevol.metrics.rules` and the LM judge in :mod:`autoevol.metrics.judge`;
their public names are re-exported here.

Example:
    >>> detector = FailureDetector()
    >>> detector.detect("Add 2 and 3.", "Add 2 and 3.", "5").rule
    'unchanged'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dspy

from autoevol.metrics.judge import EQUAL, JUDGE, JUDGE_RULES, EqualityJudge, EvolutionJudge
from autoevol.metrics.rules import (
    BUILTIN_RULES,
    DEFAULT_RULES,
    STOP_WORDS,
    FailureRule,
    FunctionRule,
    RuleFunc,
    Target,
    rule,
)
from autoevol.records import Verdict

__all__ = [
    "BUILTIN_RULES", "DEFAULT_RULES", "EQUAL", "JUDGE", "JUDGE_RULES", "STOP_WORDS", "EqualityJudge",
    "EvolutionJudge", "FailureDetector", "FailureRule",
    "FunctionRule", "RuleFunc", "Target", "rule",
]


_JUDGES: dict[str, type[EqualityJudge] | type[EvolutionJudge]] = {EQUAL: EqualityJudge, JUDGE: EvolutionJudge}


def _valid_names() -> str:
    return ", ".join((*DEFAULT_RULES, JUDGE, EQUAL))


def _phase(item: FailureRule) -> int:
    if item.expensive:
        return 2
    return 0 if item.target == "evolution" else 1


def _resolve(item: FailureRule | str, judge_lm: dspy.LM | None) -> FailureRule:
    if isinstance(item, FailureRule):
        return item
    if not isinstance(item, str):
        raise TypeError(f"a failure rule must be a FailureRule or a rule name, not {type(item).__name__}")
    if item in _JUDGES:
        if judge_lm is None:
            raise ValueError(f"rule {item!r} needs a judge LM (judge_lm=...)")
        return _JUDGES[item](judge_lm)
    if item not in BUILTIN_RULES:
        raise ValueError(f"unknown failure rule {item!r}; valid rules: {_valid_names()}")
    return BUILTIN_RULES[item]


def _check_unique(rules: Sequence[FailureRule]) -> None:
    seen: set[str] = set()
    for item in rules:
        if item.name in seen:
            raise ValueError(f"failure rule {item.name!r} is given twice")
        seen.add(item.name)


# --------------------------------------------------------------------------------------------
# Detector
# --------------------------------------------------------------------------------------------


class FailureDetector:
    """Runs failure rules on one evolution; the first rule that fires decides the verdict.

    Args:
        rules: rules or built-in rule names to use (default: every rule of ``DEFAULT_RULES``).
        judge_lm: when given, the evolution judge (rule ``judge``) runs last, after every cheap
            rule, unless the rules already name a judge (``"judge"`` or ``"equal"``).
        disable: names of rules to leave out (e.g. from a CLI flag).
        extra: custom rules added to the selection.

    Whatever order the rules are given in, evolution rules run before response rules and
    expensive rules (the judge) run last; within a phase the given order is kept.

    Raises:
        ValueError: an unknown rule name, a rule given twice, or a judge without a judge LM.
    """

    def __init__(
        self,
        rules: Sequence[FailureRule | str] | None = None,
        *,
        judge_lm: dspy.LM | None = None,
        disable: Iterable[str] = (),
        extra: Sequence[FailureRule] = (),
    ) -> None:
        chosen = [_resolve(item, judge_lm) for item in (DEFAULT_RULES if rules is None else rules)]
        chosen += [_resolve(item, judge_lm) for item in extra]
        if judge_lm is not None and not any(item.name in _JUDGES for item in chosen):
            chosen.append(EvolutionJudge(judge_lm))
        disabled = set(disable)
        known = set(DEFAULT_RULES) | set(_JUDGES) | {item.name for item in chosen}
        unknown = sorted(disabled - known)
        if unknown:
            raise ValueError(f"unknown failure rule(s) to disable: {', '.join(unknown)}; "
                             f"valid rules: {_valid_names()}")
        self._setup([item for item in chosen if item.name not in disabled], judge_lm)

    def _setup(self, rules: Sequence[FailureRule], judge_lm: dspy.LM | None) -> None:
        _check_unique(rules)
        self._rules: tuple[FailureRule, ...] = tuple(sorted(rules, key=_phase))
        self._judge_lm = judge_lm

    @classmethod
    def _of(cls, rules: Sequence[FailureRule], judge_lm: dspy.LM | None) -> FailureDetector:
        detector = cls.__new__(cls)
        detector._setup(rules, judge_lm)
        return detector

    @property
    def rules(self) -> tuple[FailureRule, ...]:
        """The rules in the order they are checked."""
        return self._rules

    @property
    def rule_names(self) -> list[str]:
        """Names of the rules in the order they are checked."""
        return [item.name for item in self._rules]

    @property
    def rule_ids(self) -> list[str]:
        """The rules in the order they are checked, each named with its version when above 1
        (``unchanged@2``): what records of verdicts name, so that verdicts made under other
        decisions are never taken for this detector's."""
        return [item.name if item.version == 1 else f"{item.name}@{item.version}" for item in self._rules]

    @property
    def judge_lm(self) -> dspy.LM | None:
        """The LM of the information-gain judge, if any."""
        return self._judge_lm

    def describe(self) -> list[tuple[str, str]]:
        """``(name, description)`` of every rule, in the order they are checked."""
        return [(item.name, item.description) for item in self._rules]

    def detect(self, original: str, evolved: str, response: str | None) -> Verdict:
        """Judge one evolution; the first rule that fires decides, else the evolution passed."""
        return self._run(self._rules, original, evolved, response) or Verdict.passed()

    def detect_evolution(self, original: str, evolved: str, *, expensive: bool = False) -> Verdict | None:
        """Run only the evolution rules (before answering); ``None`` when none fired.

        The judge is skipped unless ``expensive=True``: it is worth its LM call only when the
        answer passed too.
        """
        chosen = [item for item in self._rules
                  if item.target == "evolution" and (expensive or not item.expensive)]
        return self._run(chosen, original, evolved, None)

    @staticmethod
    def _run(rules: Iterable[FailureRule], original: str, evolved: str, response: str | None) -> Verdict | None:
        for item in rules:
            if isinstance(item, EvolutionJudge):  # its verdict names the rule (judge_lost_task, ...)
                judged = item.verdict(original or "", evolved or "", response)
                if judged is not None:
                    return judged
                continue
            reason = item.check(original or "", evolved or "", response)
            if reason:
                return Verdict.failure(item.name, reason)
        return None

    def without(self, *names: str) -> FailureDetector:
        """A new detector without the named rules."""
        unknown = sorted(set(names) - set(self.rule_names))
        if unknown:
            raise ValueError(f"unknown failure rule(s): {', '.join(unknown)}; "
                             f"this detector has: {', '.join(self.rule_names)}")
        return self._of([item for item in self._rules if item.name not in names], self._judge_lm)

    def with_rules(self, *rules: FailureRule | str) -> FailureDetector:
        """A new detector with more rules (rule objects or built-in names) added."""
        added = [_resolve(item, self._judge_lm) for item in rules]
        return self._of([*self._rules, *added], self._judge_lm)

    def with_judge_lm(self, judge_lm: dspy.LM) -> FailureDetector:
        """A new detector whose judge rules ask ``judge_lm`` (e.g. a copy recording to a cache)."""
        rules = [type(item)(judge_lm) if isinstance(item, (EqualityJudge, EvolutionJudge)) else item
                 for item in self._rules]
        return self._of(rules, judge_lm)

    def __repr__(self) -> str:
        return f"FailureDetector(rules={self.rule_names!r})"
