"""Edits to an evolving method's text: added rules, a revised step, and steps that repeat each other.

An edit proposal names one or two rules to add under :data:`RULES_HEADING` and/or one step to
revise ("Step 3 - ..."); :func:`apply_edit` applies it. :func:`repeated_step` finds a step that
repeats another step of the same method, which a small optimizer LM writes now and then.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from autoevol.optimizers.split import normalized

#: The heading under which edit proposals add their rules to a method.
RULES_HEADING = "Rules:"
#: A word of a method, as the overlap checks count words.
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

logger = logging.getLogger(__name__)

_STEP_LABEL = re.compile(r"^\s*(step\s+\d+)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Edit:
    """A small change to a method: rules to add and/or one revised step."""

    rules: tuple[str, ...] = ()
    revised_step: str = ""

    def describe(self) -> str:
        """The edit in one line, as later steps' analyses are told what was tried."""
        parts = [f"added rule: {rule}" for rule in self.rules]
        if self.revised_step:
            parts.append(f"revised {self.revised_step.splitlines()[0][:160]}")
        return "; ".join(parts)


class AppliedEdit(NamedTuple):
    """What :func:`apply_edit` made of an edit: the new method, the part of the edit that changed
    it, and why nothing could be applied (``None`` when something was)."""

    method: str
    applied: Edit
    problem: str | None


def apply_edit(method: str, edit: Edit, max_words: int) -> AppliedEdit:
    """``method`` with ``edit`` applied.

    A revised step replaces the step with the same label ("Step 3"); rules are added under
    :data:`RULES_HEADING` at the end. Only :func:`effective_edit` is applied. A revised step that
    cannot be applied (no label, a label the method lacks, a copy of another step) does not void
    the edit's rules: they are applied alone. When the result is over ``max_words``, the oldest
    added rules are dropped until it fits.
    """
    text = method.strip()
    effective = effective_edit(text, edit)
    if not effective.rules and not effective.revised_step:
        if edit.revised_step:
            label = _label(edit.revised_step)
            problem = f"the revised {label} is the method's {label} unchanged, and the edit adds no new rule"
        else:
            problem = "the edit adds no new rule and revises no step"
        return AppliedEdit(method, Edit(), problem)
    if effective.revised_step:
        revised, problem = _replace_step(text, effective.revised_step)
        if problem and not effective.rules:
            return AppliedEdit(method, Edit(), problem)
        if problem:
            logger.info("edit proposal: %s; its rules are applied without the step", problem)
            effective = Edit(rules=effective.rules)
        text = revised
    body, rules = _split_rules(text)
    rules += effective.rules
    while rules and len(_join_rules(body, rules).split()) > max_words and len(rules) > len(effective.rules):
        rules.pop(0)  # the oldest added rule goes first
    return AppliedEdit(_join_rules(body, rules), effective, None)


def effective_edit(method: str, edit: Edit) -> Edit:
    """What of ``edit`` changes ``method``: the rules it does not have yet, and the revised step
    unless it says what the method's step of that label says already (case and spacing aside).

    A candidate's change is described from this, so it never claims a revision that changed nothing.
    """
    existing = {normalized(rule) for rule in _added_rules(method.strip())}
    rules: dict[str, str] = {}
    for rule in edit.rules:
        if normalized(rule) not in existing:
            rules.setdefault(normalized(rule), rule)
    lines = method.strip().splitlines()
    span = _step_span(lines, edit.revised_step)
    unchanged = span is not None and normalized(_span_text(lines, span)) == normalized(_one_step(edit.revised_step))
    return Edit(rules=tuple(rules.values()), revised_step="" if unchanged else edit.revised_step)


def _step_spans(lines: Sequence[str]) -> list[tuple[int, int]]:
    """The ``(first, past last)`` line numbers of each labelled step: from its label line to the
    next label line or blank line, so steps work both as paragraphs and one per line."""
    spans: list[tuple[int, int]] = []
    for number, line in enumerate(lines):
        if _STEP_LABEL.match(line):
            spans.append((number, number + 1))
        elif line.strip() and spans and spans[-1][1] == number:
            spans[-1] = (spans[-1][0], number + 1)
    return spans


def _span_text(lines: Sequence[str], span: tuple[int, int]) -> str:
    return "\n".join(lines[span[0]:span[1]])


def _steps(method: str) -> list[str]:
    """The labelled steps of ``method``, as :func:`_step_spans` finds them."""
    lines = method.splitlines()
    return [_span_text(lines, span) for span in _step_spans(lines)]


def _step_span(lines: Sequence[str], revised: str) -> tuple[int, int] | None:
    """Where among ``lines`` the step with the label of ``revised`` is, else ``None``."""
    label = _STEP_LABEL.match(revised)
    if not label:
        return None
    for span in _step_spans(lines):
        found = _STEP_LABEL.match(lines[span[0]])
        if found and normalized(found.group(1)) == normalized(label.group(1)):
            return span
    return None


def _replace_step(method: str, revised: str) -> tuple[str, str | None]:
    if not _STEP_LABEL.match(revised):
        return method, "the revised step does not start with a step label such as 'Step 2'"
    lines = method.splitlines()
    span = _step_span(lines, revised)
    if span is None:
        return method, f"the revised step names {_label(revised)!r}, which the method does not have"
    step = _one_step(revised)
    others = [_span_text(lines, other) for other in _step_spans(lines) if other != span]
    copied = _copied_step(step, others)
    if copied:
        return method, f"the revised {_label(revised)} repeats {copied} (the method would lose its own step)"
    return "\n".join([*lines[:span[0]], step, *lines[span[1]:]]), None


#: Word overlap of two steps (shared words / words of either, labels aside) from which one repeats the other.
COPIED_STEP_OVERLAP = 0.8


def repeated_step(text: str, current: str = "") -> str | None:
    """Why ``text`` has a step that repeats an earlier one of its steps, or ``None``.

    A small optimizer LM sometimes writes one step's text again under the next step's label;
    the method would then do that step twice and drop the other. A repeat that ``current``
    already has is not the proposal's doing and is not held against it.
    """
    inherited = _repeats(current)
    for later, earlier in _repeats(text):
        if not any(_overlap(later, old_later) >= COPIED_STEP_OVERLAP
                   and _overlap(earlier, old_earlier) >= COPIED_STEP_OVERLAP for old_later, old_earlier in inherited):
            return (f"the proposed method's {_label(later)} repeats {_label(earlier)} "
                    "(the method would do one step twice and lose another)")
    return None


def _repeats(method: str) -> list[tuple[str, str]]:
    """Pairs ``(later step, earlier step it repeats)`` among the steps of ``method``."""
    steps = _steps(method)
    return [(later, earlier) for position, later in enumerate(steps) for earlier in steps[:position]
            if _overlap(later, earlier) >= COPIED_STEP_OVERLAP]


def _copied_step(step: str, others: Sequence[str]) -> str | None:
    """The label of another step that ``step`` repeats (apart from its label), else ``None``.

    A small optimizer LM revising "Step 3" sometimes writes Step 2's text under Step 3's label;
    applied, the method would do step 2 twice and never rewrite.
    """
    for other in others:
        if _overlap(step, other) >= COPIED_STEP_OVERLAP:
            return _label(other)
    return None


def _overlap(step: str, other: str) -> float:
    """Shared words over the words of either step, labels aside (0 when either has none)."""
    words, theirs = _step_words(step), _step_words(other)
    return len(words & theirs) / len(words | theirs) if words and theirs else 0.0


def _label(step: str) -> str:
    label = _STEP_LABEL.match(step)
    return " ".join(label.group(1).split()) if label else "a step"


def _step_words(step: str) -> set[str]:
    return set(WORD.findall(_STEP_LABEL.sub("", step.casefold(), count=1)))


def _one_step(revised: str) -> str:
    """The revised step alone, cut where a later step label begins.

    Small optimizer LMs often write the steps after the revised one too; pasting those in would
    repeat them in the method.
    """
    lines = revised.strip().splitlines()
    for position, line in enumerate(lines[1:], start=1):
        if _STEP_LABEL.match(line):
            return "\n".join(lines[:position]).strip()
    return revised.strip()


def _split_rules(method: str) -> tuple[str, list[str]]:
    head, marker, tail = method.rpartition("\n\n" + RULES_HEADING + "\n")
    if not marker:
        return method, []
    return head, [line[2:].strip() for line in tail.splitlines() if line.startswith("- ")]


def _added_rules(method: str) -> list[str]:
    return _split_rules(method)[1]


def _join_rules(body: str, rules: Sequence[str]) -> str:
    if not rules:
        return body
    return body + "\n\n" + RULES_HEADING + "\n" + "\n".join(f"- {rule}" for rule in rules)
