"""Token reduction: pruning and merging strategies over one page's patch embeddings.

Pure numpy/scipy (no torch). Public entry points:

    reduce_page(page, "cluster:factor=9") -> Reduction
    parse_spec(text) -> ViewSpec          canonical `str(spec)` keys a stored view
    make_spec("cluster", keep=0.25)       the same from Python values (UI sliders)
    available_strategies(), describe_strategies(), strategy_kinds(name)
    PRUNING, MERGING                      the kinds (how to read Reduction.groups)
    register(...)                         add a strategy (see registry.py)

Strategies live in prune.py (identity, random, attention, docpruner) and merge.py (pool1d, pool2d,
cluster, kmeans, prune_then_merge); the ratio notion (`keep` / `factor`) is explained in spec.py.
"""

from __future__ import annotations

import numpy as np

from vdr_app.errors import InvalidSpecError
from vdr_app.reduce import merge as _merge  # noqa: F401  (registers the merging strategies)
from vdr_app.reduce import prune as _prune  # noqa: F401  (registers the pruning strategies)
from vdr_app.reduce.merge import pool2d_kernel
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
        Reduction with vectors (k, d), groups (n,) and the page's extra tokens untouched.
        info always holds: spec (canonical text), strategy, n_patches, n_vectors (k),
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
        n_patches=n,
        n_vectors=k,
        n_extra=m,
        keep_ratio=k / n if n else 1.0,
        memory_ratio=(k + m) / (n + m) if n + m else 1.0,
        pruned=int(np.count_nonzero(groups < 0)),
    )
    return Reduction(vectors=vectors, groups=groups, extra=page.extra, info={**facts, **info})
