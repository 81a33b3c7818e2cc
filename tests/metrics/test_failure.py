"""Failure detection: every rule fires on a bad case and stays quiet on a good one; the detector's
ordering and configuration; the information-gain judge with a scripted DSPy engine."""

from __future__ import annotations

import logging

import dspy
import pytest
from dspy.lm15 import Message, Response, TextPart, Usage

from autoevol.lm.policy import BudgetExceeded
from autoevol.metrics.failure import (
    BUILTIN_RULES,
    DEFAULT_RULES,
    EQUAL,
    EqualityJudge,
    FailureDetector,
    FailureRule,
    FunctionRule,
    rule,
)
from autoevol.records import JUDGE_ABSTAINED, Verdict

PARENT = "Plan a weekend trip to Lisbon for two people."
GOOD_EVOLVED = ("Plan a three-day trip to Lisbon for two vegetarians on a budget of 600 euros, "
                "with one day outside the city.")
GOOD_ANSWER = ("Day 1: walk through Alfama and eat at a vegetarian tasca. Day 2: take the train to "
               "Sintra. Day 3: visit Belem. The total stays near 550 euros.")


# ------------------------------------------------------------------------------------------
# Every rule alone: (rule, original, evolved, response, should it fire?)
# ------------------------------------------------------------------------------------------

CASES = [
    # empty_evolution
    ("empty_evolution", PARENT, "   \n\t", GOOD_ANSWER, True),
    ("empty_evolution", PARENT, "", GOOD_ANSWER, True),
    ("empty_evolution", PARENT, GOOD_EVOLVED, GOOD_ANSWER, False),
    # unchanged
    ("unchanged", PARENT, "  plan a WEEKEND trip to lisbon\nfor two people. ", GOOD_ANSWER, True),
    ("unchanged", PARENT, GOOD_EVOLVED, GOOD_ANSWER, False),
    # prompt_leak
    ("prompt_leak", PARENT, "#Rewritten Prompt#: plan a trip to Lisbon for two vegans.", GOOD_ANSWER, True),
    ("prompt_leak", PARENT, "Based on the given prompt, plan a trip to Lisbon for two vegans.", GOOD_ANSWER, True),
    ("prompt_leak", PARENT, "Step 1: list ways to complicate it. Plan a trip to Lisbon.", GOOD_ANSWER, True),
    ("prompt_leak", PARENT, "Working notes: none. Plan a trip to Lisbon for two vegans.", GOOD_ANSWER, True),
    ("prompt_leak", PARENT, "#FINALLY REWRITTEN INSTRUCTION# Plan a trip to Lisbon in May.", GOOD_ANSWER, True),
    ("prompt_leak", PARENT, GOOD_EVOLVED, GOOD_ANSWER, False),
    ("prompt_leak", "Explain C# to a Java developer.",
     "Explain C# and F# to a Java developer, comparing their type systems.", GOOD_ANSWER, False),
    ("prompt_leak", "Improve the given prompt: 'draw a cat'.",
     "Improve the given prompt 'draw a cat' so it names a style and a mood.", GOOD_ANSWER, False),
    ("prompt_leak", PARENT, "Plan a trip to Lisbon in 10 steps: step 10 is the flight home.", GOOD_ANSWER, False),
    # truncated
    ("truncated", PARENT, "Plan a three-day trip to Lisbon for two people and", GOOD_ANSWER, True),
    ("truncated", PARENT, "Plan a three-day trip to Lisbon, including a visit to the", GOOD_ANSWER, True),
    ("truncated", PARENT, "Plan a three-day trip to Lisbon for two people, with a budget of", GOOD_ANSWER, True),
    ("truncated", PARENT, "Plan a three-day trip to Lisbon for two people,", GOOD_ANSWER, True),
    ("truncated", PARENT, "Plan a trip to Lisbon (three days, two people, budget", GOOD_ANSWER, True),
    ("truncated", "Fix this code: print(1)", "Fix this code and explain the bug:\n```python\nprint(1", GOOD_ANSWER, True),
    ("truncated", "Write a haiku", "Write a haiku about rain", GOOD_ANSWER, False),
    ("truncated", PARENT, GOOD_EVOLVED, GOOD_ANSWER, False),
    ("truncated", "What is it made of?", "What is this old Lisbon tile really made of", GOOD_ANSWER, False),
    ("truncated", PARENT, "Suggest three quiet places in Lisbon for two people to talk about", GOOD_ANSWER, False),
    ("truncated", "Write code", "Write a function f(x) that returns x squared:\n```python\ndef f(x):\n```",
     GOOD_ANSWER, False),
    ("truncated", "Balance '(('", "Write balanced(s) so that balanced('((') is False and balanced('()') is True",
     GOOD_ANSWER, False),
    ("truncated", "Describe Plan A", "Describe the risks of Plan A", GOOD_ANSWER, False),
    # answers_instead
    ("answers_instead", PARENT, "Sure! Day 1: Alfama. Day 2: Sintra.", GOOD_ANSWER, True),
    ("answers_instead", PARENT, "Certainly, here is a plan for Lisbon.", GOOD_ANSWER, True),
    ("answers_instead", PARENT, "Here's a plan: day 1 in Alfama, day 2 in Sintra.", GOOD_ANSWER, True),
    ("answers_instead", "What is 7 times 6?", "The answer is 42.", GOOD_ANSWER, True),
    ("answers_instead", "What is 7 times 6?", "Answer: 42", GOOD_ANSWER, True),
    ("answers_instead", PARENT, "Day one. " + "Walk along the river and eat well. " * 30, GOOD_ANSWER, True),
    ("answers_instead", PARENT, GOOD_EVOLVED, GOOD_ANSWER, False),
    ("answers_instead", PARENT, "Here is a list of five museums in Lisbon: A, B, C, D, E. Choose two for a "
     "weekend trip and explain why.", GOOD_ANSWER, False),
    ("answers_instead", PARENT, "Make sure the plan for a trip to Lisbon fits two people and 600 euros.",
     GOOD_ANSWER, False),
    ("answers_instead", "Write an essay of " + "many " * 60 + "words.", "Write an essay of " + "many " * 200
     + "words.", GOOD_ANSWER, False),
    # complexity_decreased
    ("complexity_decreased", PARENT, "Plan a Lisbon trip.", GOOD_ANSWER, True),
    ("complexity_decreased",
     'def add(a, b):\n    """Return the sum of a and b.\n    >>> add(1, 2)\n    3\n    """',
     "Write add(a, b) returning a + b.", GOOD_ANSWER, True),
    ("complexity_decreased", PARENT, GOOD_EVOLVED, GOOD_ANSWER, False),
    ("complexity_decreased", "Plan a trip.", "Trip plan.", GOOD_ANSWER, False),
    # lost_question
    ("lost_question", "Tom has 3 apples and buys 5 more. How many apples does he have now?",
     "Tom has 3 apples, buys 5 more at the market and gives 2 of them away to his sister later on.",
     GOOD_ANSWER, True),
    ("lost_question", "Tom has 3 apples and buys 5 more. How many apples does he have now?",
     "Tom has 3 apples, buys 5 more and gives 2 away. How many apples does he keep?", GOOD_ANSWER, False),
    ("lost_question", "Tom has 3 apples and buys 5 more. How many apples does he have now?",
     "Tom has 3 apples, buys 5 more and gives 2 away. Determine the number he keeps.", GOOD_ANSWER, False),
    ("lost_question", PARENT, "Lisbon is lovely in spring for two people who like walking.", GOOD_ANSWER, False),
    # empty_response
    ("empty_response", PARENT, GOOD_EVOLVED, None, True),
    ("empty_response", PARENT, GOOD_EVOLVED, " \n ", True),
    ("empty_response", PARENT, GOOD_EVOLVED, GOOD_ANSWER, False),
    # stagnant_complexity
    ("stagnant_complexity", PARENT, GOOD_EVOLVED, "Understood. Which month do you plan to travel?", True),
    ("stagnant_complexity", PARENT, GOOD_EVOLVED, "Thank you for the details! Anything else to add?", True),
    ("stagnant_complexity", PARENT, GOOD_EVOLVED, "What kind of food do you like?", True),
    ("stagnant_complexity", PARENT, GOOD_EVOLVED, "I\u2019m sorry, do you mean Lisbon, Ohio?", True),
    ("stagnant_complexity", PARENT, GOOD_EVOLVED, "As an AI assistant, may I ask your budget?", True),
    ("stagnant_complexity", PARENT, GOOD_EVOLVED, "Understood. Day 1: Alfama. Day 2: Sintra.", False),
    ("stagnant_complexity", PARENT, GOOD_EVOLVED, "Whatever you choose, is Sintra worth it?", False),
    ("stagnant_complexity", PARENT, GOOD_EVOLVED, GOOD_ANSWER, False),
    # insufficient_qualification
    ("insufficient_qualification", PARENT, GOOD_EVOLVED, "Sure, could you tell me your travel dates?", True),
    ("insufficient_qualification", PARENT, GOOD_EVOLVED, "Sure! Day 1: Alfama. Day 2: Sintra.", False),
    ("insufficient_qualification", PARENT, GOOD_EVOLVED, "Day 1: Alfama. Sure to enjoy it?", False),
    # loss_of_key_information
    ("loss_of_key_information", PARENT, GOOD_EVOLVED, "To plan this, PLEASE PROVIDE your dates.", True),
    ("loss_of_key_information", PARENT, GOOD_EVOLVED, "Please, provide nothing: here is the plan.", False),
    ("loss_of_key_information", PARENT, GOOD_EVOLVED, GOOD_ANSWER, False),
    # not_possible
    ("not_possible", PARENT, GOOD_EVOLVED, "Fitting all this into 600 euros is not possible. " * 20, True),
    ("not_possible", PARENT, GOOD_EVOLVED, "It is possible, and not expensive.", False),
    # sorry_short
    ("sorry_short", PARENT, GOOD_EVOLVED, "Sorry, I cannot plan trips.", True),
    ("sorry_short", PARENT, GOOD_EVOLVED, "Sorry about the rain. " + "Day 1 walk. " * 30, False),
    ("sorry_short", PARENT, GOOD_EVOLVED, GOOD_ANSWER, False),
    # only_stopwords
    ("only_stopwords", PARENT, GOOD_EVOLVED, "... and the, of it!", True),
    ("only_stopwords", PARENT, GOOD_EVOLVED, "?!", True),
    ("only_stopwords", PARENT, GOOD_EVOLVED, "42", False),
    ("only_stopwords", PARENT, GOOD_EVOLVED, "It is the Alfama.", False),
]

#: Good text in the shape of real chat-model output, on which an earlier version of the rules misfired;
#: each rule's bad case next to it stays caught.
FULL_ANSWER = ("Day 1: walk through Alfama, lunch at a vegetarian tasca, fado in the evening. Day 2: the train to "
               "Sintra, Pena Palace and the Moorish Castle. Day 3: tram 15 to Belem, the monastery and the tower. "
               "Two nights in a guesthouse, food and tickets come to about 570 euros in total.")
STEPS_PROBLEM = ("A freight train trip has two legs. Step 1: the train leaves the depot and covers 180 km in 3 hours. "
                 "Step 2: it covers 120 km in 1.5 hours. What is its average speed?")
CASES += [
    ("prompt_leak", "A train covers 300 km. What is its speed?", STEPS_PROBLEM, GOOD_ANSWER, False),
    ("prompt_leak", "Bake bread.", "Bake bread, kneading for ten minutes in step 1 of the recipe.", GOOD_ANSWER, False),
    ("prompt_leak", "Improve this image prompt: 'a cat'.",
     "Improve this image prompt, 'a cat', adding lighting, and give the rewritten prompt on one line.", GOOD_ANSWER,
     False),
    ("prompt_leak", PARENT, "Step 1 - Options: add a budget. Plan a trip to Lisbon for two vegans.", GOOD_ANSWER, True),
    ("prompt_leak", PARENT, "Rewritten instruction: plan a trip to Lisbon for two vegans.", GOOD_ANSWER, True),
    ("truncated", "Count the integers below 5.", "Count the integers n in [0, 50) that are divisible by 3 or 7.",
     GOOD_ANSWER, False),
    ("truncated", "Find x.", "Find every x in (0, 1] with f(x) = 3, where f(x) = 1/x + 2.", GOOD_ANSWER, False),
    ("truncated", "Find ab.", "Let a and b be positive with a + b = 10. Write ab and a^2 + b^2 in terms of a",
     GOOD_ANSWER, False),
    ("truncated", "Fix the code.", "Fix this gcd so it never loops forever:\n\ndef gcd(a, b):\n    while b:\n"
     "        a, b = b, a % b\n    return a", GOOD_ANSWER, False),
    ("truncated", PARENT, "Plan a three-day trip to Lisbon for two vegetarians with a", GOOD_ANSWER, True),
    ("answers_instead", "Write a haiku", "Write a haiku sequence about rain in a city. "
     + "Each poem keeps the 5-7-5 pattern, avoids rhyme and names one sound. " * 13, GOOD_ANSWER, False),
    ("complexity_decreased", "Hi! I was wondering if you could maybe help me think of something I could cook "
     "for dinner tonight?", "Suggest three vegetarian dinners under 30 minutes using chickpeas, spinach and rice.",
     GOOD_ANSWER, False),
    ("lost_question", 'def is_square(n):\n    """Is n a perfect square?\n    >>> is_square(4)\n    True\n    """',
     'def is_power(n, k):\n    """True when n equals m**k for an integer m.\n    >>> is_power(8, 3)\n    True\n'
     '    """', GOOD_ANSWER, False),
    ("stagnant_complexity", PARENT, GOOD_EVOLVED, "Great question! " + FULL_ANSWER + " Want a rainy-day version?",
     False),
    ("insufficient_qualification", PARENT, GOOD_EVOLVED, "Sure! Here's a plan. " + FULL_ANSWER
     + " Would you like restaurant tips too?", False),
    ("loss_of_key_information", PARENT, GOOD_EVOLVED, FULL_ANSWER + " If you'd like more options, please provide "
     "your travel month.", False),
    ("loss_of_key_information", PARENT, GOOD_EVOLVED, "It is not possible to plan this without your dates. "
     "Please provide them.", True),
    ("not_possible", "Solve x^2 - 8x + 15 = 0.", GOOD_EVOLVED, "Factor: (x - 3)(x - 5) = 0. The width x - 4 must be "
     "positive, so x = 3 is not possible, hence x = 5.", False),
    ("not_possible", PARENT, GOOD_EVOLVED, "It is not possible to answer without knowing the dates.", True),
    ("sorry_short", "Write an apology.", "Write a short text apologising to a friend for missing her party.",
     "Hey Sam, I'm so sorry I missed your party. Can I take you to lunch on Saturday?", False),
    ("only_stopwords", "Is 91 prime?", "Is 91 prime, given that it is odd and not divisible by 3?", "No.", False),
    ("only_stopwords", PARENT, GOOD_EVOLVED, "No.", True),
]


@pytest.mark.parametrize(("name", "original", "evolved", "response", "fires"), CASES,
                         ids=[f"{c[0]}-{i}-{'fires' if c[4] else 'passes'}" for i, c in enumerate(CASES)])
def test_each_rule_alone(name: str, original: str, evolved: str, response: str | None, fires: bool) -> None:
    reason = BUILTIN_RULES[name].check(original, evolved, response)
    if fires:
        assert reason, f"{name} should fire"
        assert isinstance(reason, str) and "\n" not in reason and len(reason) < 200
    else:
        assert reason is None, f"{name} fired wrongly: {reason}"


def test_every_builtin_rule_has_a_firing_and_a_passing_case() -> None:
    assert {c[0] for c in CASES if c[4]} == set(DEFAULT_RULES)
    assert {c[0] for c in CASES if not c[4]} == set(DEFAULT_RULES)


def test_a_clean_evolution_passes_every_default_rule() -> None:
    assert FailureDetector().detect(PARENT, GOOD_EVOLVED, GOOD_ANSWER) == Verdict.passed()


def test_reasons_quote_what_was_found_and_stay_short() -> None:
    answer = "Sure, could you tell me " + "very " * 60 + "much about the dates?"
    verdict = FailureDetector().detect(PARENT, GOOD_EVOLVED, answer)
    assert verdict.rule == "insufficient_qualification"
    assert '"Sure, could you tell me very' in verdict.reason
    assert verdict.reason.endswith('..."')
    assert len(verdict.reason) < 130


def test_default_rules_order_and_targets() -> None:
    assert DEFAULT_RULES == (
        "empty_evolution", "unchanged", "prompt_leak", "truncated", "answers_instead",
        "complexity_decreased", "lost_question", "empty_response", "stagnant_complexity",
        "insufficient_qualification", "loss_of_key_information", "not_possible", "sorry_short",
        "only_stopwords",
    )
    targets = [BUILTIN_RULES[name].target for name in DEFAULT_RULES]
    assert targets == sorted(targets)  # every "evolution" rule comes before every "response" rule
    assert FailureDetector().rule_names == list(DEFAULT_RULES)
    assert [name for name, _ in FailureDetector().describe()] == list(DEFAULT_RULES)
    assert all(description for _, description in FailureDetector().describe())


# ------------------------------------------------------------------------------------------
# Ordering
# ------------------------------------------------------------------------------------------


def test_evolution_rule_beats_response_rule() -> None:
    verdict = FailureDetector().detect(PARENT, PARENT, "Sure, what dates?")
    assert verdict.failed and verdict.rule == "unchanged"


def test_evolution_rules_run_first_even_when_listed_last() -> None:
    detector = FailureDetector(["sorry_short", "unchanged"])
    assert detector.rule_names == ["unchanged", "sorry_short"]
    assert detector.detect(PARENT, PARENT, "Sorry.").rule == "unchanged"
    assert detector.detect(PARENT, GOOD_EVOLVED, "Sorry.").rule == "sorry_short"


def test_first_firing_rule_within_a_phase_wins() -> None:
    # both stagnant_complexity ("I'm sorry ... ?") and sorry_short fire; the earlier one wins
    verdict = FailureDetector().detect(PARENT, GOOD_EVOLVED, "I'm sorry, which Lisbon?")
    assert verdict.rule == "stagnant_complexity"
    assert FailureDetector().without("stagnant_complexity").detect(
        PARENT, GOOD_EVOLVED, "I'm sorry, which Lisbon?").rule == "sorry_short"


def test_empty_evolution_is_reported_as_empty_not_unchanged() -> None:
    assert FailureDetector().detect("", "  ", GOOD_ANSWER).rule == "empty_evolution"


def test_detect_evolution_ignores_the_response() -> None:
    detector = FailureDetector()
    assert detector.detect_evolution(PARENT, GOOD_EVOLVED) is None
    verdict = detector.detect_evolution(PARENT, "Plan a Lisbon trip.")
    assert verdict is not None and verdict.failed and verdict.rule == "complexity_decreased"
    # the same clean evolution with a bad answer fails detect() but not detect_evolution()
    assert detector.detect(PARENT, GOOD_EVOLVED, None).rule == "empty_response"


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------


def test_disable_turns_a_rule_off() -> None:
    detector = FailureDetector(disable=["unchanged"])
    assert "unchanged" not in detector.rule_names
    assert detector.detect(PARENT, PARENT, GOOD_ANSWER).failed is False


def test_disable_accepts_equal_without_a_judge() -> None:
    assert FailureDetector(disable=[EQUAL]).rule_names == list(DEFAULT_RULES)


def test_unknown_rule_name_is_an_error_that_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="no_such_rule") as error:
        FailureDetector(["unchanged", "no_such_rule"])
    assert "sorry_short" in str(error.value) and EQUAL in str(error.value)
    with pytest.raises(ValueError, match="typo_rule"):
        FailureDetector(disable=["typo_rule"])
    with pytest.raises(ValueError, match="typo_rule"):
        FailureDetector().without("typo_rule")


def test_equal_by_name_needs_a_judge() -> None:
    with pytest.raises(ValueError, match="judge"):
        FailureDetector(["unchanged", EQUAL])


def test_duplicate_rules_are_an_error() -> None:
    with pytest.raises(ValueError, match="twice"):
        FailureDetector(["unchanged", "unchanged"])
    with pytest.raises(ValueError, match="twice"):
        FailureDetector().with_rules("unchanged")


def test_extra_custom_rule_from_decorator_runs_in_its_phase() -> None:
    @rule("mentions_price", "the answer quotes a price", target="response")
    def mentions_price(original: str, evolved: str, response: str | None) -> str | None:
        return "the answer quotes a price" if response and "euros" in response else None

    assert isinstance(mentions_price, FailureRule)
    detector = FailureDetector(extra=[mentions_price])
    assert detector.rule_names[-1] == "mentions_price"
    verdict = detector.detect(PARENT, GOOD_EVOLVED, GOOD_ANSWER)
    assert verdict == Verdict.failure("mentions_price", "the answer quotes a price")
    assert detector.detect(PARENT, PARENT, GOOD_ANSWER).rule == "unchanged"


def test_custom_evolution_rule_is_checked_before_response_rules() -> None:
    no_lisbon = FunctionRule("no_lisbon", "the rewrite names Lisbon",
                             lambda o, e, r: "names Lisbon" if "Lisbon" in e else None, target="evolution")
    detector = FailureDetector(extra=[no_lisbon])
    assert detector.rule_names.index("no_lisbon") < detector.rule_names.index("empty_response")
    assert detector.detect(PARENT, GOOD_EVOLVED, None).rule == "no_lisbon"
    assert detector.detect_evolution(PARENT, GOOD_EVOLVED).rule == "no_lisbon"


def test_function_rule_rejects_a_bad_target() -> None:
    with pytest.raises(ValueError, match="target"):
        FunctionRule("x", "x", lambda o, e, r: None, target="answer")  # type: ignore[arg-type]


def test_rule_ids_name_each_rule_with_its_version_above_one() -> None:
    stricter = FunctionRule("no_lisbon", "the rewrite names Lisbon", lambda o, e, r: None, target="evolution",
                            version=3)
    detector = FailureDetector(["empty_evolution", "unchanged", "sorry_short"], extra=[stricter])
    assert detector.rule_names == ["empty_evolution", "unchanged", "no_lisbon", "sorry_short"]
    assert detector.rule_ids == ["empty_evolution", f"unchanged@{BUILTIN_RULES['unchanged'].version}", "no_lisbon@3",
                                 "sorry_short"]
    assert BUILTIN_RULES["unchanged"].version >= 2  # it decided otherwise before punctuation-only rewrites failed
    assert rule("mine", "mine", version=2)(lambda o, e, r: None).version == 2


@pytest.mark.parametrize("version", [0, -1, 1.5, "2", True])
def test_function_rule_rejects_a_version_that_is_not_a_whole_number_from_one(version: object) -> None:
    with pytest.raises(ValueError, match="version must be a whole number"):
        FunctionRule("x", "x", lambda o, e, r: None, version=version)  # type: ignore[arg-type]


def test_without_and_with_rules_return_new_detectors() -> None:
    base = FailureDetector()
    smaller = base.without("unchanged", "sorry_short")
    assert "unchanged" not in smaller.rule_names and "sorry_short" not in smaller.rule_names
    assert base.rule_names == list(DEFAULT_RULES)
    only = FailureDetector(["unchanged"])
    bigger = only.with_rules("sorry_short", FunctionRule("custom", "c", lambda o, e, r: None))
    assert bigger.rule_names == ["unchanged", "sorry_short", "custom"]
    assert only.rule_names == ["unchanged"]
    assert bigger.detect(PARENT, GOOD_EVOLVED, "Sorry.").rule == "sorry_short"


# ------------------------------------------------------------------------------------------
# The information-gain judge, with a scripted DSPy engine
# ------------------------------------------------------------------------------------------


class ScriptedJudgeEngine:
    """A DSPy 3.4 engine answering every request with one verdict, or raising."""

    def __init__(self, verdict: str | None = None, error: Exception | None = None) -> None:
        self.verdict = verdict
        self.error = error
        self.requests: list[str] = []

    def complete(self, request):  # noqa: ANN001 - dspy.lm15.Request
        self.requests.append("\n".join(m.text or "" for m in request.messages))
        if self.error is not None:
            raise self.error
        text = f"[[ ## verdict ## ]]\n{self.verdict}\n\n[[ ## completed ## ]]"
        return Response(id=None, model="scripted", message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=Usage(input_tokens=10, output_tokens=5, total_tokens=15))

    def close(self) -> None:
        pass


def judge_lm(engine: ScriptedJudgeEngine) -> dspy.LM:
    return dspy.LM("openai/scripted", engine=engine, cache=False)


#: The cheap rules plus the information-gain judge, named explicitly (a judge LM alone selects the
#: evolution judge).
WITH_EQUAL = [*DEFAULT_RULES, EQUAL]


def test_judge_equal_fires_last() -> None:
    engine = ScriptedJudgeEngine("Equal")
    detector = FailureDetector(WITH_EQUAL, judge_lm=judge_lm(engine))
    assert detector.rule_names == [*DEFAULT_RULES, EQUAL]
    verdict = detector.detect(PARENT, GOOD_EVOLVED, GOOD_ANSWER)
    assert verdict.failed and verdict.rule == EQUAL and "equal" in verdict.reason
    assert len(engine.requests) == 1
    assert PARENT in engine.requests[0] and GOOD_EVOLVED in engine.requests[0]


def test_judge_not_equal_passes() -> None:
    engine = ScriptedJudgeEngine("Not Equal")
    verdict = FailureDetector(WITH_EQUAL, judge_lm=judge_lm(engine)).detect(PARENT, GOOD_EVOLVED, GOOD_ANSWER)
    assert verdict == Verdict.passed()
    assert len(engine.requests) == 1


def test_judge_is_skipped_when_a_cheap_rule_fires() -> None:
    engine = ScriptedJudgeEngine("Equal")
    detector = FailureDetector(WITH_EQUAL, judge_lm=judge_lm(engine))
    assert detector.detect(PARENT, GOOD_EVOLVED, "Sorry.").rule == "sorry_short"
    assert detector.detect_evolution(PARENT, GOOD_EVOLVED) is None
    assert engine.requests == []
    assert detector.detect_evolution(PARENT, GOOD_EVOLVED, expensive=True).rule == EQUAL
    assert len(engine.requests) == 1


def test_judge_runs_last_even_when_listed_first() -> None:
    engine = ScriptedJudgeEngine("Equal")
    detector = FailureDetector([EQUAL, "unchanged"], judge_lm=judge_lm(engine))
    assert detector.rule_names == ["unchanged", EQUAL]


def test_judge_can_be_disabled_or_removed() -> None:
    engine = ScriptedJudgeEngine("Equal")
    lm = judge_lm(engine)
    assert EQUAL not in FailureDetector(WITH_EQUAL, judge_lm=lm, disable=[EQUAL]).rule_names
    without = FailureDetector(WITH_EQUAL, judge_lm=lm).without(EQUAL)
    assert without.detect(PARENT, GOOD_EVOLVED, GOOD_ANSWER) == Verdict.passed()
    assert without.with_rules(EQUAL).detect(PARENT, GOOD_EVOLVED, GOOD_ANSWER).rule == EQUAL


def test_judge_failure_does_not_crash_the_detector(caplog: pytest.LogCaptureFixture) -> None:
    engine = ScriptedJudgeEngine(error=RuntimeError("server on fire"))
    detector = FailureDetector(WITH_EQUAL, judge_lm=judge_lm(engine))
    with caplog.at_level(logging.WARNING, logger="autoevol.metrics.judge"):
        verdict = detector.detect(PARENT, GOOD_EVOLVED, GOOD_ANSWER)
    assert verdict == Verdict.passed()
    assert engine.requests, "the judge should have been called"
    assert any("judge" in record.getMessage() for record in caplog.records)


def test_a_judge_reply_that_does_not_parse_is_an_abstention_never_a_pass() -> None:
    engine = ScriptedJudgeEngine("Maybe, who knows")
    verdict = FailureDetector(judge_lm=judge_lm(engine)).detect(PARENT, GOOD_EVOLVED, GOOD_ANSWER)
    assert verdict.failed and verdict.rule == JUDGE_ABSTAINED and verdict.reason


def test_judge_lets_a_budget_stop_through() -> None:
    judge = EqualityJudge(judge_lm(ScriptedJudgeEngine("Equal")))

    def over_budget(**kwargs: str) -> None:
        raise BudgetExceeded("max_calls reached")

    judge.predict = over_budget  # type: ignore[assignment]
    with pytest.raises(BudgetExceeded):
        FailureDetector([judge]).detect(PARENT, GOOD_EVOLVED, GOOD_ANSWER)


def test_judge_does_not_change_the_global_lm() -> None:
    engine = ScriptedJudgeEngine("Equal")
    before = dspy.settings.lm
    FailureDetector(judge_lm=judge_lm(engine)).detect(PARENT, GOOD_EVOLVED, GOOD_ANSWER)
    assert dspy.settings.lm is before
