"""Failure detection F: decide whether one evolution failed, which rule decided it, and why.

An evolution is judged on three texts: the parent instruction (``original``), its rewrite
(``evolved``) and the evol LLM's answer to the rewrite (``response``, ``None`` when no answer was
produced). Rules come in three phases, checked in this order; the first rule that fires wins:

1. cheap *evolution* rules, which look at the rewrite only (empty, unchanged, copied prompt wording,
   cut off, an answer instead of a rewrite, simpler than the parent, the question lost);
2. cheap *response* rules, which look at the answer (the paper's three failure patterns and
   Evol-Instruct's elimination rules 5 and 6);
3. the expensive information-gain judge (Evol-Instruct's rule 4), an LM call asking whether the
   rewrite is "Equal" to its parent. It runs only when every cheap rule passed and only when a
   judge LM is given.

Example:
    >>> detector = FailureDetector()
    >>> detector.detect("Add 2 and 3.", "Add 2 and 3.", "5").rule
    'unchanged'
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Literal

import dspy

from autoevol.lm.policy import BudgetExceeded
from autoevol.records import Verdict
from autoevol.signatures.judge import JudgeEquality

logger = logging.getLogger(__name__)

Target = Literal["evolution", "response"]
RuleFunc = Callable[[str, str, "str | None"], "str | None"]

#: Name of the information-gain judge rule (only present when a judge LM is given).
EQUAL = "equal"

_TARGETS: tuple[str, ...] = ("evolution", "response")


# --------------------------------------------------------------------------------------------
# Rule base classes
# --------------------------------------------------------------------------------------------


class FailureRule(ABC):
    """One failure check.

    Attributes:
        name: stable snake_case identifier, recorded in the verdict when the rule fires.
        description: one line saying what the rule catches.
        target: ``"evolution"`` (looks at the rewrite) or ``"response"`` (looks at the answer).
        expensive: expensive rules (LM calls) run after every cheap rule, in the last phase.
    """

    name: str
    description: str
    target: Target
    expensive: bool = False

    @abstractmethod
    def check(self, original: str, evolved: str, response: str | None) -> str | None:
        """Return a short human-readable reason when the rule fires, else ``None``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, target={self.target!r})"


class FunctionRule(FailureRule):
    """A rule made from a plain function ``func(original, evolved, response) -> reason | None``.

    Example:
        >>> no_urls = FunctionRule("has_url", "the rewrite contains a URL",
        ...                        lambda o, e, r: "the rewrite contains a URL" if "http" in e else None,
        ...                        target="evolution")
    """

    def __init__(self, name: str, description: str, func: RuleFunc,
                 target: Target = "response", *, expensive: bool = False) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a failure rule needs a non-empty name")
        if target not in _TARGETS:
            raise ValueError(f"rule {name!r}: target must be one of {_TARGETS}, not {target!r}")
        self.name = name
        self.description = description
        self.target = target
        self.expensive = expensive
        self.func = func

    def check(self, original: str, evolved: str, response: str | None) -> str | None:
        return self.func(original, evolved, response) or None


def rule(name: str, description: str, target: Target = "response") -> Callable[[RuleFunc], FunctionRule]:
    """Decorator turning a function ``(original, evolved, response) -> reason | None`` into a rule.

    Example:
        >>> @rule("mentions_gpt", "the answer names GPT", target="response")
        ... def mentions_gpt(original, evolved, response):
        ...     return "the answer names GPT" if response and "GPT" in response else None
    """

    def wrap(func: RuleFunc) -> FunctionRule:
        return FunctionRule(name, description, func, target)

    return wrap


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


# --------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------


def _words(text: str | None) -> list[str]:
    return (text or "").split()


def _normalize(text: str) -> str:
    return " ".join(text.split()).casefold()


def _quote(text: str, limit: int = 80) -> str:
    """A one-line quotation of ``text``, cut to about ``limit`` characters."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 3].rstrip() + "..."
    return f'"{flat}"'


def _tail(text: str, limit: int = 40) -> str:
    flat = " ".join(text.split())
    return _quote(flat if len(flat) <= limit else "..." + flat[-(limit - 3):], limit + 3)


def _clean(text: str) -> str:
    """Straighten typographic apostrophes and quotes so that patterns stay simple."""
    return text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')


def _phrases(*phrases: str) -> re.Pattern[str]:
    """A case-insensitive pattern matching any phrase at word boundaries, spaces flexible."""
    parts = []
    for phrase in phrases:
        body = r"\s+".join(re.escape(word) for word in phrase.split())
        left = r"\b" if phrase[0].isalnum() else ""
        right = r"\b" if phrase[-1].isalnum() else ""
        parts.append(left + body + right)
    return re.compile("|".join(parts), re.IGNORECASE)


def _opening(*phrases: str) -> re.Pattern[str]:
    """A case-insensitive pattern matching text that starts with one of ``phrases``."""
    parts = []
    for phrase in phrases:
        body = r"\s+".join(re.escape(word) for word in phrase.split())
        # a word opener must end at a word boundary and not continue as a compound ("Sure-fire")
        parts.append(body + (r"\b(?!-)" if phrase[-1].isalnum() else ""))
    return re.compile(r"^\s*[\"'*_#>\s]*(?:" + "|".join(parts) + ")", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Evolution rules
# --------------------------------------------------------------------------------------------


def _empty_evolution(original: str, evolved: str, response: str | None) -> str | None:
    if not (evolved or "").strip():
        return "the rewrite is empty"
    return None


def _unchanged(original: str, evolved: str, response: str | None) -> str | None:
    if evolved and _normalize(evolved) == _normalize(original or ""):
        return "the rewrite is identical to its parent (ignoring case and spacing)"
    return None


_LEAK = _phrases(
    "given prompt", "rewritten prompt", "given instruction", "rewritten instruction",
    "evolved instruction", "original instruction", "original prompt", "working notes",
    "methods list", "method list", "step 1",
    "#rewritten prompt#", "#given prompt#", "#the given prompt#", "#instruction#", "#plan#",
    "#rewritten instruction#", "#finally rewritten instruction#", "#finally rewritten prompt#",
    "#created prompt#", "#methods list#",
)


def _prompt_leak(original: str, evolved: str, response: str | None) -> str | None:
    parent = (original or "").casefold()
    for match in _LEAK.finditer(evolved or ""):
        phrase = " ".join(match.group(0).split())
        if phrase.casefold() not in " ".join(parent.split()):  # wording the parent already had is fine
            return f"the rewrite copies wording from the evolving method: {_quote(phrase)}"
    return None


_FENCE = re.compile(r"```")
_QUOTED = re.compile(r"\"[^\"\n]*\"|(?<!\w)'[^'\n]*'(?!\w)|`[^`\n]*`")
_PAIRS = {")": "(", "]": "[", "}": "{"}
#: Words a complete sentence practically never ends on.
_ALWAYS_DANGLING = frozenset({
    "the", "a", "an", "and", "or", "but", "nor", "than", "whose", "because", "although",
    "whereas", "unless", "the following", "such as", "including", "namely",
})
#: Prepositions a statement rarely ends on; a question may ("what is it made of"), and so may an
#: infinitive clause ("a topic to write about"). Particles of phrasal verbs ("log in") are left out.
_PREPOSITIONS = frozenset({"of", "with", "to", "from", "into", "onto", "between", "via"})
_QUESTION_START = re.compile(
    r"^(?:what|which|who|whom|whose|where|when|why|how|is|are|was|were|do|does|did|can|could|"
    r"would|should|will|shall|may|might|have|has|had)\b", re.IGNORECASE)
_LAST_WORD = re.compile(r"(?:^|[\s(\[{\"'])([a-z]+)\s*$")
_SENTENCE_END = re.compile(r"[.!?\n:;]\s*")


def _unclosed_brackets(text: str) -> list[str]:
    """Opening brackets still open at the end of ``text`` (quoted strings ignored)."""
    stack: list[str] = []
    for char in _QUOTED.sub("", text):
        if char in "([{":
            stack.append(char)
        elif char in _PAIRS and stack and stack[-1] == _PAIRS[char]:
            stack.pop()
    return stack


def _dangling_word(text: str) -> str | None:
    """The function word a cut-off text ends on, if any (a finished sentence never does)."""
    stripped = text.rstrip()
    match = _LAST_WORD.search(stripped)
    if not match:
        return None
    word = match.group(1)
    before = stripped[: match.start(1)].split()
    two = f"{before[-1].lower()} {word}" if before else word
    if two in _ALWAYS_DANGLING:
        return two
    if word in _ALWAYS_DANGLING:
        return word
    if word in _PREPOSITIONS and not (len(before) >= 2 and before[-2].lower() == "to"):
        sentence = _SENTENCE_END.split(stripped)[-1].strip()
        if not _QUESTION_START.match(sentence):
            return word
    return None


def _truncated(original: str, evolved: str, response: str | None) -> str | None:
    text = (evolved or "").rstrip()
    if not text:
        return None
    if len(_FENCE.findall(text)) % 2 == 1:
        return "the rewrite is cut off inside an unclosed ``` code block"
    if _unclosed_brackets(text) and not _unclosed_brackets(original or ""):
        return f"the rewrite is cut off with an unclosed bracket: {_tail(text)}"
    if text.endswith(",") and not (original or "").rstrip().endswith(","):
        return f"the rewrite is cut off after a trailing comma: {_tail(text)}"
    word = _dangling_word(text)
    if word and _dangling_word(original or "") != word:
        return f"the rewrite is cut off on a dangling {word!r}: {_tail(text)}"
    return None


#: Openers that mean the model answered (or chatted) instead of rewriting.
_ANSWER_OPENERS = _opening(
    "sure", "certainly", "of course", "absolutely", "the answer is", "answer:", "solution:",
    "final answer:", "the solution is", "the result is",
)
#: Openers that may also start a genuine instruction ("Here is a list ... Sort it.").
_PRESENTING_OPENERS = _opening("here is", "here's", "here are")
#: Request words: imperative verbs and question phrases. Words that are often nouns or relative
#: pronouns in a plain statement ("state", "name", "which", "where") are left out on purpose.
_REQUEST = _phrases(
    "calculate", "compute", "determine", "find", "how many", "how much", "how long", "how far",
    "how old", "how often", "what", "why", "explain", "write", "solve", "list", "describe", "show",
    "prove", "give", "estimate", "identify", "evaluate", "derive", "compare", "analyze", "analyse",
    "discuss", "create", "implement", "generate", "suggest", "recommend", "provide", "tell",
    "predict", "summarize", "summarise", "simplify", "convert", "classify", "choose", "select",
    "translate", "rewrite", "draft", "compose", "propose", "verify", "decide", "assess", "define",
    "can you", "could you", "please",
)
_LONG_RATIO = 4
_LONG_MIN_WORDS = 150


def _answers_instead(original: str, evolved: str, response: str | None) -> str | None:
    text = _clean(evolved or "")
    parent = _clean(original or "")
    opener = _ANSWER_OPENERS.match(text)
    if opener and not _ANSWER_OPENERS.match(parent):
        return f"the rewrite answers instead of rewriting: {_quote(text)}"
    presenting = _PRESENTING_OPENERS.match(text)
    if presenting and not _PRESENTING_OPENERS.match(parent) and "?" not in text and not _REQUEST.search(text):
        return f"the rewrite presents an answer and asks for nothing: {_quote(text)}"
    count, parent_count = len(_words(text)), len(_words(parent))
    if count > _LONG_MIN_WORDS and count > _LONG_RATIO * parent_count:
        return (f"the rewrite has {count} words, over {_LONG_RATIO}x its parent's {parent_count}: "
                "it reads like an answer")
    return None


_SHRINK_RATIO = 0.8
_SHRINK_MIN_PARENT = 8


def _complexity_decreased(original: str, evolved: str, response: str | None) -> str | None:
    count, parent_count = len(_words(evolved)), len(_words(original))
    if parent_count >= _SHRINK_MIN_PARENT and count < _SHRINK_RATIO * parent_count:
        return f"the rewrite is shorter than its parent ({count} words against {parent_count}): it lost content"
    return None


def _lost_question(original: str, evolved: str, response: str | None) -> str | None:
    text = evolved or ""
    if "?" in (original or "") and "?" not in text and not _REQUEST.search(text):
        return f"the parent asks a question but the rewrite asks nothing: {_quote(text)}"
    return None


# --------------------------------------------------------------------------------------------
# Response rules
# --------------------------------------------------------------------------------------------


def _empty_response(original: str, evolved: str, response: str | None) -> str | None:
    if response is None or not response.strip():
        return "the evolved instruction got no answer"
    return None


_STAGNANT = _opening(
    "understood", "thank you", "thanks", "what", "that is correct", "that's correct", "great",
    "i'm sorry", "i am sorry", "is there anything else", "as an ai assistant", "i understand",
)
_SURE = _opening("sure")


def _stagnant_complexity(original: str, evolved: str, response: str | None) -> str | None:
    text = _clean(response or "").strip()
    if text.endswith("?") and _STAGNANT.match(text):
        return f"the answer acknowledges and asks back instead of answering: {_quote(text)}"
    return None


def _insufficient_qualification(original: str, evolved: str, response: str | None) -> str | None:
    text = _clean(response or "").strip()
    if text.endswith("?") and _SURE.match(text):
        return f"the answer asks for more information: {_quote(text)}"
    return None


_PLEASE_PROVIDE = _phrases("please provide")


def _loss_of_key_information(original: str, evolved: str, response: str | None) -> str | None:
    match = _PLEASE_PROVIDE.search(response or "")
    if match:
        return f"the answer asks for missing information: {_quote((response or '')[match.start():])}"
    return None


_NOT_POSSIBLE = _phrases("not possible")


def _not_possible(original: str, evolved: str, response: str | None) -> str | None:
    match = _NOT_POSSIBLE.search(response or "")
    if match:
        start = max(0, match.start() - 30)
        return f"the answer says the task is not possible: {_quote((response or '')[start:])}"
    return None


_SORRY = re.compile(r"sorry", re.IGNORECASE)
_SORRY_MAX_WORDS = 80


def _sorry_short(original: str, evolved: str, response: str | None) -> str | None:
    text = response or ""
    if _SORRY.search(text) and len(_words(text)) < _SORRY_MAX_WORDS:
        return f"the answer is a short apology: {_quote(text)}"
    return None


#: A compact list of English stop words (function words that carry no content).
STOP_WORDS: frozenset[str] = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't
down during each few for from further had hadn't has hasn't have haven't having he he'd he'll he's
her here here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it
it's its itself just let's me more most mustn't my myself no nor not now of off on once only or
other ought our ours ourselves out over own same shan't she she'd she'll she's should shouldn't so
some such than that that's the their theirs them themselves then there there's these they they'd
they'll they're they've this those through to too under until up very was wasn't we we'd we'll
we're we've were weren't what what's when when's where where's which while who who's whom why
why's will with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves
yes ok okay oh well also s t d ll m o re ve y
""".split())
_TOKEN = re.compile(r"\w+(?:'\w+)*")


def _only_stopwords(original: str, evolved: str, response: str | None) -> str | None:
    text = _clean(response or "")
    if not text.strip():
        return None
    if all(token.casefold() in STOP_WORDS for token in _TOKEN.findall(text)):
        return f"the answer is only punctuation and stop words: {_quote(text)}"
    return None


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_BUILTINS: tuple[FunctionRule, ...] = (
    FunctionRule("empty_evolution", "the rewrite is empty or only whitespace",
                 _empty_evolution, "evolution"),
    FunctionRule("unchanged", "the rewrite is identical to its parent, ignoring case and spacing",
                 _unchanged, "evolution"),
    FunctionRule("prompt_leak", "the rewrite copies wording of the evolving method "
                 "(\"given prompt\", \"#Rewritten Prompt#\", \"Step 1\", ...)", _prompt_leak, "evolution"),
    FunctionRule("truncated", "the rewrite is visibly cut off (open code block or bracket, "
                 "trailing comma, dangling last word)", _truncated, "evolution"),
    FunctionRule("answers_instead", "the rewrite answers the instruction instead of rewriting it "
                 "(answer opener, or far longer than its parent)", _answers_instead, "evolution"),
    FunctionRule("complexity_decreased", "the rewrite has clearly fewer words than its parent "
                 "(content dropped)", _complexity_decreased, "evolution"),
    FunctionRule("lost_question", "the parent asks a question and the rewrite asks nothing",
                 _lost_question, "evolution"),
    FunctionRule("empty_response", "the evolved instruction got no answer", _empty_response, "response"),
    FunctionRule("stagnant_complexity", "the answer acknowledges and asks back (\"Understood ... ?\") "
                 "instead of facing a harder task", _stagnant_complexity, "response"),
    FunctionRule("insufficient_qualification", "the answer asks for more information "
                 "(\"Sure ... ?\")", _insufficient_qualification, "response"),
    FunctionRule("loss_of_key_information", "the answer asks the user to provide something "
                 "(\"please provide\")", _loss_of_key_information, "response"),
    FunctionRule("not_possible", "the answer says the task is not possible", _not_possible, "response"),
    FunctionRule("sorry_short", "the answer apologises (\"sorry\") in fewer than 80 words",
                 _sorry_short, "response"),
    FunctionRule("only_stopwords", "the answer is only punctuation and stop words",
                 _only_stopwords, "response"),
)

#: Every built-in cheap rule, by name.
BUILTIN_RULES: Mapping[str, FailureRule] = MappingProxyType({r.name: r for r in _BUILTINS})

#: The built-in cheap rules in the order they are checked (evolution rules, then response rules).
DEFAULT_RULES: tuple[str, ...] = tuple(r.name for r in _BUILTINS)


def _valid_names() -> str:
    return ", ".join((*DEFAULT_RULES, EQUAL))


def _phase(item: FailureRule) -> int:
    if item.expensive:
        return 2
    return 0 if item.target == "evolution" else 1


def _resolve(item: FailureRule | str, judge_lm: dspy.LM | None) -> FailureRule:
    if isinstance(item, FailureRule):
        return item
    if not isinstance(item, str):
        raise TypeError(f"a failure rule must be a FailureRule or a rule name, not {type(item).__name__}")
    if item == EQUAL:
        if judge_lm is None:
            raise ValueError(f"rule {EQUAL!r} needs a judge LM (judge_lm=...)")
        return EqualityJudge(judge_lm)
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
        judge_lm: when given, the ``equal`` information-gain judge runs last, after every cheap rule.
        disable: names of rules to leave out (e.g. from a CLI flag).
        extra: custom rules added to the selection.

    Whatever order the rules are given in, evolution rules run before response rules and
    expensive rules (the judge) run last; within a phase the given order is kept.

    Raises:
        ValueError: an unknown rule name, a rule given twice, or ``equal`` without a judge LM.
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
        if judge_lm is not None and not any(item.name == EQUAL for item in chosen):
            chosen.append(EqualityJudge(judge_lm))
        disabled = set(disable)
        known = set(DEFAULT_RULES) | {EQUAL} | {item.name for item in chosen}
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

    def __repr__(self) -> str:
        return f"FailureDetector(rules={self.rule_names!r})"
