"""Data quality of an instruction set: complexity, diversity, duplicates and length.

The paper (Table 4) measures complexity and diversity with InsTag: an LLM tags each instruction
with fine-grained intents; complexity is the mean number of tags per item and diversity the number
of unique tags per item. That needs an LM, so this module also gives LM-free figures: embedding
diversity and cluster spread (see :mod:`autoevol.metrics.embeddings`), exact and near-duplicate
rates, similarity to parent instructions, and length and lexical statistics.
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from contextlib import nullcontext
from collections.abc import Sequence

import dspy
import numpy as np
from dspy.utils.parallelizer import ParallelExecutor
from pydantic import BaseModel, Field

from autoevol.metrics.embeddings import (
    ClusterSpread,
    Embedder,
    WordLlamaEmbedder,
    cluster_spread,
    earlier_duplicate_mask,
    embedding_diversity,
    greedy_keep_mask,
    normalize_rows,
    parent_similarity,
)
from autoevol.signatures.tag import TagInstruction

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- tagging (InsTag)


def tag_instructions(
    instructions: Sequence[str], *, lm: dspy.LM | None = None, num_threads: int = 4
) -> list[list[str]]:
    """Tag each instruction with :class:`TagInstruction`; one tag list per instruction, in order.

    Runs under ``dspy.context(lm=lm)`` when ``lm`` is given, else with the configured LM. A failed
    call (LM error, unparseable answer) is logged and yields an empty list; it never raises.
    """
    if lm is None and dspy.settings.lm is None:
        raise ValueError("tag_instructions needs an LM: pass lm= or dspy.configure(lm=...)")
    predictor = dspy.Predict(TagInstruction)

    def tag_one(item: tuple[int, str]) -> list[str]:
        index, instruction = item
        try:
            tags = predictor(instruction=instruction).tags
            return [str(t) for t in tags if str(t).strip()]
        except Exception as exc:  # noqa: BLE001 - a failed tagging call must not stop the report
            logger.warning("tagging instruction %d failed: %s", index, exc)
            return []

    executor = ParallelExecutor(
        num_threads=num_threads,
        disable_progress_bar=True,
        max_errors=len(instructions) + 1,
        timeout=0,  # no straggler resubmission: a slow local LM would be asked twice
    )
    with dspy.context(lm=lm) if lm is not None else nullcontext():
        results = executor.execute(tag_one, list(enumerate(instructions)))
    return [r if isinstance(r, list) else [] for r in results]


_KEEP_CHARS = "+#"  # "c++", "c#" are tags worth keeping apart from "c"
_PUNCT = re.compile("[" + re.escape("".join(c for c in string.punctuation if c not in _KEEP_CHARS)) + "]")
_NOT_PLURAL = {
    "series", "species", "news", "pandas", "kubernetes", "bias", "lens", "gas", "canvas", "alias",
    "atlas", "chaos", "ethos", "macos", "ios", "always", "perhaps", "whereas", "yes", "thus", "plus",
    "axis", "tennis", "iris",
}
_IRREGULAR = {
    "indices": "index", "matrices": "matrix", "vertices": "vertex", "analyses": "analysis",
    "hypotheses": "hypothesis", "syntheses": "synthesis", "parentheses": "parenthesis",
    "theses": "thesis", "criteria": "criterion", "children": "child", "caches": "cache",
    "niches": "niche", "headaches": "headache", "metrics": "metric", "topics": "topic",
    "lyrics": "lyric", "characteristics": "characteristic", "heuristics": "heuristic",
}
#: "-ies" plurals of words ending in "-ie" (not "-y").
_IE_PLURALS = {"movies", "cookies", "calories", "zombies", "selfies", "brownies", "pies", "ties", "lies"}
#: Endings of words that only look plural: class, status, analysis, physics.
_SINGULAR_ENDINGS = ("ss", "us", "sis", "ics")


def singularize(word: str) -> str:
    """Singular of a simple English plural ("queries" -> "query", "boxes" -> "box"); words that only
    look plural ("analysis", "class", "physics", "status") are returned unchanged."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) < 4 or word in _NOT_PLURAL or not word.endswith("s") or word.endswith(_SINGULAR_ENDINGS):
        return word
    if word.endswith("ies") and word not in _IE_PLURALS:
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes", "zzes")):
        return word[:-2]
    return word[:-1]


def normalize_tag(tag: str) -> str:
    """Lowercase, drop punctuation (hyphens become spaces), collapse whitespace, singularize the
    last word (the head of a noun phrase)."""
    text = _PUNCT.sub(" ", tag.lower().replace("-", " ").replace("_", " "))
    words = text.split()
    if words:
        words[-1] = singularize(words[-1])
    return " ".join(words)


def normalize_tags(
    tag_lists: Sequence[Sequence[str]], *, embedder: Embedder | None = None, similarity: float = 0.9
) -> list[list[str]]:
    """Normalize tags lexically (:func:`normalize_tag`) and, with an ``embedder``, merge tags whose
    cosine similarity is >= ``similarity`` into one canonical tag, the most frequent of the group
    (ties: alphabetical). Empty tags and repeats within one item are dropped; order is kept."""
    lists = [[t for t in (normalize_tag(tag) for tag in tags) if t] for tags in tag_lists]
    if embedder is not None:
        mapping = _synonym_map(Counter(t for tags in lists for t in tags), embedder, similarity)
        lists = [[mapping[t] for t in tags] for tags in lists]
    return [list(dict.fromkeys(tags)) for tags in lists]


def _synonym_map(counts: Counter[str], embedder: Embedder, similarity: float) -> dict[str, str]:
    """Greedy grouping: each unassigned tag, most frequent first, claims every unassigned tag at
    cosine >= ``similarity``. Computed block-wise, never as a full tag x tag matrix."""
    tags = sorted(counts, key=lambda t: (-counts[t], t))
    if not tags:
        return {}
    emb = normalize_rows(embedder.embed(tags))
    owner = np.full(len(tags), -1, dtype=np.int64)
    for start in range(0, len(tags), 1024):
        sims = emb[start : start + 1024] @ emb.T >= similarity
        for offset, row in enumerate(sims):
            i = start + offset
            if owner[i] < 0:
                owner[(owner < 0) & row] = i
                owner[i] = i
    return {tag: tags[owner[i]] for i, tag in enumerate(tags)}


class TagMetrics(BaseModel):
    """InsTag figures: complexity = tags per item, diversity = unique tags per item."""

    n_items: int
    n_tags: int = Field(description="total tags over all items")
    n_unique_tags: int
    n_untagged: int = Field(description="items with no tag (in a report: failed tagging calls)")
    complexity: float
    diversity: float


def tag_metrics(tag_lists: Sequence[Sequence[str]], *, skip_empty: bool = False) -> TagMetrics:
    """Complexity (mean tags per item) and diversity (unique tags / items) of tagged items.

    With ``skip_empty`` items without tags are left out of both denominators (use it when an empty
    list means a failed tagging call rather than an instruction without intent).
    """
    untagged = sum(1 for tags in tag_lists if not tags)
    items = [list(tags) for tags in tag_lists if tags or not skip_empty]
    n_tags = sum(len(tags) for tags in items)
    unique = len({t for tags in items for t in tags})
    n = len(items)
    return TagMetrics(
        n_items=n,
        n_tags=n_tags,
        n_unique_tags=unique,
        n_untagged=untagged,
        complexity=n_tags / n if n else 0.0,
        diversity=unique / n if n else 0.0,
    )


# --------------------------------------------------------------------------- length and lexical

_WORD = re.compile(r"\w+")


class LengthStats(BaseModel):
    """Words (whitespace-separated) and characters per instruction."""

    words_mean: float
    words_median: float
    words_p90: float
    chars_mean: float
    chars_p90: float


class LexicalStats(BaseModel):
    """Distinct-n: distinct n-grams / total n-grams over the dataset (lowercased word tokens,
    n-grams never cross an instruction boundary)."""

    distinct_1: float
    distinct_2: float
    vocabulary: int = Field(description="number of distinct word tokens")


def length_stats(instructions: Sequence[str]) -> LengthStats:
    """Mean, median and 90th percentile of words per instruction; mean and p90 of characters."""
    if not instructions:
        return LengthStats(words_mean=0.0, words_median=0.0, words_p90=0.0, chars_mean=0.0, chars_p90=0.0)
    words = np.array([len(t.split()) for t in instructions], dtype=np.float64)
    chars = np.array([len(t) for t in instructions], dtype=np.float64)
    return LengthStats(
        words_mean=float(words.mean()),
        words_median=float(np.median(words)),
        words_p90=float(np.percentile(words, 90)),
        chars_mean=float(chars.mean()),
        chars_p90=float(np.percentile(chars, 90)),
    )


def distinct_n(instructions: Sequence[str], n: int) -> float:
    """Distinct n-grams divided by total n-grams over all instructions (0 when there are none)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in instructions:
        tokens = _WORD.findall(text.lower())
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def lexical_stats(instructions: Sequence[str]) -> LexicalStats:
    """Distinct-1, distinct-2 and vocabulary size of the instructions."""
    vocabulary = {w for text in instructions for w in _WORD.findall(text.lower())}
    return LexicalStats(
        distinct_1=distinct_n(instructions, 1),
        distinct_2=distinct_n(instructions, 2),
        vocabulary=len(vocabulary),
    )


# --------------------------------------------------------------------------- duplicates


def normalize_text(text: str) -> str:
    """Case- and whitespace-insensitive key for exact-duplicate detection."""
    return " ".join(text.lower().split())


def first_occurrences(texts: Sequence[str]) -> list[int]:
    """For each text, the index of the first text with the same :func:`normalize_text` key."""
    first: dict[str, int] = {}
    return [first.setdefault(normalize_text(t), i) for i, t in enumerate(texts)]


def _representatives(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(first-occurrence index per item, indices of the items that are first occurrences)."""
    first = np.asarray(first_occurrences(texts), dtype=np.int64)
    return first, np.flatnonzero(first == np.arange(len(texts)))


def duplicate_mask(
    texts: Sequence[str], emb: np.ndarray | None = None, *, threshold: float = 0.95
) -> np.ndarray:
    """Boolean mask: the item repeats an earlier one, exactly (normalized text) or, when ``emb`` is
    given, by embedding cosine >= ``threshold``. Embeddings are compared among first occurrences."""
    first, reps = _representatives(texts)
    mask = first != np.arange(len(texts))
    if emb is not None and reps.size:
        mask[reps] = earlier_duplicate_mask(np.asarray(emb)[reps], threshold=threshold)
    return mask


def duplicate_rate(
    texts: Sequence[str], emb: np.ndarray | None = None, *, threshold: float = 0.95
) -> float:
    """Share of items that have an earlier exact or near-duplicate (see :func:`duplicate_mask`)."""
    return float(duplicate_mask(texts, emb, threshold=threshold).mean()) if len(texts) else 0.0


def dedup_indices(
    texts: Sequence[str], emb: np.ndarray | None = None, *, threshold: float = 0.95
) -> list[int]:
    """Indices to keep, ascending: exact repeats go first, then (with ``emb``) every item that is a
    near-duplicate of an item already kept. First occurrence wins."""
    _, reps = _representatives(texts)
    if emb is None or not reps.size:
        return reps.tolist()
    keep = greedy_keep_mask(np.asarray(emb)[reps], threshold=threshold)
    return reps[keep].tolist()


def parent_duplicate_rate(
    parents: Sequence[str],
    children: Sequence[str],
    parent_emb: np.ndarray | None = None,
    child_emb: np.ndarray | None = None,
    *,
    threshold: float = 0.95,
) -> float:
    """Share of children that equal their parent (normalized text) or, with embeddings, have cosine
    >= ``threshold`` to it: evolutions that changed (almost) nothing."""
    if len(parents) != len(children):
        raise ValueError(f"{len(parents)} parents for {len(children)} children")
    if not children:
        return 0.0
    same = np.array([normalize_text(p) == normalize_text(c) for p, c in zip(parents, children)])
    if parent_emb is not None and child_emb is not None:
        same |= parent_similarity(parent_emb, child_emb) >= threshold
    return float(same.mean())


# --------------------------------------------------------------------------- report


class QualityReport(BaseModel):
    """Quality figures of one instruction set (see :func:`quality_report`)."""

    n: int
    embedder: str | None = None
    length: LengthStats
    lexical: LexicalStats
    embedding_diversity: float = Field(description="mean pairwise cosine distance")
    clusters: ClusterSpread
    exact_duplicate_rate: float
    duplicate_rate: float = Field(description="exact or near-duplicate of an earlier item")
    dup_threshold: float
    tags: TagMetrics | None = None
    parent_similarity: float | None = Field(default=None, description="mean cosine to the parent")
    parent_duplicate_rate: float | None = None

    def figures(self) -> dict[str, float | None]:
        """The report as an ordered ``{metric name: value}`` mapping, for tables and comparisons."""
        tags = self.tags
        return {
            "items": float(self.n),
            "words (mean)": self.length.words_mean,
            "words (median)": self.length.words_median,
            "words (p90)": self.length.words_p90,
            "characters (mean)": self.length.chars_mean,
            "characters (p90)": self.length.chars_p90,
            "distinct-1": self.lexical.distinct_1,
            "distinct-2": self.lexical.distinct_2,
            "vocabulary": float(self.lexical.vocabulary),
            "embedding diversity": self.embedding_diversity,
            "clusters": float(self.clusters.k),
            "cluster entropy": self.clusters.entropy,
            "exact duplicate rate": self.exact_duplicate_rate,
            "duplicate rate": self.duplicate_rate,
            "tag complexity": tags.complexity if tags else None,
            "tag diversity": tags.diversity if tags else None,
            "parent similarity": self.parent_similarity,
            "parent duplicate rate": self.parent_duplicate_rate,
        }


def quality_report(
    instructions: Sequence[str],
    *,
    parents: Sequence[str] | None = None,
    embedder: Embedder | None = None,
    tagger_lm: dspy.LM | None = None,
    dup_threshold: float = 0.95,
) -> QualityReport:
    """Measure an instruction set. ``parents[i]`` is the instruction ``instructions[i]`` evolved
    from (optional); ``embedder`` defaults to :class:`WordLlamaEmbedder`; InsTag tags are computed
    only when ``tagger_lm`` is given (one LM call per instruction)."""
    instructions = [str(t) for t in instructions]
    if parents is not None and len(parents) != len(instructions):
        raise ValueError(f"{len(parents)} parents for {len(instructions)} instructions")
    embedder = embedder if embedder is not None else WordLlamaEmbedder()
    emb = _embed(embedder, instructions)
    figures: dict[str, object] = {}
    if parents is not None:
        parents = [str(p) for p in parents]
        parent_emb = _embed(embedder, parents)
        figures["parent_similarity"] = float(parent_similarity(parent_emb, emb).mean()) if parents else None
        figures["parent_duplicate_rate"] = parent_duplicate_rate(
            parents, instructions, parent_emb, emb, threshold=dup_threshold
        )
    if tagger_lm is not None:
        tags = normalize_tags(tag_instructions(instructions, lm=tagger_lm), embedder=embedder)
        figures["tags"] = tag_metrics(tags, skip_empty=True)
    return QualityReport(
        n=len(instructions),
        embedder=getattr(embedder, "name", type(embedder).__name__),
        length=length_stats(instructions),
        lexical=lexical_stats(instructions),
        embedding_diversity=embedding_diversity(emb),
        clusters=cluster_spread(emb),
        exact_duplicate_rate=duplicate_rate(instructions),
        duplicate_rate=duplicate_rate(instructions, emb, threshold=dup_threshold),
        dup_threshold=dup_threshold,
        **figures,
    )


def _embed(embedder: Embedder, texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, 1), dtype=np.float32)
    return normalize_rows(embedder.embed(texts))


def compare_quality(
    a: QualityReport, b: QualityReport
) -> list[tuple[str, float | None, float | None]]:
    """Rows ``(metric, value in a, value in b)`` for a side-by-side table; a metric missing from one
    report (no tags, no parents) shows ``None`` there. Metrics absent from both are left out."""
    fa, fb = a.figures(), b.figures()
    names = list(dict.fromkeys([*fa, *fb]))
    rows = [(name, fa.get(name), fb.get(name)) for name in names]
    return [row for row in rows if row[1] is not None or row[2] is not None]
