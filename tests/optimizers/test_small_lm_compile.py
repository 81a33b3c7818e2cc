"""AutoEvolInstruct against a scripted small-LM world: failures that are not nested, and an
optimizer that misbehaves (repeats the method, returns placeholders, copies a case, errors).

The evol LM fails item ``n`` when ``n % 6`` is in the method's failing set. e_0 fails {0, 1, 2};
each rule an edit may add changes that set: rule "Keep every number" fixes 0 but breaks 3
({1, 2, 3}: as bad as e_0, on other items), "Keep the question" fixes 1 and 2 but breaks 4
({0, 4}: better), "Name the inputs" fixes 0 and 1 ({2}: best). So no method's failures are a
subset of another's, and only a paired comparison on the same items ranks them correctly.
"""

from __future__ import annotations

import json
import re
import threading

import dspy
import pytest
from dspy.utils.exceptions import LMAuthError

from autoevol.lm import CallPolicy
from autoevol.metrics.failure import FailureDetector
from autoevol.optimizers import AutoEvolInstruct, NoImprovement, NoValidCandidate
from autoevol.optimizers.auto_evol.method_edit import RULES_HEADING, Edit, apply_edit, repeated_step
from autoevol.optimizers.auto_evol.proposal import MethodProposer, method_problem
from autoevol.optimizers.auto_evol.records import TrajectoryCase
from autoevol.programs.demonstration import Candidate
from autoevol.programs.evolver import Evolver
from autoevol.signatures.evolve import INITIAL_METHOD, WEAK_METHOD
from autoevol.testing.scripted import ScriptedRequest, edit_reply, scripted_lm

NUMBERS = "Keep every number of the original instruction."
QUESTION = "Keep the question the original instruction asks."
INPUTS = "Name the inputs the task works on."
FIXES = {NUMBERS: ({0}, {3}), QUESTION: ({1, 2}, {4}), INPUTS: ({0, 1}, set())}
#: Why an edit that changes nothing is not a candidate.
NOTHING = "the edit changes nothing: no new rule, no revised step, no sentence replaced or deleted"


def failing_residues(method: str) -> set[int]:
    failing = {0, 1, 2}
    for rule, (fixed, broken) in FIXES.items():
        if rule in method:
            failing = (failing - fixed) | broken
    return failing


def items(count: int) -> list[str]:
    return [f"Task #{n}: how many parts does item {n} need?" for n in range(count)]


class Evol:
    """The evol LM (and the answer role): fails items by the method's rules; errors where told."""

    def __init__(self, broken: frozenset[int] = frozenset()) -> None:
        self.broken = broken
        self.answer_requests: list[ScriptedRequest] = []
        self._lock = threading.Lock()

    def __call__(self, request: ScriptedRequest) -> dict[str, str]:
        if request.plain:
            with self._lock:
                self.answer_requests.append(request)
            return {"answer": "It needs four parts: two frames and two joints, each checked twice."}
        text = request.inputs["instruction"]
        number = int(re.search(r"#(\d+)", text).group(1))
        if number in self.broken:
            raise RuntimeError("the evol endpoint keeps failing on this item")
        if number % 6 in failing_residues(request.instructions):
            return {"working_notes": f"notes for {number}", "evolved_instruction": text}
        return {"working_notes": f"notes for {number}",
                "evolved_instruction": f"{text} Give the count per part and justify it."}


class Optimizer:
    """The optimizer LM: edits are scripted per analysis; ``attempt_answers`` are served in order."""

    def __init__(self, edits: list[list[str] | str | Exception], *, analysis: str | None = None) -> None:
        self.edits = edits
        self.analysis = analysis
        self.edit_calls = 0
        self.analyses: list[ScriptedRequest] = []
        self._lock = threading.Lock()

    def __call__(self, request: ScriptedRequest) -> dict | str:
        if "trajectory" in request.user:  # the analysis (also its JSON-adapter retry)
            with self._lock:
                self.analyses.append(request)
            if self.analysis is not None:
                return self.analysis
            issues = [{"case_id": "1", "category": "unimproved_complexity", "reason": "the rewrite is unchanged"}]
            return {"issues": json.dumps(issues), "feedback": "The method lets rewrites stay unchanged."}
        with self._lock:
            answer = self.edits[min(self.edit_calls, len(self.edits) - 1)]
            self.edit_calls += 1
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, str):
            return {"improved_method": answer} if "improved_method" in request.outputs else answer
        if isinstance(answer, dict):  # a whole edit reply (see edit_reply)
            return answer
        return edit_reply(answer)


#: The dev set: items 0-17, three of each residue, so e_0 fails exactly half of it.
DEV = items(18)
TRAIN = items(90)  # the items outside DEV: the pool and a confirmation split of 36


def compile_world(evol: Evol, optimizer: Optimizer, **settings):
    policy = CallPolicy(max_retries=0)
    evol_lm = scripted_lm(evol, role="evol", policy=policy)
    optimizer_lm = scripted_lm(optimizer, role="optimizer", policy=policy)
    options = dict(num_candidates=1, batch_size=3, dev_size=18, confirm_size=36, max_steps=1, num_threads=1, seed=0,
                   racing=False, trajectory_answers=False, max_demos=0)
    options.update(settings)
    tele = AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, **options)
    return tele, tele.compile(Evolver(), trainset=TRAIN, valset=DEV)


# ---------------------------------------------------------------------------------- selection


def test_paired_selection_picks_the_best_method_when_failures_are_not_nested():
    optimizer = Optimizer([[NUMBERS], [QUESTION], [INPUTS]])
    tele, result = compile_world(Evol(), optimizer, num_candidates=3, num_threads=1)
    record = result.compile_history[0]
    rates = {c.change: c.score.failure_rate for c in record.candidates}
    assert rates == {f"added rule: {NUMBERS}": 0.5, f"added rule: {QUESTION}": pytest.approx(2 / 6),
                     f"added rule: {INPUTS}": pytest.approx(1 / 6)}
    assert record.incumbent.failure_rate == 0.5
    assert result.method == f"{INITIAL_METHOD}\n\n{RULES_HEADING}\n- {INPUTS}"
    assert all(c.score.evaluated == 18 for c in record.candidates)


def test_a_method_as_bad_as_the_incumbent_on_other_items_does_not_win():
    tele, result = compile_world(Evol(), Optimizer([[NUMBERS]]), keep_unchanged=True)
    record = result.compile_history[0]
    assert record.candidates[0].score.failure_rate == record.incumbent.failure_rate == 0.5
    assert record.winner is None and result.method == INITIAL_METHOD


# ---------------------------------------------------------------------------------- proposals


def test_unusable_proposals_are_resampled_until_one_is_valid():
    # a format placeholder, no rule at all, a "rule" too short to be one, then a real rule
    optimizer = Optimizer([["Apply {improved_method} to the instruction."], [], ["Be"], [QUESTION]])
    tele, result = compile_world(Evol(), optimizer, proposal_attempts=4, proposal_mode="edit", keep_unchanged=True)
    candidate = result.compile_history[0].candidates[0]
    assert not candidate.invalid and candidate.attempts == 4
    assert "placeholder" in candidate.rejected[0]
    assert candidate.rejected[1:] == [NOTHING] * 2
    assert candidate.change == f"added rule: {QUESTION}"
    assert optimizer.edit_calls == 4  # every attempt reached the LM: a new rollout id, not the cache


def test_rewrite_proposals_identical_or_placeholder_are_resampled():
    better = INITIAL_METHOD + "\n\n" + INPUTS
    optimizer = Optimizer([INITIAL_METHOD, "{improved_method}", better])
    tele, result = compile_world(Evol(), optimizer, proposal_attempts=3, proposal_mode="rewrite")
    candidate = result.compile_history[0].candidates[0]
    assert candidate.candidate.method == better and candidate.attempts == 3
    assert "identical" in candidate.rejected[0] and "placeholder" in candidate.rejected[1]
    assert result.method == better


def test_a_proposal_copying_a_case_is_invalid():
    copied = f"{INITIAL_METHOD}\n\nAlways ask how many parts does item 4 need in the rewrite."
    cases = [TrajectoryCase(case_id="1", item_id="a", stages=["Task #4: how many parts does item 4 need?"])]
    problem = method_problem(copied, INITIAL_METHOD, cases)
    assert problem and "copies wording from case 1" in problem
    assert method_problem(INITIAL_METHOD + "\n\nKeep the task's numbers.", INITIAL_METHOD, cases) is None


def test_a_proposal_naming_the_details_of_one_case_is_invalid():
    # seen with Qwen2.5-Coder-1.5B on HumanEval: a case about brackets became a rule of the method
    cases = [TrajectoryCase(case_id=str(n), item_id=f"i{n}", stages=[text]) for n, text in enumerate([
        "def correct_bracketing(brackets: str):\n    Return True if the brackets are balanced.",
        "def find_max(words: list):\n    Return the word with the most unique characters.",
        "def add(x: int, y: int):\n    Return the sum of two numbers given as a list of examples."], start=1)]
    detail = f"{INITIAL_METHOD}\n\n{RULES_HEADING}\n- Add constraints to ensure that the brackets are balanced."
    problem = method_problem(detail, INITIAL_METHOD, cases)
    assert problem and "names details of case 1 (balanced, brackets)" in problem
    general = ["Keep every number and name of the original instruction.", "Keep the notes short: at most three sentences.",
               "Keep the function signature and the docstring examples of the original.",
               "Ask for the answer to return a list of examples.", "Never drop the input that follows the instruction."]
    for rule in general:  # words of no case, or of more than one case, or one case's word alone
        assert method_problem(f"{INITIAL_METHOD}\n\n{RULES_HEADING}\n- {rule}", INITIAL_METHOD, cases) is None, rule
    assert method_problem(detail, detail.replace("brackets", "inputs") , cases) is None  # the current method has it


def test_a_refused_proposal_is_shown_to_the_next_attempt_of_its_candidate():
    # seen with Qwen2.5-Coder-1.5B on Self-Instruct: resampled without the reason, it proposed the
    # same case-specific rule ("Add a detailed budget for Seattle, Washington.") three times
    cases = [TrajectoryCase(case_id=str(n), item_id=f"i{n}", stages=[text]) for n, text in enumerate([
        "def correct_bracketing(brackets: str):\n    Return True if the brackets are balanced.",
        "def find_max(words: list):\n    Return the word with the most unique characters."], start=1)]
    detail = "Add constraints to ensure that the brackets are balanced."
    contexts: list[str] = []

    def optimizer(request: ScriptedRequest) -> dict:
        if "trajectory" in request.user:
            return {"issues": json.dumps([]), "feedback": "Case 1 lost its brackets."}
        context = request.inputs.get("context", "")
        contexts.append(context)
        return edit_reply([INPUTS if "names details of case 1 (balanced, brackets)" in context else detail])

    proposer = MethodProposer(mode="edit", attempts=3, max_method_words=400, temperature=0.6, top_p=0.95, seed=0)
    with dspy.context(lm=scripted_lm(optimizer, role="optimizer", policy=CallPolicy(max_retries=0))):
        record = proposer.propose(1, Candidate(method=INITIAL_METHOD), cases, "unchanged 3 of 10 dev items", step=1)
    assert not record.invalid and record.attempts == 2 and record.change == f"added rule: {INPUTS}"
    assert "Refused proposals" not in contexts[0]
    assert "Refused proposals" in contexts[1] and "unchanged 3 of 10 dev items" in contexts[1]


def test_edits_add_rules_or_revise_a_step_and_respect_the_length_budget():
    method, _, problem = apply_edit(INITIAL_METHOD, Edit(rules=(NUMBERS,)), 400)
    assert problem is None and method.endswith(f"{RULES_HEADING}\n- {NUMBERS}")
    method, _, problem = apply_edit(method, Edit(rules=(QUESTION,)), 400)
    assert method.endswith(f"- {NUMBERS}\n- {QUESTION}")
    revised = "Step 3 - Rewrite: carry out the plan in one or two added sentences."
    changed, _, problem = apply_edit(method, Edit(revised_step=revised), 400)
    assert problem is None and revised in changed and "Step 3 - Rewrite: carry out the plan. The" not in changed
    assert apply_edit(method, Edit(revised_step="Step 9 - Extra: more."), 400).problem is not None
    assert apply_edit(method, Edit(rules=(NUMBERS,)), 400).problem == NOTHING
    budget = len(method.split()) + 3  # room for the new rule only if the oldest one goes
    shortened, _, problem = apply_edit(method, Edit(rules=(INPUTS,)), budget)
    assert problem is None and NUMBERS not in shortened and QUESTION in shortened and INPUTS in shortened


def test_a_revised_step_that_runs_on_into_the_next_steps_replaces_its_own_step_only():
    revised = ("Step 1 - Options: list ways to make it harder and keep every input line.\n\n"
               "Step 2 - Plan: choose several options from your list.\n\nStep 3 - Rewrite: carry it out.")
    changed, _, problem = apply_edit(INITIAL_METHOD, Edit(revised_step=revised), 400)
    assert problem is None and "keep every input line." in changed
    for label in ("Step 1 -", "Step 2 -", "Step 3 -", "Step 4 -"):
        assert changed.count(label) == 1, label
    assert "Step 2 - Plan: choose several options from your list that fit together" in changed


def test_a_revised_step_that_repeats_another_step_is_not_applied():
    # seen with Qwen2.5-Coder-1.5B: "revise Step 3" came back as Step 2's plan under Step 3's label
    copied = "Step 3 - Plan: choose several options from your list that fit together and write a short plan."
    changed, _, problem = apply_edit(INITIAL_METHOD, Edit(revised_step=copied), 400)
    assert changed == INITIAL_METHOD and problem and "repeats Step 2" in problem
    kept = "Step 3 - Rewrite: carry out the plan, keeping every input line of the task word for word."
    assert apply_edit(INITIAL_METHOD, Edit(revised_step=kept), 400).problem is None


def step_paragraph(method: str, label: str) -> str:
    return next(paragraph for paragraph in method.split("\n\n") if paragraph.startswith(label))


def test_a_rewrite_whose_step_repeats_another_step_is_resampled():
    step_2 = step_paragraph(INITIAL_METHOD, "Step 2 - ")
    repeated = INITIAL_METHOD.replace(step_paragraph(INITIAL_METHOD, "Step 3 - "),
                                      step_2.replace("Step 2 - Plan", "Step 3 - Rewrite", 1))
    better = INITIAL_METHOD + "\n\n" + INPUTS
    tele, result = compile_world(Evol(), Optimizer([repeated, better]), proposal_attempts=2, proposal_mode="rewrite")
    candidate = result.compile_history[0].candidates[0]
    assert "Step 3 repeats Step 2" in candidate.rejected[0]
    assert candidate.candidate.method == better and not candidate.invalid and result.method == better


def test_the_starting_methods_and_their_edits_have_no_repeated_step():
    for method in (INITIAL_METHOD, WEAK_METHOD):
        assert repeated_step(method) is None
        assert method_problem(f"{method}\n\n{RULES_HEADING}\n- {INPUTS}", method) is None
    revised = "Step 3 - Rewrite: carry out the plan, keeping every input line of the task word for word."
    assert method_problem(apply_edit(INITIAL_METHOD, Edit(revised_step=revised), 400).method, INITIAL_METHOD) is None


def test_repeated_steps_are_found_on_single_lines_and_a_repeat_already_there_is_not_held_against_a_proposal():
    lines = "Work in steps.\nStep 1: list the ways to make it harder.\nStep 2: list the ways to make it harder.\n"
    assert "Step 2 repeats Step 1" in method_problem(lines + "Step 3: rewrite it.", "Rewrite it in steps, please.")
    assert method_problem(lines + "Step 3: rewrite it, keeping its numbers.", lines + "Step 3: rewrite it.") is None


def test_an_edit_revises_a_step_of_a_method_written_one_step_per_line():
    lines = "Work in steps.\nStep 1: list the ways to make it harder.\nStep 2: rewrite it.\n\nKeep it short."
    revised = "Step 2: rewrite it, keeping every number of the task."
    changed, applied, problem = apply_edit(lines, Edit(revised_step=revised), 400)
    assert problem is None and applied.revised_step == revised
    assert changed == "Work in steps.\nStep 1: list the ways to make it harder.\n" + revised + "\n\nKeep it short."
    copied = "Step 2: list the ways to make it much harder."
    changed, applied, problem = apply_edit(lines, Edit(rules=(INPUTS,), revised_step=copied), 400)
    assert problem is None and applied == Edit(rules=(INPUTS,)) and changed == f"{lines}\n\n{RULES_HEADING}\n- {INPUTS}"


def test_a_revised_step_that_says_what_the_step_says_is_no_revision():
    step_3 = step_paragraph(INITIAL_METHOD, "Step 3 - ")
    respaced = "  " + step_3.replace(" ", "\n", 3).replace("carry", "Carry") + "\n"
    changed, _, problem = apply_edit(INITIAL_METHOD, Edit(revised_step=respaced), 400)
    assert changed == INITIAL_METHOD and "the revised Step 3 is the method's Step 3 unchanged" in problem
    changed, _, problem = apply_edit(INITIAL_METHOD, Edit(rules=(INPUTS,), revised_step=respaced), 400)
    assert problem is None and changed == f"{INITIAL_METHOD}\n\n{RULES_HEADING}\n- {INPUTS}"


def test_an_edit_is_described_by_what_it_changed():
    step_3 = step_paragraph(INITIAL_METHOD, "Step 3 - ")
    echoed = edit_reply(revised_step=step_3)
    with_rule = edit_reply([INPUTS], revised_step=step_3)
    tele, result = compile_world(Evol(), Optimizer([echoed, with_rule]), proposal_attempts=2, proposal_mode="edit")
    candidate = result.compile_history[0].candidates[0]
    assert "Step 3 is the method's Step 3 unchanged" in candidate.rejected[0]
    assert candidate.change == f"added rule: {INPUTS}" and "revised" not in candidate.change


def test_the_rules_of_an_edit_are_kept_when_its_revised_step_cannot_be_applied():
    # seen with Qwen2.5-Coder-1.5B on HumanEval: good rules beside a "revised step" without a step label
    unlabeled = edit_reply([INPUTS], revised_step="Rewrite the instruction as follows: keep it.")
    tele, result = compile_world(Evol(), Optimizer([unlabeled]), proposal_attempts=1, proposal_mode="edit",
                                 keep_unchanged=True)
    candidate = result.compile_history[0].candidates[0]
    assert not candidate.invalid and candidate.candidate.method == f"{INITIAL_METHOD}\n\n{RULES_HEADING}\n- {INPUTS}"
    assert candidate.change == f"added rule: {INPUTS}"
    alone = edit_reply(revised_step="Rewrite the instruction as follows: keep it.")
    tele, result = compile_world(Evol(), Optimizer([alone]), proposal_attempts=1, proposal_mode="edit",
                                 keep_unchanged=True)
    assert "does not start with a step label" in result.compile_history[0].candidates[0].invalid_reason


def test_a_rewrite_over_the_length_budget_is_invalid():
    long_method = INITIAL_METHOD + " Also" * 300
    tele, result = compile_world(Evol(), Optimizer([long_method]), proposal_mode="rewrite", proposal_attempts=1,
                                 max_method_words=300, keep_unchanged=True)
    candidate = result.compile_history[0].candidates[0]
    assert candidate.invalid and "over the budget of 300" in candidate.invalid_reason


def test_feedback_is_kept_when_the_issue_list_does_not_parse():
    garbage = "[[ ## issues ## ]]\nthe first case failed, badly\n\n[[ ## feedback ## ]]\nTell it to keep the question."
    optimizer = Optimizer([[QUESTION]], analysis=garbage)
    tele, result = compile_world(Evol(), optimizer, keep_unchanged=True)
    candidate = result.compile_history[0].candidates[0]
    assert candidate.issues_unparsed and "keep the question" in candidate.feedback
    assert not candidate.invalid


def test_the_analysis_sees_cases_rules_answers_and_earlier_tries():
    optimizer = Optimizer([[QUESTION], [INPUTS]])
    tele, result = compile_world(Evol(), optimizer, max_steps=2, patience=2, trajectory_answers=True,
                                 num_candidates=1)
    first, second = optimizer.analyses[0].inputs, optimizer.analyses[-1].inputs
    view = first["trajectory"]
    assert "{" not in view and '\\"' not in view  # plain text, not JSON
    assert re.search(r"^Case \d+: FAILED \(unchanged\): ", view, re.M) and "\nOriginal:\nTask #" in view
    assert "fails 9 of 18 items (by rule: unchanged 9)" in first["context"]
    assert f"step 1: added rule: {QUESTION}: 33%" in second["context"]


# ---------------------------------------------------------------------------------- found nothing


def test_a_compile_without_any_valid_candidate_raises_with_the_reasons():
    with pytest.raises(NoValidCandidate, match="identical to the current one") as caught:
        compile_world(Evol(), Optimizer([INITIAL_METHOD]), proposal_mode="rewrite", max_steps=2, patience=1)
    assert caught.value.evolver.method == INITIAL_METHOD
    assert len(caught.value.evolver.compile_history) == 2  # steps without a valid candidate do not count


def test_a_compile_whose_candidates_never_win_raises_no_improvement():
    with pytest.raises(NoImprovement, match="beat the starting method"):
        compile_world(Evol(), Optimizer([[NUMBERS]]))


def test_a_step_without_a_valid_candidate_does_not_use_up_patience():
    optimizer = Optimizer([[], [], [INPUTS]])
    tele, result = compile_world(Evol(), optimizer, proposal_mode="edit", proposal_attempts=1, max_steps=3,
                                 patience=1)
    history = result.compile_history
    assert [record.valid_candidates for record in history] == [0, 0, 1]
    assert result.method.endswith(INPUTS)


# ---------------------------------------------------------------------------------- LM faults


def test_a_permanent_optimizer_error_stops_the_compile_at_once():
    optimizer = Optimizer([LMAuthError("invalid api key", model="openai/scripted")])
    with pytest.raises(LMAuthError):
        compile_world(Evol(), optimizer, num_candidates=3, proposal_attempts=3, max_steps=3)
    # one call and DSPy's JSON-adapter fallback, plus at most one candidate the worker had already
    # started; without the stop there would be 3 attempts x 3 candidates x 3 steps
    assert optimizer.edit_calls <= 4


def test_dev_items_that_keep_erroring_are_left_out_of_every_methods_rate():
    tele, result = compile_world(Evol(broken=frozenset({5, 11})), Optimizer([[INPUTS]]))
    record = result.compile_history[0]
    dev = tele.split(TRAIN, DEV).dev
    broken = sorted(index for index, item in enumerate(dev) if item.text.startswith(("Task #5:", "Task #11:")))
    assert record.excluded_items == broken
    assert record.candidates[0].score.evaluated == record.incumbent.evaluated == 18 - len(broken)
    assert "lm_error" not in record.incumbent.by_rule


# ---------------------------------------------------------------------------------- the answer role


def test_the_evol_lm_answers_as_a_plain_chat_message():
    evol = Evol()
    compile_world(evol, Optimizer([[INPUTS]]))
    assert evol.answer_requests
    request = evol.answer_requests[0]
    assert request.system == "" and "[[ ##" not in request.user
    assert request.user.endswith("Give the count per part and justify it.")


def test_answers_for_failure_detection_can_be_capped_and_evolutions_are_not():
    evol = Evol()
    tele, _ = compile_world(evol, Optimizer([[INPUTS]]), answer_max_tokens=120)
    assert evol.answer_requests and {r.max_tokens for r in evol.answer_requests} == {120}
    assert tele.hyperparameters()["answer_max_tokens"] == 120


def test_the_judge_records_its_verdict_as_a_named_rule_with_its_reason():
    def judge(request: ScriptedRequest) -> dict[str, str]:
        lost = "item 3 " in request.inputs["original_instruction"]
        return {"verdict": "lost_task" if lost else "harder", "reason": "it no longer asks for a count"}

    detector = FailureDetector(judge_lm=scripted_lm(judge, role="judge"))
    verdict = detector.detect("Task #3: how many parts does item 3 need?",
                              "Task #3: how many parts does item 3 need? Justify it.", "It needs four parts.")
    assert verdict.failed and verdict.rule == "judge_lost_task" and verdict.reason == "it no longer asks for a count"
    assert not detector.detect("Task #2: how many parts does item 2 need?",
                               "Task #2: how many parts does item 2 need? Justify it.", "Four.").failed
    assert "judge" in detector.rule_names and "judge" not in FailureDetector(
        judge_lm=scripted_lm(judge, role="judge"), disable=["judge"]).rule_names


def test_an_evolution_cut_off_before_its_fields_is_truncated_not_unparseable():
    from autoevol.metrics.rate import evaluate_item
    from autoevol.testing.scripted import Truncated

    lm = scripted_lm(lambda request: Truncated("[[ ## working_notes ## ]]\nStep 1: the options are"), role="evol")
    with dspy.context(lm=lm):
        outcome = evaluate_item("Task #1: how many parts does item 1 need?", Evolver())
    assert outcome.verdict.rule == "truncated" and "token limit" in outcome.verdict.reason


def test_a_rejected_proposal_never_records_the_current_method_as_its_own():
    """An edit that cannot be applied leaves the method as it was: the candidate has no method."""
    optimizer = Optimizer([[], [], []])  # three edits that add nothing
    with pytest.raises(NoValidCandidate) as caught:
        compile_world(Evol(), optimizer, proposal_mode="edit", proposal_attempts=3)
    candidate = caught.value.evolver.compile_history[0].candidates[0]
    assert candidate.invalid and candidate.attempts == 3 and candidate.candidate is None
    rewrite = Optimizer([INITIAL_METHOD])
    with pytest.raises(NoValidCandidate) as caught:
        compile_world(Evol(), rewrite, proposal_mode="rewrite", proposal_attempts=2)
    assert caught.value.evolver.compile_history[0].candidates[0].candidate is None
