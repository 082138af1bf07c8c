"""Token reduction: pruning and merging strategies over one page's patch embeddings.

Pure numpy/scipy (no torch). Public entry points:

    reduce_page(page, "cluster:factor=9") -> Reduction   (`...@int8`/`@binary`: also quantised)
    rebuild_vectors(patches, groups, spec) -> the view's float vectors from the full patches
    parse_spec(text) -> ViewSpec          canonical `str(spec)` keys a stored view
    make_spec("cluster", keep=0.25)       the same from Python values (UI sliders)
    available_strategies(), describe_strategies(), strategy_kinds(name)
    PRUNING, MERGING                      the kinds (how to read Reduction.groups)
    register(...)                         add a strategy (see registry.py)

Strategies live in prune.py (identity, random, attention, docpruner), sap.py (sap; its layer window is chosen
in sap_window.py) and merge.py (pool1d, pool2d, cluster, kmeans, prune_then_merge); the ratio notion
(`keep` / `factor`) is explained in spec.py.
"""

from __future__ import annotations

import numpy as np

from vdr_app.errors import InvalidSpecError
from vdr_app.quantise import quantise
from vdr_app.reduce import merge as _merge  # noqa: F401  (registers the merging strategies)
from vdr_app.reduce import prune as _prune  # noqa: F401  (registers the pruning strategies)
from vdr_app.reduce import sap as _sap  # noqa: F401  (registers Structural Anchor Pruning)
from vdr_app.reduce.merge import pool2d_kernel
from vdr_app.reduce.ops import group_means
from vdr_app.reduce.registry import MERGING, PRUNING, available_strategies, get_strategy, register
from vdr_app.reduce.spec import ViewSpec, describe_strategies, make_spec, parse_spec
from vdr_app.types import PageEmbedding, Reduction

__all__ = [
    "MERGING",
    "PRUNING",
    "ViewSpec",
    "available_strategies",
    "describe_strategies",
    "make_spec",
    "parse_spec",
    "pool2d_kernel",
    "rebuild_vectors",
    "reduce_page",
    "register",
    "strategy_kinds",
]


def strategy_kinds(spec_or_name: str | ViewSpec) -> frozenset[str]:
    """The kinds ({PRUNING}, {MERGING}, both, or none for identity) of a strategy or spec."""
    if isinstance(spec_or_name, ViewSpec):
        return spec_or_name.kinds
    return parse_spec(spec_or_name).kinds


def _check(name: str, n: int, d: int, vectors: np.ndarray, groups: np.ndarray) -> None:
    """The contract every strategy must meet; a failure here is a bug in the strategy."""
    k = vectors.shape[0]
    if vectors.ndim != 2 or vectors.shape[1] != d or groups.shape != (n,):
        raise RuntimeError(
            f"strategy {name!r} returned vectors {vectors.shape} and groups {groups.shape} for n={n}, d={d}"
        )
    if groups.size and (groups.min() < -1 or groups.max() >= k):
        raise RuntimeError(f"strategy {name!r} returned groups outside -1..{k - 1}")
    if np.count_nonzero(np.bincount(groups[groups >= 0], minlength=k)) != k:
        raise RuntimeError(f"strategy {name!r} returned output vectors that no patch maps to")


def reduce_page(page: PageEmbedding, spec: str | ViewSpec) -> Reduction:
    """Reduce one page's image patches with the strategy a view spec names.

    Args:
        page: the full page embedding, patches (n, d), extra (m, d).
        spec: a view spec text such as "docpruner:k=-0.25", or a ViewSpec.

    Returns:
        Reduction with vectors (k, d), groups (n,) and the page's extra tokens untouched; for a
        quantised spec also `quantised`, the codes of vectors + extra (the reduction is computed
        first, then quantised; groups are unchanged).
        info always holds: spec (canonical text), strategy, quant (None, "int8", "int4", "int2", "binary"), n_patches, n_vectors (k),
        n_extra (m), keep_ratio (k/n, the realised share), memory_ratio ((k+m)/(n+m)),
        pruned (patches with group -1); plus the strategy's own facts (e.g. DocPruner's
        threshold).

    Raises:
        UnknownStrategyError, InvalidSpecError: bad spec; InvalidSpecError also when the
            strategy needs attention and the page has none.
    """
    spec = parse_spec(spec)
    strat = get_strategy(spec.strategy)
    n, d, m = page.n_patches, page.dim, page.extra.shape[0]
    if strat.needs_attention and page.attention is None:
        model = f" from model {page.model_id!r}" if page.model_id else ""
        raise InvalidSpecError(
            f"strategy {strat.name!r} ranks patches by attention, but this page{model} has none; "
            "re-encode it with a model that returns attention, or pick a strategy that does not need it "
            f"({', '.join(s for s in available_strategies() if not get_strategy(s).needs_attention)})"
        )
    if strat.needs_centrality and page.centrality is None:
        raise InvalidSpecError(
            f"strategy {strat.name!r} ranks patches by their mid-layer centrality, which this page does not "
            "have: it was encoded before centrality was captured (or by a model that gives none). "
            "Re-encode its document (`python -m vdr_app reencode FILE.pdf`) "
            "and the view is a re-cut from then on"
        )
    if n == 0:
        vectors, groups, info = np.zeros((0, d), np.float32), np.zeros(0, np.int64), {}
    else:
        vectors, groups, info = strat.func(page, **spec.kwargs)
        vectors, groups = np.asarray(vectors, dtype=np.float32), np.asarray(groups, dtype=np.int64)
        _check(strat.name, n, d, vectors, groups)
    k = vectors.shape[0]
    facts = dict(
        spec=str(spec),
        strategy=strat.name,
        quant=spec.quant,
        n_patches=n,
        n_vectors=k,
        n_extra=m,
        keep_ratio=k / n if n else 1.0,
        memory_ratio=(k + m) / (n + m) if n + m else 1.0,
        pruned=int(np.count_nonzero(groups < 0)),
    )
    reduction = Reduction(vectors=vectors, groups=groups, extra=page.extra, info={**facts, **info})
    if spec.quant:
        reduction.quantised = quantise(reduction.all_vectors(), spec.quant)
    return reduction


def rebuild_vectors(patches: np.ndarray, groups: np.ndarray, spec: str | ViewSpec) -> np.ndarray:
    """A view's float vectors rebuilt from the page's full patches and the view's groups.

    Every strategy's output is defined by its groups: a merging strategy's row g is the
    re-normalised mean of the patches in group g (`ops.group_means`), a pruning strategy's row g
    is the one patch kept there (identity keeps every patch). So for the same patches this equals
    `reduce_page(page, spec).vectors` exactly (tested for every strategy); exact rescoring of a
    quantised view uses it instead of keeping a float copy of the view.

    Args:
        patches: float32 (n, d), the page's stored full patches.
        groups: int (n,) the view's groups (-1 pruned).
        spec: the view spec (its quantiser is ignored).

    Returns:
        float32 (k, d), k = number of distinct groups.
    """
    patches = np.asarray(patches, dtype=np.float32)
    groups = np.asarray(groups, dtype=np.int64)
    if groups.shape != (patches.shape[0],):
        raise ValueError(f"groups {groups.shape} do not match patches {patches.shape}")
    k = int(groups.max()) + 1 if groups.size else 0
    if k == 0:
        return np.zeros((0, patches.shape[1]), np.float32)
    if MERGING in parse_spec(spec).kinds:
        return group_means(patches, groups)
    members = np.flatnonzero(groups >= 0)
    if members.size == k and (k < 2 or bool((np.diff(groups[members]) == 1).all())) and groups[members[0]] == 0:
        # the usual case: kept patches in page order (identity keeps all of them)
        return patches if k == patches.shape[0] else patches[members]
    vectors = np.empty((k, patches.shape[1]), np.float32)
    vectors[groups[members]] = patches[members]
    return vectors
