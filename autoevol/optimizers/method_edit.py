"""Edits to an evolving method's text: added rules, a revised step, and steps that repeat each other.

An edit proposal names one or two rules to add under :data:`RULES_HEADING` and/or one step to
revise ("Step 3 - ..."); :func:`apply_edit` applies it. :func:`repeated_step` finds a step that
repeats another step of the same method, which a small optimizer LM writes now and then.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from autoevol.optimizers.split import normalized

#: The heading under which edit proposals add their rules to a method.
RULES_HEADING = "Rules:"
#: A word of a method, as the overlap checks count words.
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

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


def apply_edit(method: str, edit: Edit, max_words: int) -> tuple[str, str | None]:
    """The method with ``edit`` applied: ``(new method, problem or None)``.

    A revised step replaces the paragraph of the step with the same label ("Step 3"); rules are
    added under :data:`RULES_HEADING` at the end. When the result is over ``max_words``, the
    oldest added rules are dropped until it fits. Only :func:`effective_edit` is applied; an edit
    with nothing left of it is a problem.
    """
    text = method.strip()
    effective = effective_edit(text, edit)
    if not effective.rules and not effective.revised_step:
        if edit.revised_step:
            label = _label(edit.revised_step)
            return method, f"the revised {label} is the method's {label} unchanged, and the edit adds no new rule"
        return method, "the edit adds no new rule and revises no step"
    if effective.revised_step:
        text, problem = _replace_step(text, effective.revised_step)
        if problem:
            return method, problem
    body, rules = _split_rules(text)
    rules += effective.rules
    while rules and len(_join_rules(body, rules).split()) > max_words and len(rules) > len(effective.rules):
        rules.pop(0)  # the oldest added rule goes first
    return _join_rules(body, rules), None


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
    paragraphs = method.strip().split("\n\n")
    position = _step_position(paragraphs, edit.revised_step)
    unchanged = position is not None and normalized(paragraphs[position]) == normalized(_one_step(edit.revised_step))
    return Edit(rules=tuple(rules.values()), revised_step="" if unchanged else edit.revised_step)


def _step_position(paragraphs: Sequence[str], revised: str) -> int | None:
    """Where among ``paragraphs`` the step with the label of ``revised`` is, else ``None``."""
    label = _STEP_LABEL.match(revised)
    for position, paragraph in enumerate(paragraphs):
        found = _STEP_LABEL.match(paragraph)
        if label and found and normalized(found.group(1)) == normalized(label.group(1)):
            return position
    return None


def _replace_step(method: str, revised: str) -> tuple[str, str | None]:
    label = _STEP_LABEL.match(revised)
    if not label:
        return method, "the revised step does not start with a step label such as 'Step 2'"
    paragraphs = method.split("\n\n")
    position = _step_position(paragraphs, revised)
    if position is None:
        return method, f"the revised step names {_label(revised)!r}, which the method does not have"
    step = _one_step(revised)
    copied = _copied_step(step, paragraphs[:position] + paragraphs[position + 1:])
    if copied:
        return method, f"the revised {_label(revised)} repeats {copied} (the method would lose its own step)"
    paragraphs[position] = step
    return "\n\n".join(paragraphs), None


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


def _steps(method: str) -> list[str]:
    """The labelled steps of ``method``, each from its label line to the next label line or blank line."""
    steps: list[list[str]] = []
    inside = False
    for line in method.splitlines():
        if _STEP_LABEL.match(line):
            steps.append([line])
            inside = True
        elif not line.strip():
            inside = False
        elif inside:
            steps[-1].append(line)
    return ["\n".join(lines) for lines in steps]


def _copied_step(step: str, others: Sequence[str]) -> str | None:
    """The label of another step that ``step`` repeats (apart from its label), else ``None``.

    A small optimizer LM revising "Step 3" sometimes writes Step 2's text under Step 3's label;
    applied, the method would do step 2 twice and never rewrite.
    """
    for other in others:
        if _STEP_LABEL.match(other) and _overlap(step, other) >= COPIED_STEP_OVERLAP:
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
