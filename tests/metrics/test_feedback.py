"""EvolutionFeedback on scripted verdicts: the score, the feedback text, LM errors, and use with dspy.Evaluate."""

from __future__ import annotations

import dspy
import pytest
from dspy.utils.exceptions import LMAuthError

from autoevol.lm import CallPolicy
from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.feedback import EvolutionFeedback
from autoevol.testing.scripted import ScriptedRequest, scripted_lm

ORIGINAL = "A shop sells 12 apples a day. How many apples does it sell in a week?"
HARDER = "A shop sells 12 apples a day and twice as many on Sundays. How many apples does it sell in a week?"
GOOD_ANSWER = "On six days it sells 72 apples and 24 on Sunday, so 96 apples in a week."


def gold(instruction: str = ORIGINAL) -> dspy.Example:
    return dspy.Example(instruction=instruction).with_inputs("instruction")


def answering(reply: str | Exception):
    """An evol LM whose chat answer is ``reply`` (or raises it)."""
    def script(request: ScriptedRequest) -> dict[str, str]:
        if isinstance(reply, Exception):
            raise reply
        return {"answer": reply}

    return scripted_lm(script, policy=CallPolicy(max_retries=0))


def test_a_passing_evolution_scores_1_and_quotes_the_rewrite_and_the_answer():
    lm = answering(GOOD_ANSWER)
    result = EvolutionFeedback(evol_lm=lm)(gold(), dspy.Prediction(evolved_instruction=HARDER))
    assert result.score == 1.0 and not result.failed and result.rule is None
    assert result.feedback.startswith("Success")
    assert f'Rewrite: "{HARDER}"' in result.feedback and GOOD_ANSWER in result.feedback


def test_a_cheap_rule_on_the_rewrite_scores_0_without_answering():
    lm = answering(GOOD_ANSWER)
    result = EvolutionFeedback(evol_lm=lm)(gold(), dspy.Prediction(evolved_instruction=ORIGINAL))
    assert result.score == 0.0 and result.rule == "unchanged"
    assert result.feedback.startswith("Failure (unchanged)") and "identical to its parent" in result.feedback
    assert "not answered" in result.feedback and lm.engine.calls == 0


def test_a_response_rule_names_the_rule_its_reason_and_the_answer():
    asking = "Sure! Could you tell me which shop you mean and on which days it is open?"
    result = EvolutionFeedback(evol_lm=answering(asking))(gold(), dspy.Prediction(evolved_instruction=HARDER))
    assert result.score == 0.0 and result.rule == "insufficient_qualification"
    first_line = result.feedback.splitlines()[0]
    assert first_line.startswith("Failure (insufficient_qualification)") and ": " in first_line
    assert asking in result.feedback and HARDER in result.feedback


def test_the_judge_verdict_is_the_feedback_when_the_detector_has_a_judge():
    def judge(request: ScriptedRequest) -> dict[str, str]:
        return {"verdict": "lost_task", "reason": "the rewrite no longer asks for the weekly total"}

    detector = FailureDetector(judge_lm=scripted_lm(judge, role="judge"))
    metric = EvolutionFeedback(detector=detector, evol_lm=answering(GOOD_ANSWER))
    result = metric(gold(), dspy.Prediction(evolved_instruction=HARDER))
    assert result.score == 0.0 and result.rule == "judge_lost_task"
    assert "no longer asks for the weekly total" in result.feedback


def test_the_same_prediction_is_judged_once():
    lm = answering(GOOD_ANSWER)
    metric = EvolutionFeedback(evol_lm=lm)
    prediction = dspy.Prediction(evolved_instruction=HARDER)
    first = metric(gold(), prediction)
    calls = lm.engine.calls
    again = metric(gold(), prediction, None, "evolve", [])  # GEPA's feedback call, five arguments
    assert again.score == first.score and again.feedback == first.feedback and lm.engine.calls == calls


def test_a_prediction_without_the_field_fails_as_unparseable():
    result = EvolutionFeedback()(gold(), dspy.Prediction(working_notes="only notes"))
    assert result.score == 0.0 and result.rule == "unparseable"


def test_a_transient_lm_error_fails_the_item_and_a_permanent_one_raises():
    transient = EvolutionFeedback(evol_lm=answering(RuntimeError("connection reset")))
    result = transient(gold(), dspy.Prediction(evolved_instruction=HARDER))
    assert result.score == 0.0 and result.rule == "lm_error" and "connection reset" in result.feedback
    permanent = EvolutionFeedback(evol_lm=answering(LMAuthError("invalid api key", model="openai/scripted")))
    with pytest.raises(LMAuthError):
        permanent(gold(), dspy.Prediction(evolved_instruction=HARDER))


def test_it_works_as_a_plain_metric_with_dspy_evaluate():
    class Fixed(dspy.Module):
        def forward(self, instruction: str) -> dspy.Prediction:
            return dspy.Prediction(evolved_instruction=HARDER if "apples" in instruction else instruction)

    lm = answering(GOOD_ANSWER)
    devset = [gold(), gold("Name a colour.")]
    with dspy.context(lm=lm):
        result = dspy.Evaluate(devset=devset, metric=EvolutionFeedback(), num_threads=1)(Fixed())
    assert result.score == 50.0
