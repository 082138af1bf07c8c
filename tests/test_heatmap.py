"""Per-patch maps: spreading view values back over patches, token filtering, region grids."""

from __future__ import annotations

import numpy as np
import pytest

from vdr_app import heatmap
from vdr_app.models.layout import grid_layout, idefics3_layout
from vdr_app.reduce import reduce_page
from vdr_app.types import PageEmbedding, derive_cells


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _page(layout, seed=0, dim=16):
    rng = np.random.default_rng(seed)
    n = len(layout)
    return PageEmbedding(patches=_unit(rng.standard_normal((n, dim))), boxes=layout.boxes, cells=layout.cells,
                         attention=rng.random(n).astype(np.float32), extra=_unit(rng.standard_normal((2, dim))))


def test_spread_matches_a_loop():
    rng = np.random.default_rng(1)
    values = rng.standard_normal((3, 5))  # (q, k)
    groups = np.array([0, -1, 4, 4, 2, -1, 1, 3, 0])
    out = heatmap.spread(values, groups)
    assert out.shape == (3, 9)
    for i, g in enumerate(groups):
        if g < 0:
            assert np.isnan(out[:, i]).all()
        else:
            np.testing.assert_allclose(out[:, i], values[:, g], rtol=1e-6)


def test_spread_refuses_groups_past_the_vectors():
    with pytest.raises(ValueError, match="vector 3 but only 3"):
        heatmap.spread(np.zeros(3), np.array([0, 3]))


def test_spread_with_everything_pruned_is_all_nan():
    assert np.isnan(heatmap.spread(np.zeros((2, 0)), np.array([-1, -1]))).all()


@pytest.mark.parametrize("spec", ["identity", "docpruner:k=0", "cluster:factor=4", "pool2d:factor=4"])
def test_view_similarity_is_the_standing_vector_similarity(spec):
    """Each patch shows the similarity of the vector that stands for it in the view (a loop over
    patches is the reference); pruned patches are NaN."""
    page = _page(grid_layout(8, 8))
    query = _unit(np.random.default_rng(2).standard_normal((4, page.dim)))
    reduction = reduce_page(page, spec)
    maps = heatmap.similarity_maps(query, page.patches, reduction.groups, reduction.vectors)
    for i, g in enumerate(reduction.groups):
        expected = np.full(4, np.nan) if g < 0 else query @ reduction.vectors[g]
        np.testing.assert_allclose(maps[:, i], expected, rtol=1e-5, atol=1e-6)
    full = heatmap.similarity_maps(query, page.patches)
    np.testing.assert_allclose(full, query @ page.patches.T, rtol=1e-5)
    if spec == "identity":
        np.testing.assert_allclose(maps, full, rtol=1e-5)


def test_similarity_maps_need_groups_and_vectors_together():
    with pytest.raises(ValueError, match="both"):
        heatmap.similarity_maps(np.ones((1, 2)), np.ones((3, 2)), groups=np.zeros(3, int))
    with pytest.raises(ValueError, match="do not match"):
        heatmap.token_similarity(np.ones((1, 3)), np.ones((3, 2)))


def test_decisions_and_group_sizes():
    groups = np.array([-1, 0, 1, 1, 2, 1, -1])
    np.testing.assert_array_equal(heatmap.patch_decisions(groups), [0, 1, 2, 2, 1, 2, 0])
    np.testing.assert_array_equal(heatmap.group_sizes(groups), [0, 1, 3, 3, 1, 3, 0])


def test_normalise_keeps_nan_and_scales_to_unit_range():
    out = heatmap.normalise(np.array([2.0, np.nan, 4.0, 3.0]))
    np.testing.assert_allclose(out, [0.0, np.nan, 1.0, 0.5])
    np.testing.assert_allclose(heatmap.normalise(np.array([7.0, 7.0])), [0.5, 0.5])
    robust = heatmap.robust_normalise(np.r_[np.linspace(0, 1, 999), 1000.0])
    assert robust[-1] == 1.0 and robust[499] > 0.45  # one outlier in 1000 does not flatten the rest
    assert heatmap.normalise(np.r_[np.linspace(0, 1, 999), 1000.0])[499] < 0.001


def test_content_tokens_drop_specials_prompt_and_punctuation():
    tokens = ["<bos>", "Query", ":", "Ġrevenue", "Ġby", "Ġ?", "<pad>", "<|endoftext|>", "Ġquery", "[SEP]"]
    assert heatmap.content_tokens(tokens) == [3, 4, 8]  # "query" after content is a real word
    assert heatmap.content_tokens(["<pad>", "<pad>"]) == [0, 1]  # never an empty choice
    assert heatmap.display_token("Ġrevenue") == "revenue"


def test_region_grids_of_tiles_and_thumbnail():
    """colSmol: 2x3 tiles of 8x8 form one 16x24 grid over the page (region 0), the 8x8
    thumbnail is region 1; both are regular and to_grid puts each patch in its cell."""
    layout = idefics3_layout(2, 3, 8)
    grids = heatmap.region_grids(layout.boxes, layout.cells)
    assert [(g.region, g.rows, g.cols, g.regular) for g in grids] == [(0, 16, 24, True), (1, 8, 8, True)]
    values = np.arange(len(layout), dtype=np.float32)
    for grid in grids:
        placed = grid.to_grid(values)
        for i in grid.members:
            _, r, c = layout.cells[i]
            assert placed[r, c] == values[i]
        assert (grid.x0, grid.y0, grid.x1, grid.y1) == pytest.approx((0, 0, 1, 1), abs=1e-6)


def test_sparse_grids_keep_their_cell_positions():
    """The text-layout encoder keeps only cells holding text: the grid is still placed by the
    cells' own boxes, not stretched over the occupied part."""
    full = grid_layout(10, 8)
    keep = np.array([i for i, (_, r, c) in enumerate(full.cells.tolist()) if 3 <= c <= 6 and r in (2, 5, 6)])
    (grid,) = heatmap.region_grids(full.boxes[keep], full.cells[keep])
    assert grid.regular and (grid.rows, grid.cols) == (7, 7)
    assert (grid.x0, grid.y0) == pytest.approx((0.0, 0.0), abs=1e-6)
    assert (grid.x1, grid.y1) == pytest.approx((7 / 8, 7 / 10), abs=1e-6)


def test_region_grids_from_derived_cells_and_free_form_boxes():
    layout = grid_layout(5, 7)
    (grid,) = heatmap.region_grids(layout.boxes, derive_cells(layout.boxes))
    assert (grid.rows, grid.cols, grid.regular) == (5, 7, True)
    boxes = np.array([[0.1, 0.1, 0.5, 0.12], [0.1, 0.2, 0.3, 0.22], [0.6, 0.5, 0.9, 0.53]])  # text lines
    (grid,) = heatmap.region_grids(boxes, np.zeros((3, 3), int))
    assert not grid.regular


def test_touching_groups_get_different_colours():
    page = _page(grid_layout(12, 12))
    groups = reduce_page(page, "pool2d:factor=4").groups
    colours = heatmap.colour_groups(groups, page.cells, 10)
    where = {(r, c): i for i, (_, r, c) in enumerate(page.cells.tolist())}
    for (r, c), i in where.items():
        for j in (where.get((r, c + 1)), where.get((r + 1, c))):
            if j is not None and groups[i] != groups[j]:
                assert colours[i] != colours[j]
    assert len(set(colours.tolist())) > 2  # the palette is used, not a two-colour checkerboard
    pruned = np.array([0, -1, 1])
    assert heatmap.colour_groups(pruned, np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2]]))[1] == -1
