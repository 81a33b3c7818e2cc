"""Text helpers of the cheap failure rules: patterns, quoting, sentences, code and bracket checks."""

from __future__ import annotations

import re


def words(text: str | None) -> list[str]:
    """Whitespace-separated words."""
    return (text or "").split()


def normalize(text: str) -> str:
    """Casefolded text with runs of whitespace made single spaces."""
    return " ".join(text.split()).casefold()


def quote(text: str, limit: int = 80) -> str:
    """A one-line quotation of ``text``, cut to about ``limit`` characters."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 3].rstrip() + "..."
    return f'"{flat}"'


def tail(text: str, limit: int = 40) -> str:
    """A one-line quotation of the end of ``text``."""
    flat = " ".join(text.split())
    return quote(flat if len(flat) <= limit else "..." + flat[-(limit - 3):], limit + 3)


def clean(text: str) -> str:
    """Straighten typographic apostrophes and quotes so that patterns stay simple."""
    return text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')


def phrases(*items: str) -> re.Pattern[str]:
    """A case-insensitive pattern matching any phrase at word boundaries, spaces flexible."""
    parts = []
    for phrase in items:
        body = r"\s+".join(re.escape(word) for word in phrase.split())
        left = r"\b" if phrase[0].isalnum() else ""
        right = r"\b" if phrase[-1].isalnum() else ""
        parts.append(left + body + right)
    return re.compile("|".join(parts), re.IGNORECASE)


def opening(*items: str) -> re.Pattern[str]:
    """A case-insensitive pattern matching text that starts with one of ``items``."""
    parts = []
    for phrase in items:
        body = r"\s+".join(re.escape(word) for word in phrase.split())
        # a word opener must end at a word boundary and not continue as a compound ("Sure-fire")
        parts.append(body + (r"\b(?!-)" if phrase[-1].isalnum() else ""))
    return re.compile(r"^\s*[\"'*_#>\s]*(?:" + "|".join(parts) + ")", re.IGNORECASE)


_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")


def prose(text: str) -> str:
    """``text`` without its fenced code blocks."""
    return _FENCED.sub("\n", text)


def sentences(text: str) -> list[str]:
    """Sentences and lines of ``text``, stripped, empty ones left out."""
    return [part.strip() for part in _SENTENCE_BREAK.split(text) if part.strip()]


#: Request words: imperative verbs, question phrases and indirect requests. Words that are often
#: nouns or relative pronouns in a plain statement ("state", "name", "which", "where") are left out.
_REQUEST = phrases(
    "calculate", "compute", "determine", "find", "how", "what", "why", "explain", "write", "solve",
    "list", "describe", "show", "prove", "give", "estimate", "identify", "evaluate", "derive",
    "compare", "analyze", "analyse", "discuss", "create", "implement", "generate", "suggest",
    "recommend", "provide", "tell", "predict", "summarize", "summarise", "simplify", "convert",
    "classify", "choose", "select", "translate", "rewrite", "draft", "compose", "propose", "verify",
    "decide", "assess", "define", "express", "work out", "figure out", "design", "develop", "build",
    "modify", "extend", "fix", "optimize", "optimise", "refactor", "debug", "outline", "return",
    "can you", "could you", "please", "help me", "i need", "i want", "i'd like", "i would like",
    "i'm looking for",
)
#: The end of a code task: a docstring, a placeholder body or a to-do comment, before any closing fence.
_STUB_END = re.compile(r"(?:\"\"\"|'''|\bpass|\.\.\.|NotImplementedError(?:\(\))?|#[^\n]*)\s*(?:```)?\s*$")


def is_code_task(text: str) -> bool:
    """Whether ``text`` poses a code task: doctest examples, or a stub that ends in its docstring."""
    return ">>>" in text or bool(_STUB_END.search(text))


def asks_something(text: str, *, edges: bool = False) -> bool:
    """Whether ``text`` asks for something: a question, a request word, or a code task.

    With ``edges``, only the first and the last sentence count (where an instruction says what
    it wants); an answer pasted in place of a rewrite seldom asks anything there.
    """
    if is_code_task(text):
        return True
    parts = sentences(prose(clean(text)))
    if edges:
        parts = parts[:1] + parts[-1:]
    return any("?" in part or _REQUEST.search(part) for part in parts)


#: A line of code: indented, a doctest, a return or a definition ("    return a" is not cut off).
_CODE_LINE = re.compile(r"^(?:\s{2,}|\t|\s*>>>|\s*(?:return|def|class)\b)")
#: The letter "a" used as a variable ("a + b", "let a be", "sides a", "in terms of a").
_A_VARIABLE = re.compile(
    r"(?<![\w'])a\s*(?:[=+*/^<>\u00b2]|,\s*[b-z]\b|\s+(?:and|or)\s+[b-z]\b)"
    r"|(?:[=+*/^<>]|\w\()\s*a(?![\w'])"
    r"|\blet\s+a\s+(?:be|and|=)|\b(?:variables?|constants?|parameters?|integers?|numbers?|sides?)\s+a(?![\w'])"
    r"|(?:in\s+terms\s+of|with\s+respect\s+to|solve\s+for|values?\s+of)\s+a\s*$",
    re.IGNORECASE)
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


def dangling_word(text: str) -> str | None:
    """The function word a cut-off text ends on, if any (a finished sentence never does)."""
    stripped = text.rstrip()
    match = _LAST_WORD.search(stripped)
    if not match or _CODE_LINE.match(stripped.rsplit("\n", 1)[-1]):
        return None
    word = match.group(1)
    before = stripped[: match.start(1)].split()
    two = f"{before[-1].lower()} {word}" if before else word
    if two in _ALWAYS_DANGLING:
        return two
    if word == "a" and _A_VARIABLE.search(stripped):  # "express y in terms of a"
        return None
    if word in _ALWAYS_DANGLING:
        return word
    if word in _PREPOSITIONS and not (len(before) >= 2 and before[-2].lower() == "to"):
        sentence = _SENTENCE_END.split(stripped)[-1].strip()
        if not _QUESTION_START.match(sentence):
            return word
    return None


#: Quoted strings, and a bracket named on its own ("the first unmatched ( in s").
_QUOTED = re.compile(r"\"[^\"\n]*\"|(?<!\w)'[^'\n]*'(?!\w)|`[^`\n]*`|(?<!\S)[(\[{](?=[\s,.;:?!])")


def unclosed_brackets(text: str) -> list[str]:
    """Opening brackets still open at the end of ``text`` (quoted strings and named brackets ignored).

    A ")" or "]" closes either "(" or "[", so half-open intervals ("[0, 5)", "(0, 1]") are closed.
    """
    stack: list[str] = []
    for char in _QUOTED.sub("", text):
        if char in "([{":
            stack.append(char)
        elif stack and ((char == "}" and stack[-1] == "{") or (char in ")]" and stack[-1] in "([")):
            stack.pop()
    return stack


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
TOKEN = re.compile(r"\w+(?:'\w+)*")
