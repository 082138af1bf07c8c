"""Reduction strategies: one invariant suite every registered strategy passes, plus hand-checked cases."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

from vdr_app.errors import InvalidSpecError, UnknownStrategyError, VdrError
from vdr_app.reduce import (
    MERGING,
    PRUNING,
    ViewSpec,
    available_strategies,
    describe_strategies,
    make_spec,
    parse_spec,
    pool2d_kernel,
    reduce_page,
    strategy_kinds,
)
from vdr_app.reduce.registry import get_strategy
from vdr_app.types import PageEmbedding


# ---------------------------------------------------------------------------------------------
# fixtures


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def grid_boxes(rows: int, cols: int, x0=0.0, y0=0.0, width=1.0, height=1.0) -> np.ndarray:
    """(rows*cols, 4) row-major boxes of a rows×cols grid over the rectangle (x0, y0, width, height)."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    w, h = width / cols, height / rows
    return np.stack([x0 + c * w, y0 + r * h, x0 + (c + 1) * w, y0 + (r + 1) * h], 1)


def make_page(rows=10, cols=13, dim=16, extra=4, seed=0, attention=True, clustered=False,
              layers=5) -> PageEmbedding:
    """A rows×cols page of random unit patches (optionally drawn around a few centres), with
    final-row attention and per-layer centrality unless `attention` is False."""
    rng = np.random.default_rng(seed)
    n = rows * cols
    if clustered:
        centres = rng.standard_normal((8, dim))
        raw = centres[rng.integers(8, size=n)] + 0.5 * rng.standard_normal((n, dim))
    else:
        raw = rng.standard_normal((n, dim))
    return PageEmbedding(
        patches=unit(raw),
        boxes=grid_boxes(rows, cols),
        attention=rng.dirichlet(np.ones(n)) if attention else None,
        extra=unit(rng.standard_normal((extra, dim))),
        model_id="test",
        centrality=rng.random((layers, n)) * n if attention else None,
    )


def two_region_page(seed=0, dim=16) -> PageEmbedding:
    """colSmol-like: a 4×6 tiled page (region 0) plus a 2×3 global thumbnail over it (region 1)."""
    rng = np.random.default_rng(seed)
    boxes = np.concatenate([grid_boxes(4, 6), grid_boxes(2, 3)])
    n = len(boxes)
    return PageEmbedding(unit(rng.standard_normal((n, dim))), boxes, attention=rng.random(n),
                         extra=unit(rng.standard_normal((2, dim))), centrality=rng.random((3, n)))


PAGES = {
    "grid10x13": lambda: make_page(),
    "clustered16x16": lambda: make_page(16, 16, dim=32, clustered=True, seed=1),
    "two_regions": two_region_page,
    "single_patch": lambda: make_page(1, 1, seed=2),
    "empty": lambda: PageEmbedding(np.zeros((0, 16)), np.zeros((0, 4)), attention=np.zeros(0),
                                   extra=unit(np.ones((2, 16))), centrality=np.zeros((4, 0))),
}


def specs_for(name: str) -> list[str]:
    """The default spec of a strategy, plus two other ratios when it has one."""
    if get_strategy(name).ratio_param is None:
        return [name]
    return [name, f"{name}:keep=0.3", f"{name}:factor=4"]


ALL_SPECS = [s for name in available_strategies() for s in specs_for(name)]


@pytest.fixture(params=list(PAGES), scope="module")
def page(request) -> PageEmbedding:
    return PAGES[request.param]()


def groups_of(groups: np.ndarray) -> set[frozenset[int]]:
    """A partition as a set of index sets (pruned patches left out)."""
    out: dict[int, set[int]] = {}
    for i, g in enumerate(groups.tolist()):
        if g >= 0:
            out.setdefault(g, set()).add(i)
    return {frozenset(v) for v in out.values()}


# ---------------------------------------------------------------------------------------------
# the invariant suite: every registered strategy


def test_suite_covers_every_registered_strategy():
    assert {parse_spec(s).strategy for s in ALL_SPECS} == set(available_strategies())
    assert {"identity", "random", "attention", "docpruner", "pool1d", "pool2d", "cluster", "kmeans",
            "prune_then_merge"} <= set(available_strategies())


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_groups_cover_every_patch(spec, page):
    red = reduce_page(page, spec)
    n, k = page.n_patches, red.vectors.shape[0]
    assert red.groups.shape == (n,) and red.groups.dtype == np.int64
    assert red.vectors.shape == (k, page.dim) and red.vectors.dtype == np.float32
    assert np.all((red.groups >= -1) & (red.groups < k))
    assert set(red.groups[red.groups >= 0].tolist()) == set(range(k))  # every row stands for a patch
    if n:
        assert k >= 1
    if PRUNING not in parse_spec(spec).kinds:
        assert not np.any(red.groups == -1)
    assert red.info["n_vectors"] == k and red.info["pruned"] == int(np.sum(red.groups == -1))


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_extra_tokens_pass_through_and_count(spec, page):
    red = reduce_page(page, spec)
    np.testing.assert_array_equal(red.extra, page.extra)
    assert red.n_vectors == red.vectors.shape[0] + page.extra.shape[0]
    m = page.extra.shape[0]
    assert red.info["memory_ratio"] == pytest.approx(red.n_vectors / (page.n_patches + m))


def expected_count(spec: ViewSpec, page: PageEmbedding, info: dict) -> tuple[float, float]:
    """Inclusive (low, high) bounds on the vectors a view may keep, from the spec alone."""
    n = page.n_patches
    if n == 0:
        return 0, 0
    kw = spec.kwargs
    name = spec.strategy
    if name == "identity":
        return n, n
    if name == "docpruner":
        a = page.attention.astype(np.float64)
        above = int(np.sum(a > a.mean() + kw["k"] * a.std()))
        return max(above, 1), max(above, 1)
    if name == "prune_then_merge":
        target = max(1, math.floor(info["survivors"] * kw["keep"]))
        return target, target
    target = max(1, math.floor(n * kw["keep"]))
    if name == "pool2d":
        rows, cols = pool2d_kernel(kw["keep"])
        cells = page.cells
        border = sum(cells[cells[:, 0] == r, 1].max() / rows + cells[cells[:, 0] == r, 2].max() / cols + 2
                     for r in np.unique(cells[:, 0]))
        return n / (rows * cols), n / (rows * cols) + border
    if name == "kmeans":
        return target - info["empty_clusters"], target
    return target, target


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_output_count_within_rounding_of_target(spec, page):
    red = reduce_page(page, spec)
    low, high = expected_count(parse_spec(spec), page, red.info)
    assert low <= red.vectors.shape[0] <= high
    if page.n_patches:
        assert red.info["keep_ratio"] == pytest.approx(red.vectors.shape[0] / page.n_patches)
    if parse_spec(spec).strategy == "kmeans":
        assert red.info.get("empty_clusters", 0) == 0  # random pages have plenty of distinct patches


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_info_is_json_ready(spec, page):
    info = reduce_page(page, spec).info
    assert json.loads(json.dumps(info)) == info  # the store and UI keep it as JSON
    assert info["spec"] == str(parse_spec(spec))


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_deterministic(spec, page):
    a, b = reduce_page(page, spec), reduce_page(page, parse_spec(spec))
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.groups, b.groups)
    assert a.info == b.info


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_vectors_are_originals_or_normalised_group_means(spec, page):
    red = reduce_page(page, spec)
    merging = MERGING in parse_spec(spec).kinds
    for g in range(red.vectors.shape[0]):
        members = np.flatnonzero(red.groups == g)
        if merging:
            mean = page.patches[members].astype(np.float64).mean(axis=0)
            np.testing.assert_allclose(red.vectors[g], mean / np.linalg.norm(mean), atol=2e-6)
        else:
            assert members.size == 1
            np.testing.assert_array_equal(red.vectors[g], page.patches[members[0]])
    if not merging:  # kept vectors stay in page order
        kept = red.groups[red.groups >= 0]
        assert np.all(np.diff(kept) > 0)


def maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    """Reference late interaction: for each query token, its best document vector, summed."""
    return float(sum(max(float(q @ v) for v in doc) for q in query))


@pytest.mark.parametrize("alias", ["identity", "full"])
def test_identity_view_ranks_exactly_like_full(alias):
    pages = [make_page(6, 7, seed=s, extra=3) for s in range(6)]
    rng = np.random.default_rng(42)
    for _ in range(4):
        query = unit(rng.standard_normal((5, 16)))
        full = [maxsim(query, p.all_vectors()) for p in pages]
        view = [maxsim(query, reduce_page(p, alias).all_vectors()) for p in pages]
        assert view == full
        assert np.argsort(view, kind="stable").tolist() == np.argsort(full, kind="stable").tolist()


@pytest.mark.parametrize("name", [s for s in available_strategies() if get_strategy(s).needs_attention])
def test_attention_strategies_refuse_pages_without_attention(name):
    with pytest.raises(InvalidSpecError, match="attention"):
        reduce_page(make_page(attention=False), name)


def test_sap_on_a_page_encoded_before_centrality_says_to_reencode():
    old = make_page()
    old.centrality = None  # what the store returns for a page stored before schema v3
    with pytest.raises(InvalidSpecError, match="(?i)re-encode"):
        reduce_page(old, "sap:keep=0.1")


def test_sap_keeps_the_top_mean_centrality_of_the_middle_layers():
    """A plain loop over the spec: middle band floor(0.4 L)..floor(0.6 L), mean, top k, page order."""
    page = make_page(rows=6, cols=7, layers=18)  # ColPali's 18 decoder layers: 7-10
    n = page.n_patches
    red = reduce_page(page, "sap:keep=0.25")
    assert red.info["layers"] == "7-10" and red.info["n_layers"] == 18
    score = [sum(page.centrality[layer, j] for layer in range(7, 11)) / 4 for j in range(n)]
    expected = sorted(sorted(range(n), key=lambda j: -score[j])[: n // 4])
    assert np.flatnonzero(red.groups >= 0).tolist() == expected
    np.testing.assert_array_equal(red.vectors, page.patches[expected])
    # An explicit window is a re-cut of the same stored values.
    one = reduce_page(page, "sap:keep=0.25,layers=3")
    top3 = sorted(np.argsort(-page.centrality[3], kind="stable")[: n // 4].tolist())
    assert np.flatnonzero(one.groups >= 0).tolist() == top3 and one.info["layers"] == "3-3"


@pytest.mark.parametrize("n_layers, band", [(18, (7, 10)), (28, (11, 16)), (36, (14, 21)), (6, (2, 3)), (2, (0, 1)), (1, (0, 0))])
def test_sap_middle_band_is_the_papers(n_layers, band):
    from vdr_app.reduce.sap import middle_window

    assert middle_window(n_layers) == band


@pytest.mark.parametrize("text, message", [
    ("sap:layers=8-4", "comes after"), ("sap:layers=x", "auto or first-last"), ("sap:layers=-1", "auto or first-last"),
])
def test_sap_bad_layer_ranges_are_refused(text, message):
    with pytest.raises(InvalidSpecError, match=message):
        parse_spec(text)


def test_sap_window_past_the_models_layers_is_refused():
    with pytest.raises(InvalidSpecError, match="0-4"):
        reduce_page(make_page(layers=5), "sap:layers=3-9")


def test_sap_spec_is_canonical():
    assert str(parse_spec("SAP:factor=10")) == "sap:keep=0.1,layers=auto"
    assert str(parse_spec("sap:keep=0.1, layers=04-8@int8")) == "sap:keep=0.1,layers=4-8@int8"
    assert parse_spec("sap").kwargs == {"keep": Fraction(1, 10), "layers": "auto"}


# ---------------------------------------------------------------------------------------------
# pruning strategies on hand-built pages

# Values 1..8 in shuffled order: mean 4.5, population std sqrt(5.25) ≈ 2.2913, sample std ≈ 2.4495.
HAND_ATTENTION = np.array([5, 1, 8, 3, 7, 2, 6, 4], dtype=np.float64) / 36


@pytest.mark.parametrize(
    "k, kept",
    [
        (-0.25, [0, 2, 4, 6, 7]),  # τ = 4.5 - 0.573 = 3.927 -> values 4..8
        (0.0, [0, 2, 4, 6]),  # τ = 4.5 -> values 5..8
        (0.63, [2, 4, 6]),  # τ = 4.5 + 1.4435 = 5.94 -> 6, 7, 8 (sample std would give 6.04 -> 7, 8)
        (1.0, [2, 4]),  # τ = 6.79 -> 7, 8
        (-2.0, list(range(8))),  # τ = -0.08 -> all
        (10.0, [2]),  # τ above the maximum: nothing passes, keep the argmax
    ],
)
def test_docpruner_keeps_hand_computed_set(k, kept):
    page = PageEmbedding(unit(np.random.default_rng(0).standard_normal((8, 4))), grid_boxes(2, 4),
                         attention=HAND_ATTENTION)
    red = reduce_page(page, f"docpruner:k={k}")
    assert np.flatnonzero(red.groups >= 0).tolist() == kept
    assert red.info["threshold"] == pytest.approx((4.5 + k * math.sqrt(5.25)) / 36)
    assert red.info["keep_ratio"] == pytest.approx(len(kept) / 8)


def test_attention_keeps_top_patches_ties_in_page_order():
    page = PageEmbedding(unit(np.random.default_rng(0).standard_normal((6, 4))), grid_boxes(2, 3),
                         attention=np.array([1, 3, 3, 2, 3, 0], dtype=np.float32))
    assert np.flatnonzero(reduce_page(page, "attention:keep=0.5").groups >= 0).tolist() == [1, 2, 4]
    assert np.flatnonzero(reduce_page(page, "attention:factor=3").groups >= 0).tolist() == [1, 2]
    assert np.flatnonzero(reduce_page(page, "attention:keep=0.01").groups >= 0).tolist() == [1]


def test_random_depends_on_seed_and_page():
    page, other = make_page(seed=0), make_page(seed=1)
    kept = lambda p, s: frozenset(np.flatnonzero(reduce_page(p, f"random:keep=0.5,seed={s}").groups >= 0).tolist())
    assert kept(page, 0) == kept(page, 0)
    assert kept(page, 0) != kept(page, 1)
    assert kept(page, 0) != kept(other, 0)  # same size, same seed: not the same positions on every page
    assert len(kept(page, 0)) == 65


# ---------------------------------------------------------------------------------------------
# merging strategies on hand-built pages


def test_pool1d_consecutive_runs():
    page = make_page(2, 5, extra=0)  # n = 10
    assert reduce_page(page, "pool1d:factor=3").groups.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    page = make_page(3, 4, extra=0)  # n = 12, factor divides n: the published windows
    assert reduce_page(page, "pool1d:factor=3").groups.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


@pytest.mark.parametrize(
    "factor, kernel",
    [(1, (1, 1)), (2, (1, 2)), (3, (1, 3)), (4, (2, 2)), (5, (2, 3)), (6, (2, 3)), (8, (2, 4)), (9, (3, 3)),
     (12, (3, 4)), (16, (4, 4)), (25, (5, 5)), (49, (7, 7))],
)
def test_pool2d_kernel_rule(factor, kernel):
    assert pool2d_kernel(Fraction(1, factor)) == kernel


def test_pool2d_known_grid_with_ragged_borders():
    rng = np.random.default_rng(3)
    order = rng.permutation(25)  # patches listed out of grid order: pooling must follow the cells
    boxes = grid_boxes(5, 5)[order]
    patches = unit(rng.standard_normal((25, 8)))
    page = PageEmbedding(patches, boxes)
    red = reduce_page(page, "pool2d:factor=4")
    grid = np.empty(25, dtype=np.int64)
    grid[order] = red.groups  # back to row-major cell order
    expected = [[0, 0, 1, 1, 2],
                [0, 0, 1, 1, 2],
                [3, 3, 4, 4, 5],
                [3, 3, 4, 4, 5],
                [6, 6, 7, 7, 8]]
    assert grid.reshape(5, 5).tolist() == expected
    # The corner block holds one real cell: its masked mean is that patch, not a zero-padded mean.
    corner = int(np.flatnonzero(order == 24)[0])
    np.testing.assert_allclose(red.vectors[8], patches[corner], atol=1e-6)
    assert red.info["kernel"] == [2, 2]


def test_pool2d_never_mixes_tiles_and_global_thumbnail():
    page = two_region_page()
    assert page.cells[:, 0].tolist() == [0] * 24 + [1] * 6
    red = reduce_page(page, "pool2d:factor=4")
    cells = [tuple(c) for c in page.cells.tolist()]
    blocks = {frozenset(cells[i] for i in group) for group in groups_of(red.groups)}
    region0 = {frozenset((0, r, c) for r in range(2 * br, 2 * br + 2) for c in range(2 * bc, 2 * bc + 2))
               for br in range(2) for bc in range(3)}
    region1 = {frozenset({(1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)}), frozenset({(1, 0, 2), (1, 1, 2)})}
    assert blocks == region0 | region1


def test_pool2d_colsmol_layout():
    # 2×2 tiles of 8×8 tokens (one 16×16 grid) + an 8×8 global thumbnail, 3×3 kernel.
    boxes = np.concatenate([grid_boxes(16, 16), grid_boxes(8, 8)])
    page = PageEmbedding(unit(np.random.default_rng(0).standard_normal((len(boxes), 8))), boxes)
    red = reduce_page(page, "pool2d:factor=9")
    assert red.vectors.shape[0] == 6 * 6 + 3 * 3
    assert all(len({page.cells[i, 0] for i in g}) == 1 for g in groups_of(red.groups))


def reference_ward(observations: np.ndarray, clusters: int) -> set[frozenset[int]]:
    labels = fcluster(linkage(observations.astype(np.float64), method="ward"), clusters, "maxclust")
    return groups_of(labels - 1)


@pytest.mark.parametrize("factor", [2, 3, 9])
@pytest.mark.parametrize("seed", [0, 1])
def test_cluster_fast_path_equals_scipy_on_the_published_and_clean_features(factor, seed):
    page = make_page(16, 16, dim=32, seed=seed, clustered=bool(seed))
    e = page.patches.astype(np.float64)
    clusters = page.n_patches // factor
    profile = reduce_page(page, f"cluster:factor={factor}")
    assert groups_of(profile.groups) == reference_ward(1 - e @ e.T, clusters)
    vector = reduce_page(page, f"cluster:factor={factor},features=vector")
    assert groups_of(vector.groups) == reference_ward(e, clusters)


@pytest.mark.parametrize("factor", [2, 3, 9])
@pytest.mark.parametrize("seed", [0, 1])
def test_cluster_matches_colpali_engine_hierarchical_token_pooler(factor, seed):
    pytest.importorskip("colpali_engine")
    import torch
    from colpali_engine.compression import HierarchicalTokenPooler

    page = make_page(16, 16, dim=32, seed=seed, clustered=bool(seed))
    pooled, cluster_ids = HierarchicalTokenPooler()._pool_single_embedding(torch.from_numpy(page.patches), factor)
    reference = {frozenset(idx[0].tolist()) for idx in cluster_ids.values() if idx[0].numel()}
    red = reduce_page(page, f"cluster:factor={factor}")
    assert groups_of(red.groups) == reference
    np.testing.assert_allclose(red.vectors, pooled.numpy(), atol=1e-6)  # same rows, same order


def test_kmeans_seed_changes_partition_and_assigns_near_centres():
    page = make_page(16, 16, dim=32, clustered=True)
    a = reduce_page(page, "kmeans:factor=9,seed=0")
    b = reduce_page(page, "kmeans:factor=9,seed=1")
    assert groups_of(a.groups) != groups_of(b.groups)
    # After Lloyd iterations most patches sit with their nearest merged vector.
    nearest = np.argmax(page.patches @ a.vectors.T, axis=1)
    assert np.mean(nearest == a.groups) > 0.9


def test_prune_then_merge_is_docpruner_then_cluster():
    page = make_page(16, 16, dim=32, clustered=True)
    red = reduce_page(page, "prune_then_merge:k=-0.5,factor=4")
    survivors = np.flatnonzero(reduce_page(page, "docpruner:k=-0.5").groups >= 0)
    assert np.flatnonzero(red.groups >= 0).tolist() == survivors.tolist()
    sub = PageEmbedding(page.patches[survivors], page.boxes[survivors])
    merged = reduce_page(sub, "cluster:factor=4")
    assert groups_of(red.groups) == {frozenset(survivors[list(g)].tolist()) for g in groups_of(merged.groups)}


# ---------------------------------------------------------------------------------------------
# view specs


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("full", "identity"),
        ("identity", "identity"),
        (" DocPruner : k = -0.25 ", "docpruner:k=-0.25"),
        ("docpruner", "docpruner:k=-0.25"),
        ("docpruner:k=0", "docpruner:k=0"),
        ("cluster:factor=9", "cluster:factor=9,features=profile"),
        ("cluster:keep=0.5", "cluster:factor=2,features=profile"),
        ("cluster:keep=0.3", "cluster:features=profile,keep=0.3"),
        ("cluster:features=VECTOR,factor=9.0", "cluster:factor=9,features=vector"),
        ("random:seed=0,keep=0.5", "random:keep=0.5,seed=0"),
        ("random:factor=9", "random:factor=9,seed=0"),
        ("random:keep=1/4", "random:keep=0.25,seed=0"),
        ("pool2d", "pool2d:factor=9"),
        ("prune_then_merge", "prune_then_merge:factor=4,features=profile,k=-0.75"),
    ],
)
def test_spec_canonical_form(text, canonical):
    spec = parse_spec(text)
    assert str(spec) == canonical
    assert parse_spec(str(spec)) == spec


def test_equal_specs_are_one_view():
    assert parse_spec("cluster:keep=0.5") == parse_spec("cluster:factor=2") == make_spec("cluster", keep=0.5)
    assert hash(parse_spec("random:keep=0.5")) == hash(parse_spec("random:seed=0,factor=2"))
    assert make_spec("random", keep=0.1) == parse_spec("random:keep=0.1")  # floats at their short form
    assert parse_spec("cluster:factor=9").kwargs["keep"] == Fraction(1, 9)
    assert parse_spec("cluster:factor=9").nominal_keep == pytest.approx(1 / 9)
    assert parse_spec("docpruner").nominal_keep is None
    assert parse_spec(parse_spec("full")) == parse_spec("identity")


def test_kinds_per_strategy():
    assert strategy_kinds("identity") == frozenset()
    assert strategy_kinds("docpruner") == {PRUNING}
    assert strategy_kinds("cluster:factor=9") == {MERGING}
    assert strategy_kinds("prune_then_merge") == {PRUNING, MERGING}


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty view spec"),
        ("random:keep=0", "keep must be in \\(0, 1\\], got 0"),
        ("random:keep=1.5", "keep must be in \\(0, 1\\], got 1.5"),
        ("random:keep=abc", "keep must be a number, got 'abc'"),
        ("random:keep=nan", "must be a number"),
        ("cluster:factor=0.5", "factor must be >= 1, got 0.5"),
        ("cluster:keep=0.5,factor=2", "not both"),
        ("random:seed=-1", "seed must be in"),
        ("random:seed=1.5", "seed must be an integer, got '1.5'"),
        ("docpruner:k=11", "k must be in \\[-10, 10\\], got 11"),
        ("cluster:features=cosine", "features must be one of profile, vector, got 'cosine'"),
        ("cluster:ratio=2", "unknown parameter 'ratio'.*keep, features, factor"),
        ("identity:keep=0.5", "unknown parameter 'keep'.*parameters: none"),
        ("random:keep=0.5,keep=0.4", "given twice"),
        ("random:keep", "malformed parameter 'keep'"),
        ("random:keep=0.5,,seed=1", "malformed parameter"),
    ],
)
def test_bad_specs_are_rejected_clearly(text, message):
    with pytest.raises(InvalidSpecError, match=message):
        parse_spec(text)


def test_unknown_strategy_lists_known_ones():
    with pytest.raises(UnknownStrategyError) as info:
        reduce_page(make_page(), "tome:factor=2")
    for name in available_strategies():
        assert name in str(info.value)
    assert isinstance(info.value, VdrError) and isinstance(info.value, ValueError)
    with pytest.raises(InvalidSpecError):
        make_spec("random", keep=True)


def test_describe_strategies_covers_registry():
    described = describe_strategies()
    assert [d["name"] for d in described] == available_strategies()
    for d in described:
        assert d["doc"] and str(parse_spec(d["example"])) == d["example"]
        for p in d["params"]:
            assert p["doc"] and "default" in p
    cluster = next(d for d in described if d["name"] == "cluster")
    ratio = next(p for p in cluster["params"] if p["name"] == "keep")
    assert ratio["aliases"] == ["factor"] and ratio["default_factor"] == pytest.approx(9)


def test_reduce_package_does_not_import_torch():
    code = "import sys, vdr_app.reduce; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0


def test_ward_tree_cache_gives_the_same_partitions_as_a_fresh_linkage():
    """The memoised tree (slider moves re-cut it) must equal scipy's linkage on the same page."""
    from scipy.cluster.hierarchy import fcluster, linkage

    from vdr_app.reduce import ops

    rng = np.random.default_rng(7)
    patches = rng.standard_normal((200, 16)).astype(np.float32)
    patches /= np.linalg.norm(patches, axis=1, keepdims=True)
    for clusters in (50, 20, 50, 7):  # repeated sizes hit the cache
        cached = ops.ward_labels(patches, clusters, ops.profile_features)
        fresh = fcluster(linkage(ops.profile_features(patches), method="ward"), clusters, "maxclust") - 1
        assert {frozenset(np.flatnonzero(cached == g)) for g in np.unique(cached)} == {
            frozenset(np.flatnonzero(fresh == g)) for g in np.unique(fresh)
        }


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_rebuild_from_groups_equals_the_reduction(spec, page):
    """Every strategy's vectors follow from its groups (what exact rescoring of a quantised view uses)."""
    from vdr_app.reduce import rebuild_vectors

    red = reduce_page(page, spec)
    assert np.array_equal(rebuild_vectors(page.patches, red.groups, spec), red.vectors)


def test_with_values_replaces_named_parameters_and_refuses_unknown_ones():
    spec = parse_spec("sap:keep=0.1@int4")
    changed = spec.with_values(layers="2-3")
    assert str(changed) == "sap:keep=0.1,layers=2-3@int4" and str(spec) == "sap:keep=0.1,layers=auto@int4"
    with pytest.raises(InvalidSpecError, match="no parameter seed"):
        spec.with_values(seed=1)
