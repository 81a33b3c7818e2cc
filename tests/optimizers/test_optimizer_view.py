"""What a small optimizer LM reads: the trajectory as plain text blocks with the failed cases first,
a short issue taxonomy, and, for the proposal, the dev failures by rule and the word budget."""

from __future__ import annotations

import re
import threading

import dspy
import pytest

from autoevol.lm import ManagedLM, RoutingAdapter
from autoevol.metrics.failure import FailureDetector
from autoevol.optimizers import AutoEvolInstruct
from autoevol.optimizers.auto_evol.evaluation import EvolRole, Item, evolve_trajectory
from autoevol.optimizers.auto_evol.records import TrajectoryCase
from autoevol.optimizers.auto_evol.proposal import DEFAULT_MAX_METHOD_WORDS, trajectory_view
from autoevol.signatures.analyze import ISSUE_CATEGORIES, AnalyzeTrajectory, TrajectoryIssue, normalize_category
from autoevol.programs.demonstration import Candidate
from autoevol.signatures.evolve import INITIAL_METHOD
from autoevol.testing.fake_openai import FakeOpenAIServer
from autoevol.testing.scripted import ScriptedRequest
from tests.optimizers.test_small_lm_compile import INPUTS, QUESTION, Evol, Optimizer, compile_world

CODE = 'def add(x: int, y: int) -> int:\n    """Return x + y.\n\n    >>> add(2, 3)\n    5\n    """'

CASES = [
    TrajectoryCase(case_id="1", item_id="a", stages=["Add 2 and 3.", "Add 2 and 3, then double it."],
                   notes=["options: double"], answer="It is 10.", verdict="passed"),
    TrajectoryCase(case_id="2", item_id="b", stages=[CODE, CODE], notes=["nothing to add"], failed=True,
                   rule="unchanged", verdict="failed (unchanged): the rewrite is the original"),
    TrajectoryCase(case_id="3", item_id="c", stages=["Name a color.", "Name two colors and say why."],
                   verdict="passed"),
    TrajectoryCase(case_id="4", item_id="d", stages=["Sort the list [3, 1, 2]."], notes=["Step 1: " + "x " * 400],
                   failed=True, rule="truncated", verdict="failed (truncated): the reply was cut off"),
    TrajectoryCase(case_id="5", item_id="e", stages=["Count to 3.", "Count to 3 in French."],
                   answer="Sure, could you tell me more?", failed=True, rule="judge_lost_task",
                   verdict="failed (judge_lost_task): it asks something else"),
]


def test_the_trajectory_is_plain_text_blocks_with_the_failed_cases_first():
    view = trajectory_view(CASES)
    blocks = view.split("\n\n", 1)
    assert blocks[0] == "3 of 5 cases failed: cases 2, 4, 5."
    headers = re.findall(r"^Case (\d+): (FAILED|passed)", view, re.M)
    assert headers == [("2", "FAILED"), ("4", "FAILED"), ("5", "FAILED"), ("1", "passed"), ("3", "passed")]
    # code is shown as it is: no JSON quoting or escaped newlines
    assert f"Original:\n{CODE}\nRewrite: (the same text as the original)" in view
    assert "\\n" not in view and '\\"' not in view


def test_a_case_block_shows_what_explains_its_verdict():
    assert CASES[0].for_analysis() == "Case 1: passed\nOriginal:\nAdd 2 and 3.\nRewrite:\nAdd 2 and 3, then double it."
    assert CASES[4].for_analysis() == ("Case 5: FAILED (judge_lost_task): it asks something else\nOriginal:\nCount to 3."
                                       "\nRewrite:\nCount to 3 in French.\nAnswer to the rewrite (start):\n"
                                       "Sure, could you tell me more?")
    truncated = CASES[3].for_analysis()  # no rewrite: the start of the working notes, shortened
    assert "Rewrite: (none)\nWorking notes (start):\nStep 1: x x" in truncated and truncated.endswith(" [...]")
    assert len(truncated) < 600
    rounds = TrajectoryCase(case_id="6", item_id="f", stages=["A.", "A b.", "A b c."], verdict="passed")
    assert rounds.for_analysis().endswith("Original:\nA.\nRewrite 1:\nA b.\nRewrite 2:\nA b c.")


def test_a_rewrite_identical_to_the_text_before_it_is_said_to_be_so_and_the_notes_show_why():
    assert CASES[1].for_analysis() == (f"Case 2: FAILED (unchanged): the rewrite is the original\nOriginal:\n{CODE}\n"
                                       "Rewrite: (the same text as the original)\n"
                                       "Working notes (start):\nnothing to add")
    rounds = TrajectoryCase(case_id="7", item_id="g", stages=["A.", "A b.", " A b.\n"], notes=["n1", "n2"],
                            failed=True, rule="unchanged", verdict="failed (unchanged): same")
    assert rounds.for_analysis().endswith("Rewrite 1:\nA b.\nRewrite 2: (the same text as rewrite 1)\n"
                                          "Working notes (start):\nn2")
    passed = CASES[0].for_analysis()
    assert "options: double" not in passed  # a passed case: its rewrite alone


@pytest.mark.parametrize(("notes_length", "limit", "said"), [(675, 675, True), (668, 675, True), (600, 675, False),
                                                             (675, None, False)])
def test_notes_cut_off_at_their_limit_are_said_to_be(notes_length, limit, said):
    case = TrajectoryCase(case_id="8", item_id="h", stages=[CODE, CODE], notes=["p" * notes_length + "\n"],
                          notes_limit=limit, failed=True, rule="unchanged", verdict="failed (unchanged): same")
    view = case.for_analysis()
    assert ("(The working notes reached their limit of 675 characters and were cut off there.)" in view) is said
    assert ("cut off" in view) is said
    recorded = case.model_dump(mode="json")  # a record names the limit only when there was one
    assert ("notes_limit" in recorded) is (limit is not None) and TrajectoryCase.model_validate(recorded) == case


def test_a_compile_trajectory_knows_the_limit_of_the_evol_lms_notes():
    long_notes = "Options: " + "add a constraint, " * 60

    def respond(messages: list[dict], body: dict) -> str:
        original = messages[-1]["content"].split("[[ ## instruction ## ]]\n", 1)[1].split("\n\n", 1)[0]
        return f"[[ ## working_notes ## ]]\n{long_notes[:675]}\n\n[[ ## evolved_instruction ## ]]\n{original}" \
               "\n\n[[ ## completed ## ]]"

    with FakeOpenAIServer(responder=respond) as server:
        lm = ManagedLM("hosted_vllm/fake", api_base=server.url, api_key="x", structured_output="json_object",
                       marked_text=True, max_tokens=450)
        role = EvolRole(evol_lm=lm, detector=FailureDetector(), num_threads=1)
        with dspy.context(adapter=RoutingAdapter()):
            [case] = evolve_trajectory(role, Candidate(method=INITIAL_METHOD), [Item("a", "Sort the list.")], 1,
                                       answers=False)
    assert case.notes_limit == 675 and case.rule == "unchanged"
    assert "reached their limit of 675 characters" in case.for_analysis()


def test_the_analysis_of_a_compile_reads_the_failed_cases_first():
    optimizer = Optimizer([[INPUTS]])
    compile_world(Evol(), optimizer, batch_size=6)
    view = optimizer.analyses[0].inputs["trajectory"]
    statuses = re.findall(r"^Case \d+: (FAILED|passed)", view, re.M)
    assert len(statuses) == 6 and "FAILED" in statuses and "passed" in statuses
    assert statuses == sorted(statuses)  # every FAILED before every passed
    assert view.startswith(f"{statuses.count('FAILED')} of 6 cases failed: cases ")


def test_the_analysis_is_told_what_each_part_of_a_case_block_is():
    told = " ".join(AnalyzeTrajectory.instructions.split()).casefold()
    shown = {"FAILED": "failed", "Original:": "original instruction", "Rewrite:": "rewrite",
             "Working notes (start):": "working notes", "reached their limit": "cut off at their limit",
             "Answer to the rewrite (start):": "answer"}
    view = trajectory_view(CASES + [TrajectoryCase(case_id="9", item_id="i", stages=[CODE, CODE], notes=["n" * 675],
                                                   notes_limit=675, failed=True, rule="unchanged",
                                                   verdict="failed (unchanged): same")])
    for label, words in shown.items():
        assert label in view and words in told, label


def test_the_issue_taxonomy_is_short_and_reads_the_older_categories():
    assert len(ISSUE_CATEGORIES) == 7 and ISSUE_CATEGORIES[-1] == "other"
    older = {"no_progression": "not_harder", "unimproved_complexity": "not_harder", "unclear": "flawed",
             "wrong_or_unrealistic": "flawed", "unsolvable": "flawed", "contradictory": "flawed",
             "unrelated": "task_changed", "unsupported_complexity": "irrelevant_complexity",
             "complexity_decreased": "complexity_decreased", "answered_instead": "answered_instead",
             "Lost information": "complexity_decreased", "nonsense": "other"}
    for name, category in older.items():
        assert normalize_category(name) == category, name
    assert TrajectoryIssue(case_id=3, category="Unclear or incoherent", reason="r").category == "flawed"
    named = re.findall(r"\b([a-z]+(?:_[a-z]+)*) \(", AnalyzeTrajectory.instructions)  # "name (what it means)"
    assert set(ISSUE_CATEGORIES) - {"other"} == set(named) and "other" in AnalyzeTrajectory.instructions


class RecordingOptimizer(Optimizer):
    """The scripted optimizer of the small-LM world, keeping every proposal request."""

    def __init__(self, edits, **kwargs) -> None:
        super().__init__(edits, **kwargs)
        self.proposals: list[ScriptedRequest] = []
        self._seen = threading.Lock()

    def __call__(self, request: ScriptedRequest):
        if "trajectory" not in request.user:
            with self._seen:
                self.proposals.append(request)
        return super().__call__(request)


def test_the_edit_proposal_receives_the_dev_failures_by_rule_and_the_budget():
    optimizer = RecordingOptimizer([[QUESTION], [INPUTS]])
    compile_world(Evol(), optimizer, max_steps=2, patience=2)
    first, second = optimizer.proposals[0], optimizer.proposals[-1]
    assert "new_rules" in first.outputs and "old_sentence" in first.outputs
    assert first.inputs["context"].startswith("On the development set the current method fails 9 of 18 items "
                                              "(by rule: unchanged 9).")
    words = len(INITIAL_METHOD.split())
    assert f"The method has {words} words; its budget is {DEFAULT_MAX_METHOD_WORDS} words" in first.inputs["context"]
    assert f"step 1: added rule: {QUESTION}: 33%" in second.inputs["context"]
    assert "by rule: unchanged 6" in second.inputs["context"]


def test_a_rewrite_proposal_receives_the_context_too():
    optimizer = RecordingOptimizer([INITIAL_METHOD + "\n\n" + INPUTS])
    compile_world(Evol(), optimizer, proposal_mode="rewrite")
    assert "by rule: unchanged 9" in optimizer.proposals[0].inputs["context"]


def test_the_default_budget_leaves_e0_room_for_a_few_rules_only():
    assert AutoEvolInstruct(optimizer_lm=None).settings.max_method_words == DEFAULT_MAX_METHOD_WORDS  # type: ignore[arg-type]
    room = DEFAULT_MAX_METHOD_WORDS - len(INITIAL_METHOD.split())
    assert 40 <= room <= 100  # about four to seven one-sentence rules
