"""Sentence embeddings and the geometry computed on them: diversity, clusters, near-duplicates.

Everything here works on a matrix of L2-normalized rows (one row per text), so a dot product is a
cosine similarity. Nothing builds an n x n matrix: pairwise figures come from a sum vector or from
block-wise matrix products, so the cost in memory stays linear in n.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, Field

logger = logging.getLogger(__name__)

#: Rows per block in block-wise similarity products (a 1024 x 1024 float32 block is 4 MB).
BLOCK_SIZE = 1024
#: Above this many rows, clustering uses MiniBatchKMeans instead of KMeans.
MINIBATCH_ABOVE = 20_000
#: Up to this many rows, k-means keeps the best of 3 initializations (above: 1).
MULTI_INIT_UP_TO = 2_000


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into a float32 matrix with one L2-normalized row per text."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns shape ``(len(texts), dim)``, rows of unit length (or zero)."""
        ...


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Return ``matrix`` as float32 with unit-length rows; all-zero rows stay zero."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-d embedding matrix, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def _import_wordllama_quietly() -> Any:
    """Import wordllama without keeping the root-logging setup it performs at import time."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    module = importlib.import_module("wordllama")
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    return module


class WordLlamaEmbedder:
    """Static token-embedding sentence vectors from WordLlama, loaded offline from the package.

    The weights ship inside the ``wordllama`` wheel, so loading never touches the network
    (``disable_download=True``). The model is loaded lazily on first use, once per instance.
    Texts are embedded in order of length so that padding inside a batch stays small.

    Args:
        config: WordLlama configuration name (the bundled one is ``"l2_supercat"``).
        dim: embedding width; the wheel bundles the 256-d weights.
        batch_size: texts per tokenizer/pooling batch.
    """

    def __init__(self, *, config: str = "l2_supercat", dim: int = 256, batch_size: int = 128) -> None:
        self.config = config
        self.dim = dim
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """A short identifier of the model, for reports."""
        return f"wordllama/{self.config}-{self.dim}"

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                spec = importlib.util.find_spec("wordllama")
                if spec is None or spec.origin is None:
                    raise ImportError("wordllama is not installed; pip install wordllama")
                package_dir = Path(spec.origin).parent
                wordllama = _import_wordllama_quietly()
                self._model = wordllama.WordLlama.load(
                    config=self.config, cache_dir=package_dir, dim=self.dim, disable_download=True
                )
                logger.debug("loaded WordLlama %s from %s", self.name, package_dir)
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into a ``(len(texts), dim)`` float32 matrix of unit rows."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        order = np.argsort([len(t) for t in texts], kind="stable")
        vectors = model.embed([texts[i] for i in order], norm=False, batch_size=self.batch_size)
        out = np.empty_like(vectors)
        out[order] = vectors
        return normalize_rows(out)


def embedding_diversity(emb: np.ndarray) -> float:
    """Mean pairwise cosine distance ``1 - cos`` over all pairs of distinct rows.

    Uses ``sum_{i != j} v_i . v_j = ||sum_i v_i||^2 - sum_i ||v_i||^2``, so it costs O(n d) time and
    O(d) extra memory. 0 when all rows are equal; fewer than two rows give 0.
    """
    emb = np.asarray(emb, dtype=np.float64)
    n = emb.shape[0]
    if n < 2:
        return 0.0
    total = emb.sum(axis=0)
    off_diagonal = float(total @ total) - float(np.einsum("ij,ij->", emb, emb))
    mean_cos = off_diagonal / (n * (n - 1))
    return float(min(max(1.0 - mean_cos, 0.0), 2.0))


class ClusterSpread(BaseModel):
    """How many clusters the embeddings need, and how evenly items spread over them."""

    k: int = Field(description="smallest number of clusters whose inertia falls under the share")
    entropy: float = Field(description="entropy of cluster sizes / log(k); 0 for k <= 1, 1 = even")
    inertia_ratio: float = Field(description="inertia at k divided by the 1-cluster inertia")
    reached: bool = Field(description="False when even max_clusters did not reach the share")
    sizes: list[int] = Field(default_factory=list, description="cluster sizes, largest first")


def _fit_kmeans(emb: np.ndarray, k: int, seed: int) -> tuple[float, np.ndarray]:
    """Fit k-means with ``k`` clusters; return (inertia, labels)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = emb.shape[0]
    n_init = 3 if n <= MULTI_INIT_UP_TO else 1
    if n > MINIBATCH_ABOVE:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=n_init, batch_size=4096)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=n_init)
    labels = model.fit_predict(emb)
    return float(model.inertia_), labels


def _geometric_grid(k_max: int) -> list[int]:
    grid, k = [], 1
    while k < k_max:
        grid.append(k)
        k *= 2
    return grid + [k_max]


def _distinct_rows(emb: np.ndarray) -> int:
    return int(np.unique(np.round(emb, 5), axis=0).shape[0])


def _spread(k: int, inertia_ratio: float, labels: np.ndarray, reached: bool) -> ClusterSpread:
    sizes = np.bincount(labels, minlength=k)
    sizes = sorted((int(s) for s in sizes if s > 0), reverse=True)
    entropy = 0.0
    if len(sizes) > 1:
        p = np.asarray(sizes, dtype=np.float64) / sum(sizes)
        entropy = float(-(p * np.log(p)).sum() / math.log(k))
    return ClusterSpread(k=k, entropy=entropy, inertia_ratio=inertia_ratio, reached=reached, sizes=sizes)


def cluster_spread(
    emb: np.ndarray, *, max_clusters: int = 50, inertia_share: float = 0.5, seed: int = 0
) -> ClusterSpread:
    """Smallest k whose k-means inertia is at most ``inertia_share`` of the 1-cluster inertia.

    k is searched over 1, 2, 4, 8, ... up to ``max_clusters`` (capped by the number of distinct
    rows), then refined by bisection between the last grid value that missed and the first that
    reached the share. Returns k, the normalized entropy of cluster sizes at k, and the sizes.
    """
    emb = np.asarray(emb, dtype=np.float32)
    n = emb.shape[0]
    if n == 0:
        return ClusterSpread(k=0, entropy=0.0, inertia_ratio=0.0, reached=True)
    base = float(((emb - emb.mean(axis=0)) ** 2).sum())
    k_max = min(max_clusters, _distinct_rows(emb))
    if base <= 1e-9 * n or k_max <= 1:
        return ClusterSpread(k=1, entropy=0.0, inertia_ratio=1.0, reached=base <= 1e-9 * n, sizes=[n])

    target = inertia_share * base
    fits: dict[int, tuple[float, np.ndarray]] = {1: (base, np.zeros(n, dtype=np.int64))}

    def fit(k: int) -> tuple[float, np.ndarray]:
        if k not in fits:
            fits[k] = _fit_kmeans(emb, k, seed)
        return fits[k]

    low, high = 1, None
    for k in _geometric_grid(k_max):
        if fit(k)[0] <= target:
            high = k
            break
        low = k
    if high is None:
        inertia, labels = fit(k_max)
        return _spread(k_max, inertia / base, labels, reached=False)
    while high - low > 1:
        mid = (low + high) // 2
        if fit(mid)[0] <= target:
            high = mid
        else:
            low = mid
    inertia, labels = fit(high)
    return _spread(high, inertia / base, labels, reached=True)


def _blocks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


def near_duplicates(
    emb: np.ndarray, *, threshold: float = 0.95, block_size: int = BLOCK_SIZE
) -> list[tuple[int, int, float]]:
    """All pairs ``(i, j, cos)`` with ``i < j`` and cosine >= ``threshold``, sorted by (i, j).

    Computed block by block over the upper triangle, ``block_size`` rows at a time. The number of
    pairs itself can be quadratic (a set of identical texts); use :func:`earlier_duplicate_mask`
    or :func:`greedy_keep_mask` when only per-item answers are needed.
    """
    emb = np.asarray(emb, dtype=np.float32)
    pairs: list[tuple[int, int, float]] = []
    for r0, r1 in _blocks(emb.shape[0], block_size):
        for c0, c1 in _blocks(emb.shape[0], block_size):
            if c1 <= r0:
                continue
            sims = emb[r0:r1] @ emb[c0:c1].T
            rows, cols = np.nonzero(sims >= threshold)
            for r, c in zip(rows.tolist(), cols.tolist()):
                if c0 + c > r0 + r:
                    pairs.append((r0 + r, c0 + c, float(sims[r, c])))
    pairs.sort()
    return pairs


def earlier_duplicate_mask(
    emb: np.ndarray, *, threshold: float = 0.95, block_size: int = BLOCK_SIZE
) -> np.ndarray:
    """Boolean mask: item j has some earlier item i < j with cosine >= ``threshold``."""
    emb = np.asarray(emb, dtype=np.float32)
    n = emb.shape[0]
    mask = np.zeros(n, dtype=bool)
    for c0, c1 in _blocks(n, block_size):
        for r0, r1 in _blocks(c1, block_size):
            hits = emb[r0:r1] @ emb[c0:c1].T >= threshold
            if r1 > c0:  # the block touches the diagonal: keep only row < column
                rows = np.arange(r0, r1)[:, None]
                cols = np.arange(c0, c1)[None, :]
                hits &= rows < cols
            mask[c0:c1] |= hits.any(axis=0)
    return mask


def greedy_keep_mask(
    emb: np.ndarray, *, threshold: float = 0.95, block_size: int = BLOCK_SIZE
) -> np.ndarray:
    """Boolean mask of items kept by greedy deduplication in order: an item is dropped when it is
    a near-duplicate (cosine >= ``threshold``) of an item already kept. First occurrence wins."""
    emb = np.asarray(emb, dtype=np.float32)
    n = emb.shape[0]
    keep = np.zeros(n, dtype=bool)
    for b0, b1 in _blocks(n, block_size):
        alive = np.ones(b1 - b0, dtype=bool)
        for k0, k1 in _blocks(b0, block_size):
            kept = np.flatnonzero(keep[k0:k1]) + k0
            if kept.size:
                alive &= ~(emb[b0:b1] @ emb[kept].T >= threshold).any(axis=1)
        inner = emb[b0:b1] @ emb[b0:b1].T >= threshold
        for i in range(b1 - b0):
            if alive[i]:
                keep[b0 + i] = True
                alive[i + 1 :] &= ~inner[i, i + 1 :]
    return keep


def parent_similarity(parent_emb: np.ndarray, child_emb: np.ndarray) -> np.ndarray:
    """Row-wise cosine between each child and its own parent (same row index)."""
    parent_emb = np.asarray(parent_emb, dtype=np.float32)
    child_emb = np.asarray(child_emb, dtype=np.float32)
    if parent_emb.shape != child_emb.shape:
        raise ValueError(f"parent and child shapes differ: {parent_emb.shape} vs {child_emb.shape}")
    return np.einsum("ij,ij->i", parent_emb, child_emb)
