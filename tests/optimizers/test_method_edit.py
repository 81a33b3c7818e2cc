"""Edits that reword and shrink a method: a sentence replaced or deleted, a rule put into its step,
and edits that cannot be applied rejected with their reason (directly and through a compile)."""

from __future__ import annotations

import pytest

from autoevol.optimizers.auto_evol.method_edit import RULES_HEADING, Edit, apply_edit, rule_target
from autoevol.optimizers.auto_evol.proposal import method_problem
from autoevol.signatures.evolve import INITIAL_METHOD
from autoevol.testing.scripted import edit_reply
from tests.optimizers.test_small_lm_compile import INPUTS, NOTHING, NUMBERS, QUESTION, Evol, Optimizer, compile_world

BUDGET = 400
#: Step 3's second sentence in e_0, and a rewording of it.
LIMIT = ("The rewritten instruction may add only about 10 to 20 words to the original and must stay a single "
         "instruction a person could answer.")
KEEP = "The rewritten instruction keeps every input, example and signature of the original and stays one task."
WITH_RULES = f"{INITIAL_METHOD}\n\n{RULES_HEADING}\n- {NUMBERS}\n- {QUESTION}"


def test_the_e0_sentences_the_tests_edit_are_where_they_expect():
    assert INITIAL_METHOD.count(LIMIT) == 1 and INITIAL_METHOD.count("carry out the plan. ") == 1


# ---------------------------------------------------------------------------------- what an edit makes


def test_an_edit_replaces_a_sentence_and_keeps_the_methods_punctuation():
    method, applied, problem = apply_edit(INITIAL_METHOD, Edit(old_sentence=LIMIT, new_sentence=KEEP), BUDGET)
    assert problem is None and method == INITIAL_METHOD.replace(LIMIT, KEEP)
    assert applied.describe().startswith("replaced 'The rewritten instruction may add only")
    # copied without its full stop, in other case and spacing, the new one without a full stop
    sloppy = Edit(old_sentence="  the rewritten INSTRUCTION may add only about 10 to 20 words\nto the original",
                  new_sentence="The rewritten instruction may add up to 30 words")
    method, _, problem = apply_edit(INITIAL_METHOD, sloppy, BUDGET)
    assert problem is None and method == INITIAL_METHOD.replace(
        "The rewritten instruction may add only about 10 to 20 words to the original",
        "The rewritten instruction may add up to 30 words")


def test_an_edit_deletes_a_whole_sentence_and_the_method_shrinks():
    method, applied, problem = apply_edit(INITIAL_METHOD, Edit(old_sentence="carry out the plan."), BUDGET)
    assert problem is None and method == INITIAL_METHOD.replace("carry out the plan. ", "")
    assert "Step 3 - Rewrite: The rewritten instruction" in method
    assert len(method.split()) == len(INITIAL_METHOD.split()) - 4
    assert applied.describe() == "deleted 'carry out the plan.'"
    method, _, problem = apply_edit(INITIAL_METHOD, Edit(old_sentence=LIMIT), BUDGET)
    assert problem is None and method == INITIAL_METHOD.replace(" " + LIMIT, "")


def test_deleting_added_rules_removes_their_lines_and_then_the_heading():
    method, _, problem = apply_edit(WITH_RULES, Edit(old_sentence=f"- {NUMBERS}"), BUDGET)
    assert problem is None and method == f"{INITIAL_METHOD}\n\n{RULES_HEADING}\n- {QUESTION}"
    method, _, problem = apply_edit(method, Edit(old_sentence=QUESTION), BUDGET)
    assert problem is None and method == INITIAL_METHOD


def test_a_rule_naming_its_step_goes_into_that_step():
    rule = "Keep every input line of the task word for word."
    method, applied, problem = apply_edit(INITIAL_METHOD, Edit(rules=(f"Step 3: {rule}",)), BUDGET)
    assert problem is None and method == INITIAL_METHOD.replace(LIMIT, f"{LIMIT} {rule}")
    assert RULES_HEADING not in method and applied.describe() == f"added to Step 3: {rule}"
    # other ways to name the step; a rule without a full stop gets one
    for named in ("Step 3 - Rewrite: keep every input line", "In step 3, keep every input line"):
        method, _, problem = apply_edit(INITIAL_METHOD, Edit(rules=(named,)), BUDGET)
        assert problem is None and method == INITIAL_METHOD.replace(LIMIT, f"{LIMIT} keep every input line.")
    # a step the method lacks: the rule goes to the rules at the end, without the label
    method, applied, problem = apply_edit(INITIAL_METHOD, Edit(rules=(f"Step 9: {NUMBERS}",)), BUDGET)
    assert problem is None and method == f"{INITIAL_METHOD}\n\n{RULES_HEADING}\n- {NUMBERS}"
    assert applied.describe() == f"added rule: {NUMBERS}"


def test_a_rule_into_a_step_of_a_one_step_per_line_method_ends_that_line():
    lines = "Work in steps.\nStep 1: list the ways to make it harder.\nStep 2: rewrite it.\n\nKeep it short."
    method, _, problem = apply_edit(lines, Edit(rules=("Step 1: Keep the task's inputs.",)), BUDGET)
    assert problem is None and method == lines.replace("make it harder.", "make it harder. Keep the task's inputs.")


def test_rule_targets_are_read_from_the_rules_own_words():
    assert rule_target("Step 2: Keep the numbers.") == ("Step 2", "Keep the numbers.")
    assert rule_target("step 02 - Plan: keep the numbers") == ("Step 2", "keep the numbers")
    assert rule_target("Keep the numbers of step 2.") == (None, "Keep the numbers of step 2.")
    assert rule_target("Steps matter: keep them.") == (None, "Steps matter: keep them.")


def test_one_edit_can_combine_a_replacement_and_a_rule():
    edit = Edit(rules=(INPUTS,), old_sentence=LIMIT, new_sentence=KEEP)
    method, applied, problem = apply_edit(INITIAL_METHOD, edit, BUDGET)
    assert problem is None and method == f"{INITIAL_METHOD.replace(LIMIT, KEEP)}\n\n{RULES_HEADING}\n- {INPUTS}"
    assert applied == edit


# ---------------------------------------------------------------------------------- edits that cannot be applied


@pytest.mark.parametrize(("edit", "reason"), [
    (Edit(old_sentence="Never rewrite the task in another language."), "the old sentence is not in the method"),
    (Edit(old_sentence="the plan", new_sentence="the plan and the inputs"), "the old sentence is too short to find"),
    (Edit(old_sentence="may add only about 10 to 20 words"), "the sentence to delete is part of a sentence"),
    (Edit(old_sentence=LIMIT, new_sentence=LIMIT.upper()), "the new sentence is the old sentence unchanged"),
    (Edit(old_sentence="Step 2 - Plan: choose several options from your list that fit together and write a short "
                       "plan for combining them."), "would remove the label of step 2"),
    (Edit(old_sentence="Step 2 - Plan: choose several options", new_sentence="Choose options"),
     "would remove the label of step 2"),
    (Edit(), NOTHING),
])
def test_an_edit_that_cannot_be_applied_leaves_the_method_and_says_why(edit, reason):
    method, applied, problem = apply_edit(INITIAL_METHOD, edit, BUDGET)
    assert method == INITIAL_METHOD and applied == Edit() and problem and reason in problem


def test_an_old_sentence_found_twice_is_ambiguous():
    method = "Work in steps.\nStep 1: keep the task whole.\nStep 2: rewrite it and keep the task whole."
    changed, _, problem = apply_edit(method, Edit(old_sentence="Keep the task whole.", new_sentence="Keep it."), BUDGET)
    assert changed == method and problem == "the old sentence occurs 2 times in the method: 'Keep the task whole.'"


def test_the_applicable_part_of_an_edit_is_applied_and_the_rest_is_skipped():
    edit = Edit(rules=(INPUTS,), old_sentence="Never rewrite the task in another language.", new_sentence=KEEP)
    method, applied, problem = apply_edit(INITIAL_METHOD, edit, BUDGET)
    assert problem is None and applied == Edit(rules=(INPUTS,))
    assert method == f"{INITIAL_METHOD}\n\n{RULES_HEADING}\n- {INPUTS}"


def test_a_rule_the_method_already_has_adds_nothing_wherever_it_stands():
    method = INITIAL_METHOD.replace(LIMIT, f"{LIMIT} {NUMBERS}")
    assert apply_edit(method, Edit(rules=(NUMBERS, f"Step 1: {NUMBERS}")), BUDGET).problem == NOTHING


# ---------------------------------------------------------------------------------- through a compile


def test_a_proposed_replacement_becomes_the_candidate_method():
    optimizer = Optimizer([edit_reply(old_sentence=f'"{LIMIT}"', new_sentence=KEEP)])
    tele, result = compile_world(Evol(), optimizer, keep_unchanged=True)
    candidate = result.compile_history[0].candidates[0]
    assert not candidate.invalid and candidate.candidate.method == INITIAL_METHOD.replace(LIMIT, KEEP)
    assert candidate.change.startswith("replaced 'The rewritten instruction may add only about 10 to 20 words")


def test_an_edit_that_cannot_be_applied_is_resampled_with_its_reason():
    missing = edit_reply(old_sentence="Never rewrite the task in another language.", new_sentence=KEEP)
    into_step = edit_reply([f"Step 1: {INPUTS}"])
    tele, result = compile_world(Evol(), Optimizer([missing, into_step]), proposal_attempts=2)
    candidate = result.compile_history[0].candidates[0]
    assert candidate.attempts == 2 and len(candidate.rejected) == 1
    assert candidate.rejected[0].startswith("the old sentence is not in the method: 'Never rewrite the task")
    assert candidate.change == f"added to Step 1: {INPUTS}"
    step_1 = next(p for p in candidate.candidate.method.split("\n\n") if p.startswith("Step 1 - "))
    assert step_1.endswith(f"written in. {INPUTS}") and RULES_HEADING not in candidate.candidate.method


def test_a_new_sentence_without_an_old_one_is_a_rule_and_a_lone_unusable_edit_gives_the_candidate_up():
    tele, result = compile_world(Evol(), Optimizer([edit_reply(new_sentence=INPUTS)]))
    proposed = result.compile_history[0].candidates[0].candidate
    assert proposed.method == f"{INITIAL_METHOD}\n\n{RULES_HEADING}\n- {INPUTS}"
    tele, result = compile_world(Evol(), Optimizer([edit_reply(old_sentence="the plan")]), proposal_attempts=1,
                                 keep_unchanged=True)
    candidate = result.compile_history[0].candidates[0]
    assert candidate.invalid and "the old sentence is too short to find" in candidate.invalid_reason


def test_a_method_over_the_budget_may_shrink_or_be_reworded_but_not_grow():
    budget = len(INITIAL_METHOD.split()) - 10  # e.g. a warm start compiled with a larger budget
    shorter, _, _ = apply_edit(INITIAL_METHOD, Edit(old_sentence="carry out the plan."), budget)
    reworded, _, _ = apply_edit(INITIAL_METHOD, Edit(old_sentence="carry out the plan.",
                                                     new_sentence="follow the plan."), budget)
    longer, _, _ = apply_edit(INITIAL_METHOD, Edit(rules=(INPUTS,)), budget)
    assert method_problem(shorter, INITIAL_METHOD, max_words=budget) is None
    assert method_problem(reworded, INITIAL_METHOD, max_words=budget) is None
    assert method_problem(longer, INITIAL_METHOD, max_words=budget) == (
        f"the proposed method has {len(longer.split())} words, over the budget of {budget}")
