"""Merging strategies: each output vector is the re-normalised mean of a group of patches.

Every function takes one page's `PageEmbedding` and its parameters and returns
(vectors float32 (k, d), groups int64 (n,), info dict); `reduce_page` wraps that in a `Reduction`.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from vdr_app.reduce.ops import compact, group_means, profile_features, target_count, vector_features, ward_labels
from vdr_app.reduce.prune import docpruner_keep
from vdr_app.reduce.registry import CHOICE, FLOAT, INT, MERGING, PRUNING, RATIO, Param, register
from vdr_app.types import PageEmbedding

FACTOR_9 = Param("keep", RATIO, "1/9", "share of patches kept as merged vectors (or factor = 1/keep)")
FEATURES = Param(
    "features",
    CHOICE,
    "profile",
    "profile: Ward on rows of 1 - cos (colpali-engine, Light-ColPali); vector: Ward on the unit vectors",
    choices=("profile", "vector"),
)
_FEATURES = {"profile": profile_features, "vector": vector_features}


@register(
    "pool1d",
    kinds={MERGING},
    params=(FACTOR_9,),
    doc="Average runs of consecutive patches in sequence order (1D spatial pooling).",
)
def pool1d(page: PageEmbedding, keep: Fraction) -> tuple:
    """Split the patch sequence into max(1, floor(n·keep)) consecutive runs of near-equal length.

    Run lengths differ by at most one (for a factor dividing n: windows of exactly `factor`, as
    published); nothing is zero-padded, so no mean is biased towards zero.
    """
    n = page.n_patches
    k = target_count(n, keep)
    groups = np.arange(n, dtype=np.int64) * k // n
    return group_means(page.patches, groups), groups, {}


def pool2d_kernel(keep: Fraction) -> tuple[int, int]:
    """The (rows, cols) kernel pool2d uses for a share `keep`, i.e. a factor f = 1/keep.

    rows = floor(√f), cols = max(1, floor(f/rows + ½)): perfect squares give s×s (4 → 2×2,
    9 → 3×3, 25 → 5×5, 49 → 7×7); other factors the nearest integer rectangle, wider than tall
    (2 → 1×2, 3 → 1×3, 6 → 2×3, 8 → 2×4, 12 → 3×4), since text runs along rows.
    """
    factor = 1 / keep
    rows = math.isqrt(math.floor(factor))
    cols = max(1, math.floor(factor / rows + Fraction(1, 2)))
    return rows, cols


@register(
    "pool2d",
    kinds={MERGING},
    params=(FACTOR_9,),
    doc="Average blocks of neighbouring patches on each region's grid (2D spatial pooling).",
)
def pool2d(page: PageEmbedding, keep: Fraction) -> tuple:
    """Average rows×cols blocks of grid neighbours (kernel from `pool2d_kernel`), region by region.

    Blocks tile each region from its top-left cell with stride = kernel ("ceil mode"); blocks cut
    by a ragged border average only the patches present (masked mean). Regions (colSmol's tiled
    page, its global thumbnail) are never mixed. Output order: region, block row, block column.
    The realised vector count is the number of non-empty blocks, so it exceeds n·keep by the
    border blocks.
    """
    rows, cols = pool2d_kernel(keep)
    cells = page.cells  # (n, 3): region, row, col
    region = cells[:, 0]
    row, col = cells[:, 1].copy(), cells[:, 2].copy()
    for r in np.unique(region):  # anchor every region's blocks at its own top-left cell
        members = region == r
        row[members] -= row[members].min()
        col[members] -= col[members].min()
    block_row, block_col = row // rows, col // cols
    key = (region * (block_row.max() + 1) + block_row) * (block_col.max() + 1) + block_col
    groups = np.unique(key, return_inverse=True)[1].astype(np.int64)
    return group_means(page.patches, groups), groups, {"kernel": [rows, cols]}


def _cluster_groups(patches: np.ndarray, keep: Fraction, features: str) -> np.ndarray:
    return ward_labels(patches, target_count(patches.shape[0], keep), _FEATURES[features])


@register(
    "cluster",
    kinds={MERGING},
    params=(FACTOR_9, FEATURES),
    doc="Hierarchical (Ward) clustering of the patches, one mean vector per cluster (Light-ColPali).",
)
def cluster(page: PageEmbedding, keep: Fraction, features: str) -> tuple:
    """Ward clustering into max(1, floor(n·keep)) clusters (n // factor), as colpali-engine.

    features="profile" (default) reproduces `HierarchicalTokenPooler` / Light-ColPali, whose
    published retention figures it is compared with: Ward on the rows of the cosine-distance
    matrix (see `ops.profile_features`); same partition, ~6-9× faster (benchmarks/bench_reduce.py).
    features="vector" is the textbook variant: Ward on the unit vectors, which minimises the
    within-cluster cosine scatter directly.
    """
    groups = _cluster_groups(page.patches, keep, features)
    return group_means(page.patches, groups), groups, {"features": features}


def _kmeans_pp(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007).

    Squared distances come from one Gram matrix (a BLAS syrk), so each of the k draws costs O(n);
    scipy's own "++" recomputes the distances to all chosen centres at every draw (~50× slower
    for a 1024-patch page at factor 9).

    Args:
        points: float64 (n, d).
        k: centres wanted, <= n.
        rng: the generator.

    Returns:
        float64 (k, d) initial centres, each a data point.
    """
    n = points.shape[0]
    gram = points @ points.T  # (n, n)
    sq = gram.diagonal().copy()
    first = int(rng.integers(n))
    chosen = [first]
    dist = np.maximum(sq + sq[first] - 2.0 * gram[first], 0.0)  # (n,) to the nearest chosen centre
    for _ in range(1, k):
        cumulative = np.cumsum(dist)
        if cumulative[-1] <= 0:  # fewer distinct points than centres: the rest repeat chosen ones
            idx = int(rng.integers(n))
        else:
            idx = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), n - 1)
        chosen.append(idx)
        np.minimum(dist, np.maximum(sq + sq[idx] - 2.0 * gram[idx], 0.0), out=dist)
    return points[chosen].copy()


def _lloyd(points: np.ndarray, centres: np.ndarray, max_iter: int) -> np.ndarray:
    """Lloyd iterations from `centres` until no label changes or `max_iter` rounds.

    The same algorithm as scipy's kmeans2 (an emptied cluster keeps its previous centre), but the
    assignment step is one BLAS product instead of vq's scalar loops: argmin ‖x - c‖² =
    argmax (x·c - ‖c‖²/2). It also stops as soon as the labels are stable.

    Args:
        points: float64 (n, d).
        centres: float64 (k, d) initial centres, updated in place.
        max_iter: the most rounds.

    Returns:
        int64 (n,) labels in 0..k-1 (some may be unused).
    """
    k = centres.shape[0]
    labels = np.full(points.shape[0], -1, dtype=np.int64)
    for _ in range(max_iter):
        scores = points @ centres.T  # (n, k)
        scores -= 0.5 * np.einsum("ij,ij->i", centres, centres)
        new = np.argmax(scores, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, points)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return labels


@register(
    "kmeans",
    kinds={MERGING},
    params=(FACTOR_9, Param("seed", INT, 0, "random seed of the k-means++ seeding", low=0, high=2**32 - 1)),
    doc="k-means clustering of the patches, one mean vector per cluster (SAP's Cluster baseline).",
)
def kmeans(page: PageEmbedding, keep: Fraction, seed: int) -> tuple:
    """k-means (Euclidean on the unit vectors) into max(1, floor(n·keep)) clusters.

    k-means++ seeding from `seed`, then at most 20 Lloyd rounds (`_lloyd`). A cluster left empty
    is dropped, so the count can fall below the target (info["empty_clusters"]); that needs a
    page with fewer distinct patches than clusters, or a rare Lloyd round that empties one.
    """
    n = page.n_patches
    k = target_count(n, keep)
    if k >= n:  # one cluster per patch; still a group mean, like every merging output
        groups = np.arange(n, dtype=np.int64)
        return group_means(page.patches, groups), groups, {"seed": seed, "empty_clusters": 0}
    points = page.patches.astype(np.float64)
    centres = _kmeans_pp(points, k, np.random.default_rng(seed))
    groups = compact(_lloyd(points, centres, max_iter=20))
    empty = k - int(groups.max()) - 1
    return group_means(page.patches, groups), groups, {"seed": seed, "empty_clusters": empty}


@register(
    "prune_then_merge",
    kinds={PRUNING, MERGING},
    params=(
        Param("k", FLOAT, -0.75, "DocPruner threshold: keep attention > mean + k·std", low=-10, high=10),
        Param("keep", RATIO, "1/4", "share of the DocPruner survivors kept as merged vectors (or factor)"),
        FEATURES,
    ),
    needs_attention=True,
    doc="Prune-then-Merge: DocPruner, then Ward clustering of the surviving patches (Yan et al. 2026).",
)
def prune_then_merge(page: PageEmbedding, k: float, keep: Fraction, features: str) -> tuple:
    """DocPruner with threshold k, then `cluster` on the survivors into max(1, floor(|kept|·keep)).

    Defaults are the paper's operating point (k = -0.75, merge factor 4).
    """
    survivors, info = docpruner_keep(page.attention, k)
    groups = np.full(page.n_patches, -1, dtype=np.int64)
    groups[survivors] = _cluster_groups(page.patches[survivors], keep, features)
    info.update(survivors=int(survivors.size), features=features)
    return group_means(page.patches, groups), groups, info
