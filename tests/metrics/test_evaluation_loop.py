"""One evaluation path: ``evaluate_items`` serves the comparison, the dev set, GEPA's rescoring and
``bootstrap_demos``, so a fault of the detector or an LM error is handled the same way in each."""

from __future__ import annotations

import threading

import dspy
import pytest
from dspy.utils.exceptions import LMAuthError

from autoevol.lm import CallPolicy
from autoevol.metrics.compare import compare_evolvers
from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.rate import evaluate_items, failure_rate
from autoevol.optimizers.auto_evol.demos import bootstrap_demos
from autoevol.programs.evolver import Evolver
from autoevol.records import LM_ERROR, Verdict
from autoevol.testing.scripted import ScriptedRequest, scripted_lm

ITEMS = [f"Pack {n} boxes of {2 * n + 3} cups each onto a pallet and count every cup." for n in range(12)]
GOOD_ANSWER = ("Each box holds the same number of cups, so multiply the boxes by the cups per box; for "
               "example 4 boxes of 11 cups give 44 cups, checked by adding 11 four times.")


def script(request: ScriptedRequest) -> dict[str, str]:
    if "evolved_instruction" in request.outputs:
        return {"working_notes": "add a worked check",
                "evolved_instruction": request.inputs["instruction"] + " Show the multiplication and check it "
                                                                       "by repeated addition."}
    return {"answer": GOOD_ANSWER}


class JudgeWithFaults(FailureDetector):
    """The cheap rules, plus a judge whose endpoint drops the connection on some originals."""

    def __init__(self, broken: set[str]) -> None:
        super().__init__()
        self.broken = broken

    def detect(self, original: str, evolved: str, response: str | None) -> Verdict:
        if original in self.broken:
            raise RuntimeError("the judge's endpoint dropped the connection")
        return super().detect(original, evolved, response)


def test_a_detector_fault_fails_its_item_alone_and_compare_leaves_it_out() -> None:
    lm = scripted_lm(script, cache=False)
    detector = JudgeWithFaults({ITEMS[2], ITEMS[7]})
    with dspy.context(lm=lm):
        rate = failure_rate(Evolver(), ITEMS, detector=detector, num_threads=2)
        result = compare_evolvers({"e_0": Evolver(), "again": Evolver()}, ITEMS, detector=detector, quality=False)
    assert [o.verdict.rule for o in rate.outcomes].count(LM_ERROR) == 2
    assert rate.outcomes[2].verdict.rule == rate.outcomes[7].verdict.rule == LM_ERROR
    assert "dropped the connection" in rate.outcomes[2].verdict.reason
    assert rate.failed == 2 and rate.total == len(ITEMS)  # the rate itself counts what it saw
    assert [item.index for item in result.left_out] == [2, 7]
    assert result.items == len(ITEMS) - 2 and result.rates["e_0"].failed == 0


def test_an_item_that_ends_in_an_lm_error_is_tried_again_up_to_its_tries() -> None:
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def first_call_fails(request: ScriptedRequest) -> dict[str, str]:
        if "evolved_instruction" in request.outputs:
            with lock:
                seen[request.inputs["instruction"]] = seen.get(request.inputs["instruction"], 0) + 1
                first = seen[request.inputs["instruction"]] == 1
            if first and request.inputs["instruction"] in ITEMS[:3]:
                raise RuntimeError("the endpoint dropped the connection")
        return script(request)

    lm = scripted_lm(first_call_fails, cache=False, policy=CallPolicy(max_retries=0))
    tasks = [(Evolver(), text) for text in ITEMS[:6]]
    with dspy.context(lm=lm):
        once = evaluate_items(tasks, num_threads=2)
        seen.clear()
        twice = evaluate_items(tasks, num_threads=2, tries=2)
    assert [o.verdict.rule for o in once] == [LM_ERROR] * 3 + [None] * 3
    assert [o.verdict.failed for o in twice] == [False] * 6
    assert [seen[text] for text in ITEMS[:6]] == [2, 2, 2, 1, 1, 1]


def test_outcomes_keep_the_order_of_the_tasks_across_programs() -> None:
    def by_method(request: ScriptedRequest) -> dict[str, str]:
        if "evolved_instruction" in request.outputs:
            tag = "[A]" if "Method A" in request.instructions else "[B]"
            return {"working_notes": "n", "evolved_instruction": f"{request.inputs['instruction']} {tag} Show the "
                                                                  f"multiplication and check it by addition."}
        return {"answer": GOOD_ANSWER}

    first, second = Evolver("Method A: rewrite it harder."), Evolver("Method B: rewrite it harder.")
    tasks = [(first if n % 2 else second, text) for n, text in enumerate(ITEMS)]
    with dspy.context(lm=scripted_lm(by_method, cache=False)):
        outcomes = evaluate_items(tasks, num_threads=2)
    assert [o.original for o in outcomes] == ITEMS
    assert [("[A]" in (o.evolved or "")) for o in outcomes] == [bool(n % 2) for n in range(len(ITEMS))]


def test_bootstrap_demos_skips_an_item_the_detector_could_not_judge() -> None:
    with dspy.context(lm=scripted_lm(script, cache=False)):
        demos = bootstrap_demos(Evolver(), ITEMS[:6], 3, detector=JudgeWithFaults({ITEMS[0]}), num_threads=2)
    assert [demo.instruction for demo in demos] == ITEMS[1:4]
    assert all(demo.origin == "observed" and demo.evolved_instruction.startswith(demo.instruction) for demo in demos)


def test_a_permanent_error_of_the_detector_stops_the_loop() -> None:
    class BadKey(FailureDetector):
        def detect(self, original: str, evolved: str, response: str | None) -> Verdict:
            raise LMAuthError("invalid api key")

    with dspy.context(lm=scripted_lm(script, cache=False)), pytest.raises(LMAuthError, match="invalid api key"):
        evaluate_items([(Evolver(), text) for text in ITEMS[:4]], detector=BadKey())
