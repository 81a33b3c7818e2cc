"""Cheap failure rules: the rule base classes, the built-in rules and their registry.

Evolution rules look at the rewrite (``evolved``) against its parent (``original``); response rules
look at the evol LLM's answer to the rewrite (``response``), which is a plain chat reply: markdown,
code blocks, "Sure! Here's ..." and a closing offer are normal there. Every rule returns a short
reason naming what it saw, or ``None``. The rules read text only; none calls an LM.

Example:
    >>> BUILTIN_RULES["unchanged"].check("Add 2 and 3.", "add 2 and 3.", "5")
    'the rewrite is identical to its parent (ignoring case and spacing)'
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal

from autoevol.metrics._text import (
    STOP_WORDS,
    TOKEN,
    asks_something,
    clean,
    dangling_word,
    is_code_task,
    normalize,
    opening,
    phrases,
    prose,
    quote,
    sentences,
    tail,
    unclosed_brackets,
    words,
)

Target = Literal["evolution", "response"]
RuleFunc = Callable[[str, str, "str | None"], "str | None"]

_TARGETS: tuple[str, ...] = ("evolution", "response")

__all__ = ["BUILTIN_RULES", "DEFAULT_RULES", "STOP_WORDS", "FailureRule", "FunctionRule", "RuleFunc",
           "Target", "rule"]


class FailureRule(ABC):
    """One failure check.

    Attributes:
        name: stable snake_case identifier, recorded in the verdict when the rule fires.
        description: one line saying what the rule catches.
        target: ``"evolution"`` (looks at the rewrite) or ``"response"`` (looks at the answer).
        expensive: expensive rules (LM calls) run after every cheap rule, in the last phase.
        version: raised by one whenever the rule's decisions change (a text it passed now fails, or
            the reverse; a reworded reason is no change). Records of verdicts name each rule with
            its version (:attr:`~autoevol.metrics.failure.FailureDetector.rule_ids`), so that a
            resumed run never mixes verdicts made under different decisions.
    """

    name: str
    description: str
    target: Target
    expensive: bool = False
    version: int = 1

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
                 target: Target = "response", *, expensive: bool = False, version: int = 1) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a failure rule needs a non-empty name")
        if target not in _TARGETS:
            raise ValueError(f"rule {name!r}: target must be one of {_TARGETS}, not {target!r}")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"rule {name!r}: version must be a whole number of at least 1, not {version!r}")
        self.name = name
        self.description = description
        self.target = target
        self.expensive = expensive
        self.version = version
        self.func = func

    def check(self, original: str, evolved: str, response: str | None) -> str | None:
        return self.func(original, evolved, response) or None


def rule(name: str, description: str, target: Target = "response", *,
         version: int = 1) -> Callable[[RuleFunc], FunctionRule]:
    """Decorator turning a function ``(original, evolved, response) -> reason | None`` into a rule
    (raise ``version`` whenever you change what it decides).

    Example:
        >>> @rule("mentions_gpt", "the answer names GPT", target="response")
        ... def mentions_gpt(original, evolved, response):
        ...     return "the answer names GPT" if response and "GPT" in response else None
    """

    def wrap(func: RuleFunc) -> FunctionRule:
        return FunctionRule(name, description, func, target, version=version)

    return wrap


# --------------------------------------------------------------------------------------------
# Evolution rules
# --------------------------------------------------------------------------------------------
# Rule versions (FailureRule.version): version 1 is every rule as it decided before versions were
# recorded; ``unchanged`` 2 also fires when only punctuation or layout changed, ``answers_instead`` 2
# also when the rewrite is the body of the function its parent's stub asks for.


def _empty_evolution(original: str, evolved: str, response: str | None) -> str | None:
    return None if (evolved or "").strip() else "the rewrite is empty"


def _unchanged(original: str, evolved: str, response: str | None) -> str | None:
    if not evolved:
        return None
    if normalize(evolved) == normalize(original or ""):
        return "the rewrite is identical to its parent (ignoring case and spacing)"
    if TOKEN.findall(evolved.casefold()) == TOKEN.findall((original or "").casefold()):
        return "the rewrite has its parent's words in the same order: only punctuation or layout changed"
    return None


_LEAK = phrases(
    "given prompt", "rewritten prompt", "given instruction", "rewritten instruction",
    "evolved instruction", "original instruction", "original prompt", "working notes",
    "methods list", "method list",
    "#rewritten prompt#", "#given prompt#", "#the given prompt#", "#instruction#", "#plan#",
    "#rewritten instruction#", "#finally rewritten instruction#", "#finally rewritten prompt#",
    "#created prompt#", "#methods list#",
)
#: "Step 1" with the rest of its sentence. A problem may list steps of its own ("Step 1: the
#: train leaves ..."); the method's steps are about making the instruction more complex.
_STEP = re.compile(r"\bstep\s*[1-9]\b\s*[-:.)\u2013\u2014]*\s*([^\n.!?]{0,100})", re.IGNORECASE)
_METHOD_STEP = re.compile(
    r"^options?\b|complexity|complicat|more\s+(?:complex|difficult|challenging)|rewrit|evolv|"
    r"\bmethods?\s+(?:list|to)\b|(?:possible|list\s+of)\s+(?:ways|methods|options)|"
    r"(?:read|analy[sz]e|understand|review|examine)\s+the\s+(?:given\s+|original\s+)?(?:instruction|prompt)",
    re.IGNORECASE)


def _prompt_leak(original: str, evolved: str, response: str | None) -> str | None:
    parent = normalize(original or "")
    for match in _LEAK.finditer(evolved or ""):
        phrase = " ".join(match.group(0).split()).casefold()
        # wording the parent already had is fine, and so is "the rewritten prompt" in a task about prompts
        topic = phrase.split()[-1]
        if phrase in parent or (topic in ("prompt", "instruction") and re.search(rf"\b{topic}", parent)):
            continue
        return f"the rewrite copies wording from the evolving method: {quote(match.group(0))}"
    for match in _STEP.finditer(evolved or ""):
        if _METHOD_STEP.search(match.group(1)) and normalize(match.group(0)) not in parent:
            return f"the rewrite copies a step of the evolving method: {quote(match.group(0), 60)}"
    return None


_FENCE = re.compile(r"```")
def _truncated(original: str, evolved: str, response: str | None) -> str | None:
    text = (evolved or "").rstrip()
    if not text:
        return None
    if len(_FENCE.findall(text)) % 2 == 1:
        return "the rewrite is cut off inside an unclosed ``` code block"
    if unclosed_brackets(text) and not unclosed_brackets(original or ""):
        return f"the rewrite is cut off with an unclosed bracket: {tail(text)}"
    if text.endswith(",") and not (original or "").rstrip().endswith(","):
        return f"the rewrite is cut off after a trailing comma: {tail(text)}"
    word = dangling_word(text)
    if word and dangling_word(original or "") != word:
        return f"the rewrite is cut off on a dangling {word!r}: {tail(text)}"
    return None


#: Openers that mean the model answered (or chatted) instead of rewriting.
_ANSWER_OPENERS = opening(
    "sure", "certainly", "of course", "absolutely", "the answer is", "answer:", "solution:",
    "final answer:", "the solution is", "the result is",
)
#: Openers that may also start a genuine instruction ("Here is a list ... Sort it.").
_PRESENTING_OPENERS = opening("here is", "here's", "here are")
_LONG_RATIO = 4
_LONG_MIN_WORDS = 150


#: Docstrings and comments: what a code stub says about the function, not its body.
_DOCSTRING_OR_COMMENT = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|#[^\n]*')
#: An indented statement of a function body: a return, a block opener or an assignment.
_STATEMENT = re.compile(
    r"^[ \t]+(?:return\b|(?:if|elif|else|for|while|with|try|except)\b[^\n]*:[ \t]*$|[A-Za-z_][\w.\[\]]*[ \t]*[-+*/]?=(?!=))",
    re.MULTILINE)


def _statements(code: str) -> int:
    """Indented statements of ``code`` outside its docstrings and comments."""
    return len(_STATEMENT.findall(_DOCSTRING_OR_COMMENT.sub("", code)))


def _answers_instead(original: str, evolved: str, response: str | None) -> str | None:
    text, parent = clean(evolved or ""), clean(original or "")
    body = _statements(text) if is_code_task(parent) and not _statements(parent) and not is_code_task(text) else 0
    if body >= 2:  # the parent is a stub to implement; the rewrite implements it and asks for nothing
        return f"the rewrite implements the function its parent asks for ({body} statements): {quote(text)}"
    if _ANSWER_OPENERS.match(text) and not _ANSWER_OPENERS.match(parent):
        return f"the rewrite answers instead of rewriting: {quote(text)}"
    if _PRESENTING_OPENERS.match(text) and not _PRESENTING_OPENERS.match(parent) and not asks_something(text):
        return f"the rewrite presents an answer and asks for nothing: {quote(text)}"
    count, parent_count = len(words(text)), len(words(parent))
    if count > max(_LONG_MIN_WORDS, _LONG_RATIO * parent_count) and not asks_something(text, edges=True):
        return (f"the rewrite has {count} words, over {_LONG_RATIO}x its parent's {parent_count}, "
                "and asks for nothing: it reads like an answer")
    return None


_SHRINK_RATIO = 0.8
_SHRINK_MIN_PARENT = 8


def _content_word_count(text: str) -> int:
    return sum(1 for token in TOKEN.findall(text) if token.casefold() not in STOP_WORDS)


def _complexity_decreased(original: str, evolved: str, response: str | None) -> str | None:
    # content words, so a rewrite that drops filler ("I was wondering if you could ...") is not "shorter"
    count, parent_count = _content_word_count(evolved or ""), _content_word_count(original or "")
    if len(TOKEN.findall(original or "")) >= _SHRINK_MIN_PARENT and count < _SHRINK_RATIO * parent_count:
        return (f"the rewrite has fewer content words than its parent ({count} against {parent_count}): "
                "it lost content")
    return None


def _lost_question(original: str, evolved: str, response: str | None) -> str | None:
    if "?" in prose(original or "") and not asks_something(evolved or ""):
        return f"the parent asks a question but the rewrite asks nothing: {quote(evolved or '')}"
    return None


# --------------------------------------------------------------------------------------------
# Response rules
# --------------------------------------------------------------------------------------------


def _empty_response(original: str, evolved: str, response: str | None) -> str | None:
    return "the evolved instruction got no answer" if response is None or not response.strip() else None


_STAGNANT = opening(
    "understood", "thank you", "thanks", "what", "that is correct", "that's correct", "great",
    "i'm sorry", "i am sorry", "is there anything else", "as an ai assistant", "i understand",
)
_SURE = opening("sure")
#: An answer with this many words outside its questions has answered; a closing question is an offer.
_ANSWERED_WORDS = 50


def _asks_back(text: str, opener: re.Pattern[str]) -> bool:
    """The answer opens with ``opener``, ends with "?", and says little besides its questions.

    Code, a worked equation or enough words outside the questions mean it answered first, and the
    closing question is an offer ("Want me to add tests?").
    """
    if not (text.endswith("?") and opener.match(text)) or prose(text) != text:
        return False
    said = [s for s in sentences(text) if not s.endswith("?")]
    return sum(len(s.split()) for s in said) < _ANSWERED_WORDS and not any("=" in s for s in said)


def _stagnant_complexity(original: str, evolved: str, response: str | None) -> str | None:
    text = clean(response or "").strip()
    if _asks_back(text, _STAGNANT):
        return f"the answer acknowledges and asks back instead of answering: {quote(text)}"
    return None


def _insufficient_qualification(original: str, evolved: str, response: str | None) -> str | None:
    text = clean(response or "").strip()
    if _asks_back(text, _SURE):
        return f"the answer asks for more information: {quote(text)}"
    return None


_PLEASE_PROVIDE = phrases("please provide")
#: An opening sentence saying the answer cannot be given.
_REFUSED = re.compile(
    r"\b(?:cannot|can't|unable|not\s+possible|(?:don't|do\s+not)\s+have|not\s+(?:provided|given|specified|"
    r"included)|(?:didn't|did\s+not)\s+(?:provide|include|give)|without\s+(?:knowing|more|additional|further))\b",
    re.IGNORECASE)
#: A request that says what the answer lacks.
_MISSING = re.compile(
    r"\b(?:need|without|missing|so\s+(?:that\s+)?I\s+can|(?:more|additional|further)\s+(?:details|information|"
    r"context))\b", re.IGNORECASE)
_CONDITIONAL = re.compile(r"\b(?:if|should\s+you|whenever|in\s+case|feel\s+free)\b", re.IGNORECASE)
#: A writing task whose answer may itself ask for something ("Could you please provide the invoice?").
_MESSAGE_TASK = re.compile(r"\b(?:e-?mails?|letters?|messages?|memos?|notices?|templates?|replies|reply)\b",
                           re.IGNORECASE)
_OPENING_WORDS = 20
_FULL_ANSWER_WORDS = 60


def _loss_of_key_information(original: str, evolved: str, response: str | None) -> str | None:
    parts = sentences(prose(clean(response or "")))
    writing = bool(_MESSAGE_TASK.search(evolved or ""))
    refused = bool(parts) and bool(_REFUSED.search(parts[0])) and not writing
    for index, sentence in enumerate(parts):
        if not _PLEASE_PROVIDE.search(sentence):
            continue
        before = sum(len(s.split()) for s in parts[:index])
        if before < _OPENING_WORDS and not writing:  # asks at once, before answering anything
            return f"the answer asks for missing information: {quote(sentence)}"
        if _CONDITIONAL.search(sentence):  # a closing offer: "If you'd like more, please provide ..."
            continue
        closing = before >= _FULL_ANSWER_WORDS and index >= len(parts) - 2
        if refused or (not closing and _MISSING.search(" ".join(parts[max(0, index - 1): index + 1]))):
            return f"the answer asks for missing information: {quote(sentence)}"
    return None


_NOT_POSSIBLE = phrases("not possible")
#: "It is not possible to answer ...", "... not possible without the data", "this is not possible".
_REFUSAL = re.compile(
    r"not\s+possible\s+(?:for\s+me\s+)?to\s+(?:answer|determine|say|tell|know|solve|calculate|compute|give|"
    r"provide|find|identify|predict|complete|do|write|create|plan|fulfil|meet|satisfy|generate|estimate|assess|"
    r"evaluate|verify|check|access|browse|see|view|open|run|execute|draw|summari[sz]e|comply|help|assist|fit)\b|not\s+possible\s+(?:without|given|with\s+the\s+(?:given|provided|"
    r"available|current))|\b(?:it|this|that)\b[^.!?;,]{0,40}?(?:\bis|'s|\bwould\s+be|\bwas)\s+not\s+possible",
    re.IGNORECASE)
#: A sentence that works through a solution or a condition ("so x = 3 is not possible").
_SOLVING = re.compile(
    r"[=<>\u2260\u2264\u2265]|(?:^|[,;:]\s*|\band\s+)(?:so|if|unless)\b|\b(?:hence|thus|therefore|otherwise)\b",
    re.IGNORECASE)
#: ... or one that explains why something cannot be ("dividing by zero is not possible because ...").
_EXPLAINING = re.compile(r"\b(?:which|because|since|case)\b", re.IGNORECASE)
#: A question about what is possible ("Can a triangle have sides 3, 4 and 8?"): "not possible" answers it.
_POSSIBILITY_QUESTION = re.compile(r"\bpossible\b|\b(?:can|could)\s+(?!you\b)\w+[^.!?\n]*\?", re.IGNORECASE)
_SHORT_ANSWER_WORDS = 80


def _not_possible(original: str, evolved: str, response: str | None) -> str | None:
    if _POSSIBILITY_QUESTION.search(evolved or ""):
        return None
    text = prose(clean(response or ""))
    short = len(text.split()) < _SHORT_ANSWER_WORDS
    for sentence in sentences(text)[:2]:  # a refusal says so at once; later, it is part of a solution
        if not _NOT_POSSIBLE.search(sentence) or _SOLVING.search(sentence):
            continue
        if _REFUSAL.search(sentence) or (short and not _EXPLAINING.search(sentence)):
            return f"the answer says the task is not possible: {quote(sentence)}"
    return None


_SORRY = re.compile(r"\bsorry\b", re.IGNORECASE)
_APOLOGY_TASK = re.compile(r"\b(?:sorry|apolog\w*|regret\w*|declin\w*|condolences?)\b", re.IGNORECASE)
_APOLOGY_OPENING = re.compile(r"^\W*(?:(?:i'm|i\s+am)\s+(?:so\s+|very\s+|really\s+)?sorry|sorry|i\s+apologi[sz]e)\b",
                              re.IGNORECASE)
#: Quoted text and quoted lines: wording the answer proposes, not its own voice.
_QUOTATION = re.compile(r"\"[^\"]*\"|(?<!\w)'[^\n]*?'(?!\w)|^\s*>.*$", re.MULTILINE)
_SORRY_MAX_WORDS = 80


def _sorry_short(original: str, evolved: str, response: str | None) -> str | None:
    text = clean(response or "")
    if _APOLOGY_TASK.search(evolved or ""):  # the task asks for an apology: "sorry" is content
        return None
    if _MESSAGE_TASK.search(evolved or "") and not _APOLOGY_OPENING.match(text):  # a message that apologises
        return None
    if _SORRY.search(_QUOTATION.sub(" ", text)) and len(words(text)) < _SORRY_MAX_WORDS:
        return f"the answer is a short apology: {quote(text)}"
    return None


_YES_NO = frozenset({"yes", "no", "not"})
_YES_NO_QUESTION = re.compile(
    r"(?:^|[.!?\n]\s*|,\s*)(?:is|are|was|were|do|does|did|can|could|will|would|should|has|have|had|may|"
    r"might|must|shall)\b[^.!?\n]*\?|\byes\s*(?:or|/)\s*no\b", re.IGNORECASE)


def _only_stopwords(original: str, evolved: str, response: str | None) -> str | None:
    text = clean(response or "")
    tokens = [token.casefold() for token in TOKEN.findall(text)]
    if not text.strip() or not all(token in STOP_WORDS for token in tokens):
        return None
    if tokens and tokens[0] in _YES_NO and _YES_NO_QUESTION.search(evolved or ""):
        return None  # "No." answers a yes/no question
    if len(tokens) == 1 and re.search(rf"(?:^|[\s(]){re.escape(tokens[0])}[).:]", evolved or "", re.IGNORECASE):
        return None  # "D" picks option "D)" of the question
    return f"the answer is only punctuation and stop words: {quote(text)}"


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_BUILTINS: tuple[FunctionRule, ...] = (
    FunctionRule("empty_evolution", "the rewrite is empty or only whitespace",
                 _empty_evolution, "evolution"),
    FunctionRule("unchanged", "the rewrite is identical to its parent, ignoring case and spacing, or has "
                 "its parent's words in the same order (only punctuation or layout changed)", _unchanged, "evolution",
                 version=2),
    FunctionRule("prompt_leak", "the rewrite copies wording of the evolving method "
                 "(\"given prompt\", \"#Rewritten Prompt#\", \"Step 1 - Options\", ...)", _prompt_leak, "evolution"),
    FunctionRule("truncated", "the rewrite is visibly cut off (open code block or bracket, "
                 "trailing comma, dangling last word)", _truncated, "evolution"),
    FunctionRule("answers_instead", "the rewrite answers the instruction instead of rewriting it "
                 "(answer opener, far longer than its parent and asking nothing, or the body of the function "
                 "its parent's stub asks for)", _answers_instead, "evolution", version=2),
    FunctionRule("complexity_decreased", "the rewrite has clearly fewer content words than its parent "
                 "(content dropped)", _complexity_decreased, "evolution"),
    FunctionRule("lost_question", "the parent asks a question and the rewrite asks nothing",
                 _lost_question, "evolution"),
    FunctionRule("empty_response", "the evolved instruction got no answer", _empty_response, "response"),
    FunctionRule("stagnant_complexity", "the answer acknowledges and asks back (\"Understood ... ?\") "
                 "instead of facing a harder task", _stagnant_complexity, "response"),
    FunctionRule("insufficient_qualification", "the answer asks for more information "
                 "(\"Sure ... ?\")", _insufficient_qualification, "response"),
    FunctionRule("loss_of_key_information", "the answer asks the user to provide something it needs "
                 "(\"please provide\"), not as a closing offer", _loss_of_key_information, "response"),
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
