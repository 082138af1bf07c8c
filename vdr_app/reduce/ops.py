"""Array helpers shared by the strategies: target counts, kept rows, group means, Ward partitions."""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from fractions import Fraction
from typing import Callable

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform


def target_count(n: int, keep: Fraction) -> int:
    """Vectors a view with share `keep` keeps of n patches: max(1, floor(n * keep)), exactly."""
    return max(1, math.floor(n * keep))


def kept(patches: np.ndarray, keep_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pruning result for the patches at `keep_idx`.

    Args:
        patches: float32 (n, d).
        keep_idx: int (k,) distinct indices of the kept patches, any order.

    Returns:
        vectors float32 (k, d) the kept rows in page order; groups int64 (n,) the row of each kept
        patch, -1 for the others.
    """
    keep_idx = np.sort(np.asarray(keep_idx, dtype=np.int64))
    groups = np.full(patches.shape[0], -1, dtype=np.int64)
    groups[keep_idx] = np.arange(keep_idx.size)
    return patches[keep_idx], groups


def compact(labels: np.ndarray) -> np.ndarray:
    """Relabel to 0..g-1 keeping the labels' order (-1 stays -1): every output row gets a patch."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(labels.shape, -1, dtype=np.int64)
    valid = labels >= 0
    out[valid] = np.unique(labels[valid], return_inverse=True)[1]
    return out


def group_means(patches: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The re-normalised mean of each group's patches.

    Args:
        patches: float32 (n, d).
        groups: int (n,) compact labels 0..k-1 (every label used), -1 for pruned patches.

    Returns:
        float32 (k, d): row g is mean(patches[groups == g]) scaled to unit length (a mean of
        exactly opposite vectors is zero and stays zero).
    """
    members = np.flatnonzero(groups >= 0)
    order = members[np.argsort(groups[members], kind="stable")]  # patches sorted by group
    counts = np.bincount(groups[members])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # Sums in float64: the mean's direction is all we keep, and a sum of ~10 unit vectors in
    # float32 loses digits the tests (and MaxSim ties) can see.
    sums = np.add.reduceat(patches[order].astype(np.float64), starts, axis=0)  # (k, d)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def profile_features(patches: np.ndarray) -> np.ndarray:
    """Points whose Euclidean geometry is that of the rows of the cosine-distance matrix.

    HierarchicalTokenPooler and Light-ColPali pass the square matrix D = 1 - E Eᵀ to Ward's
    `linkage` as n observations in R^n. Since D_i - D_j = -(e_i - e_j)ᵀ Eᵀ,
    ‖D_i - D_j‖² = (e_i - e_j)ᵀ M (e_i - e_j) with M = EᵀE (d, d). Writing M = L Lᵀ, the points
    Y = E L in R^d have exactly the same pairwise distances, at n·d² + n²·d cost instead of n³.
    So the published "quirk" is Ward in embedding space under the page's own second-moment metric.

    Args:
        patches: float32 (n, d).

    Returns:
        float64 (n, d).
    """
    e = patches.astype(np.float64)
    w, v = np.linalg.eigh(e.T @ e)  # (d,), (d, d)
    # Centre first: distances are translation invariant, and smaller norms mean less
    # cancellation in ‖y_i‖² + ‖y_j‖² - 2 y_i·y_j below.
    return (e - e.mean(axis=0)) @ (v * np.sqrt(np.clip(w, 0.0, None)))


def vector_features(patches: np.ndarray) -> np.ndarray:
    """The unit vectors themselves, centred (Ward on ‖e_i - e_j‖² = 2 - 2 cos): float64 (n, d)."""
    e = patches.astype(np.float64)
    return e - e.mean(axis=0)


def pairwise_distances(points: np.ndarray) -> np.ndarray:
    """Condensed Euclidean distances between rows, as scipy's `pdist(points)` but through BLAS.

    Args:
        points: float64 (n, f).

    Returns:
        float64 (n(n-1)/2,) distances of the pairs i < j in pdist's order.
    """
    # ‖y_i‖² + ‖y_j‖² - 2 y_i·y_j from one product. Scaling by √2 first makes the product
    # 2·y_i·y_j, so two passes over the (n, n) matrix finish it; numpy uses syrk for a product
    # with its own transpose.
    scaled = points * np.sqrt(2.0)
    gram = scaled @ scaled.T  # (n, n)
    half = 0.5 * gram.diagonal()  # ‖y_i‖²
    np.subtract(half[:, None], gram, out=gram)
    gram += half
    condensed = squareform(gram, checks=False)  # the upper triangle; the diagonal is unused
    np.maximum(condensed, 0.0, out=condensed)  # rounding can leave tiny negatives
    return np.sqrt(condensed, out=condensed)


def ward_labels(patches: np.ndarray, clusters: int, features: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Ward agglomerative clustering of `features(patches)` cut into at most `clusters` groups.

    Equal to `fcluster(linkage(features(patches), method="ward"), clusters, "maxclust")`, with the
    pairwise distances from `pairwise_distances` instead of scipy's pdist loop, and the tree
    memoised (see `ward_tree`).

    Args:
        patches: float32 (n, d) unit vectors.
        clusters: the number of clusters asked for, 1 <= clusters <= n.
        features: maps patches to float64 (n, f) observations (`profile_features`, `vector_features`).

    Returns:
        int64 (n,) labels 0..g-1 in fcluster's label order (g <= clusters; fewer only on ties).
    """
    n = patches.shape[0]
    if clusters >= n:
        return np.arange(n, dtype=np.int64)
    if clusters <= 1:
        return np.zeros(n, dtype=np.int64)
    return compact(fcluster(ward_tree(patches, features), t=clusters, criterion="maxclust") - 1)


_TREES: OrderedDict[bytes, np.ndarray] = OrderedDict()
_TREES_LOCK = threading.Lock()
_TREES_MAX = 64  # ~32 KB each for a 1024-patch page


def ward_tree(patches: np.ndarray, features: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """scipy's Ward linkage matrix of `features(patches)`, memoised by content.

    The tree does not depend on the number of clusters, so moving a factor slider on the same page
    (Explore tab, sweeps) only re-cuts it: features, distances and linkage run once per page.

    Returns:
        float64 (n - 1, 4) linkage matrix (read-only, shared between callers).
    """
    data = np.ascontiguousarray(patches)
    key = b"|".join([hashlib.blake2b(data.view(np.uint8), digest_size=16).digest(),
                     str((data.shape, data.dtype.str, features.__name__)).encode()])
    with _TREES_LOCK:
        tree = _TREES.get(key)
        if tree is not None:
            _TREES.move_to_end(key)
            return tree
    tree = linkage(pairwise_distances(features(data)), method="ward")
    tree.setflags(write=False)
    with _TREES_LOCK:
        _TREES[key] = tree
        while len(_TREES) > _TREES_MAX:
            _TREES.popitem(last=False)
    return tree
