"""Quality metrics: small hand-made sets with known answers, and block-wise code against brute force."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections.abc import Sequence

import dspy
import numpy as np
import pytest
from dspy.lm15 import Message, Response, TextPart, Usage

from autoevol.metrics.embeddings import (
    WordLlamaEmbedder,
    cluster_spread,
    earlier_duplicate_mask,
    embedding_diversity,
    greedy_keep_mask,
    near_duplicates,
    normalize_rows,
    parent_similarity,
)
from autoevol.metrics.quality import (
    QualityReport,
    compare_quality,
    dedup_indices,
    distinct_n,
    duplicate_rate,
    length_stats,
    lexical_stats,
    normalize_tag,
    normalize_tags,
    parent_duplicate_rate,
    quality_report,
    singularize,
    tag_instructions,
    tag_metrics,
)

needs_wordllama = pytest.mark.skipif(
    importlib.util.find_spec("wordllama") is None, reason="wordllama is not installed"
)


class HashingEmbedder:
    """Deterministic bag-of-words embedder: each lowercased word adds 1 to a hashed coordinate."""

    name = "hashing-bow"

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return normalize_rows(out)


class TableEmbedder:
    """Returns fixed vectors for known texts (for tag-merging tests)."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return normalize_rows(np.array([self.table[t] for t in texts], dtype=np.float32))


class TagEngine:
    """Scripted DSPy engine: answers a TagInstruction request with the tags listed for the
    instruction found in the user message; unknown instructions get an unparseable answer."""

    def __init__(self, tags_by_instruction: dict[str, list[str]]) -> None:
        self.tags_by_instruction = tags_by_instruction
        self.seen: list[str] = []

    def complete(self, request):  # noqa: ANN001 - dspy.lm15.Request
        user = request.messages[-1].text or ""
        match = re.search(r"\[\[ ## instruction ## \]\]\n(.*?)\n\n", user, re.S)
        instruction = match.group(1) if match else ""
        self.seen.append(instruction)
        if instruction in self.tags_by_instruction:
            tags = json.dumps(self.tags_by_instruction[instruction])
            text = f"[[ ## tags ## ]]\n{tags}\n\n[[ ## completed ## ]]"
        else:
            text = "I cannot tag that."
        return Response(
            id=None,
            model="scripted",
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=Usage(input_tokens=1, output_tokens=1, total_tokens=2),
        )


def scripted_lm(tags_by_instruction: dict[str, list[str]]) -> tuple[dspy.LM, TagEngine]:
    engine = TagEngine(tags_by_instruction)
    return dspy.LM("openai/scripted", engine=engine, cache=False), engine


DISTINCT = [
    "Solve the quadratic equation x^2 - 5x + 6 = 0 and explain each step.",
    "Write a haiku about autumn leaves falling in a quiet park.",
    "Explain how a hash table handles collisions with open addressing.",
    "Translate the sentence 'good morning' into French and German.",
    "List three causes of the French Revolution with one sentence each.",
    "Write a SQL query that returns the ten most recent orders per customer.",
]


# --------------------------------------------------------------------------- identical and planted


def test_identical_texts_have_zero_diversity_one_cluster_and_all_but_one_duplicates() -> None:
    texts = ["Write a poem about the sea."] * 5
    emb = HashingEmbedder().embed(texts)
    assert embedding_diversity(emb) == pytest.approx(0.0, abs=1e-6)
    spread = cluster_spread(emb)
    assert spread.k == 1 and spread.sizes == [5] and spread.entropy == 0.0
    assert duplicate_rate(texts) == pytest.approx(4 / 5)
    assert duplicate_rate(texts, emb) == pytest.approx(4 / 5)
    assert dedup_indices(texts, emb) == [0]


def test_exact_duplicates_ignore_case_and_whitespace_without_embeddings() -> None:
    texts = ["Add two numbers.", "add  two\nnumbers.", "Subtract two numbers."]
    assert duplicate_rate(texts) == pytest.approx(1 / 3)
    assert dedup_indices(texts) == [0, 2]


def test_planted_near_duplicate_is_found_with_hashing_embedder() -> None:
    planted = "Solve the quadratic equation x^2 - 5x + 6 = 0 and explain every step."
    texts = [*DISTINCT, planted]
    emb = HashingEmbedder().embed(texts)
    pairs = near_duplicates(emb, threshold=0.85)
    assert [(i, j) for i, j, _ in pairs] == [(0, len(texts) - 1)]
    assert pairs[0][2] >= 0.85
    assert duplicate_rate(texts, emb, threshold=0.85) == pytest.approx(1 / len(texts))
    assert duplicate_rate(texts) == 0.0  # not an exact duplicate
    assert dedup_indices(texts, emb, threshold=0.85) == list(range(len(DISTINCT)))


@needs_wordllama
def test_wordllama_embedder_offline_finds_planted_near_duplicate() -> None:
    embedder = WordLlamaEmbedder()
    planted = "Write a SQL query that returns the 10 most recent orders per customer."
    texts = [*DISTINCT, planted]
    emb = embedder.embed(texts)
    assert emb.shape == (len(texts), 256) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    pairs = near_duplicates(emb, threshold=0.9)
    assert [(i, j) for i, j, _ in pairs] == [(5, len(texts) - 1)]
    # loaded once per instance; identical texts collapse
    model = embedder._model
    same = embedder.embed(["Name the capital of Peru."] * 4)
    assert embedder._model is model
    assert embedding_diversity(same) == pytest.approx(0.0, abs=1e-5)
    assert cluster_spread(same).k == 1
    assert 0.0 < embedding_diversity(emb) < 1.0


# --------------------------------------------------------------------------- tagging


def test_tag_metrics_from_scripted_tagger() -> None:
    script = {"first task": ["a", "b"], "second task": ["a", "c"], "third task": ["a"]}
    lm, engine = scripted_lm(script)
    tags = tag_instructions(list(script), lm=lm, num_threads=2)
    assert tags == [["a", "b"], ["a", "c"], ["a"]]
    assert sorted(engine.seen) == sorted(script)
    metrics = tag_metrics(tags)
    assert metrics.complexity == pytest.approx(5 / 3)
    assert metrics.diversity == pytest.approx(1.0)
    assert (metrics.n_items, metrics.n_tags, metrics.n_unique_tags, metrics.n_untagged) == (3, 5, 3, 0)


def test_failed_tagging_call_yields_empty_list_not_an_error() -> None:
    lm, _ = scripted_lm({"known task": ["x", "y"]})
    tags = tag_instructions(["known task", "unknown task"], lm=lm, num_threads=1)
    assert tags == [["x", "y"], []]
    assert tag_metrics(tags).complexity == pytest.approx(1.0)
    skipped = tag_metrics(tags, skip_empty=True)
    assert (skipped.n_items, skipped.n_untagged, skipped.complexity) == (1, 1, 2.0)


def test_tag_instructions_without_any_lm_is_a_configuration_error() -> None:
    with dspy.context(lm=None), pytest.raises(ValueError, match="needs an LM"):
        tag_instructions(["x"])


@pytest.mark.parametrize(
    ("word", "singular"),
    [
        ("equations", "equation"), ("queries", "query"), ("analysis", "analysis"), ("class", "class"),
        ("classes", "class"), ("boxes", "box"), ("matches", "match"), ("physics", "physics"),
        ("status", "status"), ("apis", "api"), ("movies", "movie"), ("series", "series"),
        ("indices", "index"), ("gas", "gas"), ("databases", "database"), ("metrics", "metric"),
    ],
)
def test_singularize(word: str, singular: str) -> None:
    assert singularize(word) == singular


def test_normalize_tag_cleans_case_punctuation_whitespace_and_plural_head() -> None:
    assert normalize_tag("  Math   Word-Problems! ") == "math word problem"
    assert normalize_tag("SQL queries.") == "sql query"
    assert normalize_tag("C++") == "c++"


def test_normalize_tags_merges_equations_and_equation() -> None:
    lists = normalize_tags([["Equations", "Algebra"], ["equation"], ["algebra", "ALGEBRA."]])
    assert lists == [["equation", "algebra"], ["equation"], ["algebra"]]
    assert tag_metrics(lists).n_unique_tags == 2


def test_normalize_tags_merges_near_synonyms_into_the_most_frequent() -> None:
    embedder = TableEmbedder({
        "math problem": [1.0, 0.0, 0.0],
        "mathematics problem": [0.98, 0.2, 0.0],
        "poetry": [0.0, 0.0, 1.0],
    })
    lists = normalize_tags(
        [["mathematics problems"], ["math problem", "poetry"], ["math problem"]],
        embedder=embedder,
        similarity=0.9,
    )
    assert lists == [["math problem"], ["math problem", "poetry"], ["math problem"]]
    untouched = normalize_tags(
        [["mathematics problems"], ["math problem"]], embedder=embedder, similarity=0.999
    )
    assert untouched == [["mathematics problem"], ["math problem"]]


# --------------------------------------------------------------------------- geometry vs brute force


def random_unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    return normalize_rows(np.random.default_rng(seed).normal(size=(n, d)))


def test_sum_vector_diversity_equals_brute_force() -> None:
    emb = random_unit_rows(150, 12, seed=1)
    sims = emb.astype(np.float64) @ emb.T.astype(np.float64)
    n = len(emb)
    brute = float((1.0 - sims)[~np.eye(n, dtype=bool)].mean())
    assert embedding_diversity(emb) == pytest.approx(brute, rel=1e-6)
    assert embedding_diversity(emb[:1]) == 0.0


def planted_pairs_data(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(60, 8))
    noisy = base[[3, 10, 10, 41, 59]] + rng.normal(scale=0.05, size=(5, 8))
    return normalize_rows(np.vstack([base, noisy, base[[7]]]))


def test_blockwise_near_duplicates_equal_brute_force() -> None:
    emb = planted_pairs_data()
    threshold = 0.97
    sims = emb @ emb.T
    n = len(emb)
    brute = [(i, j) for i in range(n) for j in range(i + 1, n) if sims[i, j] >= threshold]
    assert len(brute) >= 6
    for block in (7, 16, 1024):
        found = near_duplicates(emb, threshold=threshold, block_size=block)
        assert [(i, j) for i, j, _ in found] == brute
        assert all(s == pytest.approx(float(sims[i, j]), abs=1e-5) for i, j, s in found)
        mask = earlier_duplicate_mask(emb, threshold=threshold, block_size=block)
        assert mask.tolist() == [any(sims[i, j] >= threshold for i in range(j)) for j in range(n)]


def test_blockwise_greedy_dedup_equals_sequential_greedy() -> None:
    emb = planted_pairs_data()
    threshold = 0.97
    kept: list[int] = []
    for j in range(len(emb)):
        if all(float(emb[i] @ emb[j]) < threshold for i in kept):
            kept.append(j)
    for block in (5, 64):
        assert np.flatnonzero(greedy_keep_mask(emb, threshold=threshold, block_size=block)).tolist() == kept


def test_cluster_spread_finds_three_even_blobs() -> None:
    rng = np.random.default_rng(0)
    centers = np.eye(3, 6)
    emb = normalize_rows(np.repeat(centers, 20, axis=0) + rng.normal(scale=0.02, size=(60, 6)))
    spread = cluster_spread(emb, inertia_share=0.3)
    assert spread.k == 3 and spread.reached
    assert spread.sizes == [20, 20, 20]
    assert spread.entropy == pytest.approx(1.0)
    uneven = cluster_spread(emb[np.r_[0:20, 20:35, 40:45]], inertia_share=0.3)
    assert uneven.k == 3 and uneven.sizes == [20, 15, 5]
    p = np.array([20, 15, 5]) / 40
    assert uneven.entropy == pytest.approx(float(-(p * np.log(p)).sum() / np.log(3)))


def test_cluster_spread_large_n_path_uses_minibatch_and_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    from autoevol.metrics import embeddings

    rng = np.random.default_rng(1)
    emb = normalize_rows(np.repeat(np.eye(4, 8), 30, axis=0) + rng.normal(scale=0.02, size=(120, 8)))
    monkeypatch.setattr(embeddings, "MINIBATCH_ABOVE", 50)
    monkeypatch.setattr(embeddings, "MULTI_INIT_UP_TO", 50)
    spread = cluster_spread(emb, inertia_share=0.2)
    assert spread.k == 4 and spread.sizes == [30, 30, 30, 30]


def test_cluster_spread_reports_when_share_is_not_reached() -> None:
    emb = random_unit_rows(40, 30, seed=5)
    spread = cluster_spread(emb, max_clusters=2, inertia_share=0.1)
    assert spread.k == 2 and not spread.reached and spread.inertia_ratio > 0.1


def test_parent_similarity_and_parent_duplicate_rate() -> None:
    embedder = HashingEmbedder()
    parents = ["Add two numbers.", "Sort a list of words.", "Name a planet."]
    children = ["add two  numbers.", "Sort a list of words by length, then alphabetically.", "Name a planet."]
    p, c = embedder.embed(parents), embedder.embed(children)
    sims = parent_similarity(p, c)
    assert sims[0] == pytest.approx(1.0) and sims[2] == pytest.approx(1.0) and sims[1] < 0.9
    assert parent_duplicate_rate(parents, children) == pytest.approx(2 / 3)
    assert parent_duplicate_rate(parents, children, p, c, threshold=0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        parent_similarity(p, c[:2])


# --------------------------------------------------------------------------- length and lexical


def test_distinct_n_on_known_text() -> None:
    assert distinct_n(["The cat sat on the mat."], 1) == pytest.approx(5 / 6)
    assert distinct_n(["The cat sat on the mat."], 2) == pytest.approx(1.0)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a b", "b a"], 2) == pytest.approx(1.0)  # no n-gram across items
    assert distinct_n([""], 2) == 0.0
    assert lexical_stats(["The cat", "the dog"]).vocabulary == 3


def test_length_stats() -> None:
    stats = length_stats(["one", "one two", "one two three four"])
    assert stats.words_mean == pytest.approx(7 / 3)
    assert stats.words_median == 2.0
    assert stats.words_p90 == pytest.approx(3.6)
    assert stats.chars_mean == pytest.approx((3 + 7 + 18) / 3)


# --------------------------------------------------------------------------- report


def test_quality_report_and_comparison() -> None:
    parents = DISTINCT[:3]
    children = [DISTINCT[0], DISTINCT[1] + " Use exactly seventeen syllables.", DISTINCT[2]]
    script = {children[0]: ["math", "equation"], children[1]: ["poetry"], children[2]: ["hashing"]}
    lm, _ = scripted_lm(script)
    embedder = HashingEmbedder()
    evolved = quality_report(children, parents=parents, embedder=embedder, tagger_lm=lm)
    assert evolved.n == 3 and evolved.embedder == "hashing-bow"
    assert evolved.tags is not None and evolved.tags.complexity == pytest.approx(4 / 3)
    assert evolved.parent_duplicate_rate == pytest.approx(2 / 3)
    assert evolved.duplicate_rate == 0.0 and evolved.clusters.k >= 1
    seed = quality_report(parents, embedder=embedder)
    assert seed.tags is None and seed.parent_similarity is None
    rows = compare_quality(seed, evolved)
    by_name = {name: (a, b) for name, a, b in rows}
    assert by_name["items"] == (3.0, 3.0)
    assert by_name["tag complexity"] == (None, pytest.approx(4 / 3))
    assert by_name["words (mean)"][1] > by_name["words (mean)"][0]
    assert QualityReport.model_validate_json(evolved.model_dump_json()) == evolved


def test_quality_report_on_empty_input() -> None:
    report = quality_report([], embedder=HashingEmbedder())
    assert report.n == 0 and report.embedding_diversity == 0.0 and report.duplicate_rate == 0.0
