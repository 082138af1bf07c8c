"""Pruning strategies: keep some patches as they are, drop the rest (group -1).

Every function takes one page's `PageEmbedding` and its parameters and returns
(vectors float32 (k, d), groups int64 (n,), info dict); `reduce_page` wraps that in a `Reduction`.
Kept vectors are the original rows in page order.
"""

from __future__ import annotations

import zlib
from fractions import Fraction

import numpy as np

from vdr_app.reduce.ops import kept, target_count
from vdr_app.reduce.registry import FLOAT, INT, PRUNING, RATIO, Param, register
from vdr_app.types import PageEmbedding

KEEP_HALF = Param("keep", RATIO, "1/2", "share of image patches kept (or factor = 1/keep)")


@register("identity", doc="Keep every patch unchanged (the full index; alias: full).")
def identity(page: PageEmbedding) -> tuple:
    """Keep every patch unchanged."""
    n = page.n_patches
    return page.patches, np.arange(n, dtype=np.int64), {}


@register(
    "random",
    kinds={PRUNING},
    params=(KEEP_HALF, Param("seed", INT, 0, "random seed", low=0, high=2**32 - 1)),
    doc="Keep a uniformly random subset of patches (Light-ColPali's strong pruning baseline).",
)
def random(page: PageEmbedding, keep: Fraction, seed: int) -> tuple:
    """Keep max(1, floor(n·keep)) patches drawn uniformly without replacement.

    The generator is seeded with (seed, CRC-32 of the page's patch bytes): deterministic for a
    given seed and page, yet pages of equal size do not all lose the same grid positions.
    """
    n = page.n_patches
    rng = np.random.default_rng([seed, zlib.crc32(page.patches.tobytes())])
    keep_idx = rng.permutation(n)[: target_count(n, keep)]
    vectors, groups = kept(page.patches, keep_idx)
    return vectors, groups, {"seed": seed}


@register(
    "attention",
    kinds={PRUNING},
    params=(KEEP_HALF,),
    needs_attention=True,
    doc="Keep the patches the final token attends to most (fixed-ratio attention pruning).",
)
def attention(page: PageEmbedding, keep: Fraction) -> tuple:
    """Keep the max(1, floor(n·keep)) patches with the highest attention (ties: page order)."""
    n = page.n_patches
    order = np.argsort(-page.attention.astype(np.float64), kind="stable")
    vectors, groups = kept(page.patches, order[: target_count(n, keep)])
    return vectors, groups, {}


def docpruner_keep(attention: np.ndarray, k: float) -> tuple[np.ndarray, dict]:
    """DocPruner's adaptive rule (Yan et al. 2025, Algorithm 1).

    Keep patch j when a_j > μ + k·σ, with μ the mean and σ the population standard deviation
    (ddof=0) of the page's attention; if none passes, keep the single argmax.

    Args:
        attention: float (n,) final-token attention to each patch.
        k: threshold in standard deviations.

    Returns:
        int64 (k,) the kept indices in page order, and info (threshold, mean, std, k).
    """
    a = attention.astype(np.float64)
    mean, std = float(a.mean()), float(a.std())
    threshold = mean + k * std
    keep_idx = np.flatnonzero(a > threshold)
    if keep_idx.size == 0:
        keep_idx = np.array([int(np.argmax(a))], dtype=np.int64)
    return keep_idx, {"k": k, "threshold": threshold, "attention_mean": mean, "attention_std": std}


@register(
    "docpruner",
    kinds={PRUNING},
    params=(Param("k", FLOAT, -0.25, "keep patches with attention > mean + k·std", low=-10, high=10),),
    needs_attention=True,
    doc="DocPruner: keep patches whose attention exceeds mean + k·std of the page (adaptive ratio).",
)
def docpruner(page: PageEmbedding, k: float) -> tuple:
    """DocPruner: the kept share adapts to the page (see `docpruner_keep`)."""
    keep_idx, info = docpruner_keep(page.attention, k)
    vectors, groups = kept(page.patches, keep_idx)
    return vectors, groups, info
