"""Plotly figures: every family's geometry lands on the right pixels, layers say what they should."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from vdr_app import figures
from vdr_app.models.layout import grid_layout, idefics3_layout

BG = figures.page_background(Image.new("RGB", (850, 1100), "white"))

GEOMETRIES = {
    "colpali": grid_layout(32, 32),
    "colqwen2": grid_layout(24, 18),
    "colsmol": idefics3_layout(2, 2, 8),
}


def _groups(n: int, seed: int = 0) -> np.ndarray:
    """Half the patches pruned, the rest kept one vector each."""
    rng = np.random.default_rng(seed)
    groups = np.full(n, -1)
    kept = rng.random(n) < 0.5
    groups[kept] = np.arange(kept.sum())
    return groups


def _heatmaps(fig, name=None):
    return [t for t in fig.data if t.type == "heatmap" and (name is None or t.name == name)]


def _cell_of(trace, x: float, y: float) -> tuple[int, int]:
    return int(round((y - trace.y0) / trace.dy)), int(round((x - trace.x0) / trace.dx))


@pytest.mark.parametrize("family", GEOMETRIES)
def test_pruned_patches_are_drawn_exactly_where_they_are(family):
    """Reference loop: every patch's box centre, in page pixels, falls in a heatmap cell that is
    set in the pruned layer exactly when the patch was pruned."""
    layout = GEOMETRIES[family]
    n = len(layout)
    groups = _groups(n)
    fig = figures.exploration_figure(BG, layout.boxes, layout.cells, groups, np.random.default_rng(1).random(n))
    masks = _heatmaps(fig, "pruned")
    regions = sorted(set(layout.cells[:, 0].tolist()))
    assert len(masks) == len(regions)  # one pruned layer per region (thumbnail in its own panel)
    for region, mask in zip(regions, masks):
        z = np.asarray(mask.z, dtype=float)
        for i in np.flatnonzero(layout.cells[:, 0] == region):
            x0, y0, x1, y1 = layout.boxes[i]
            r, c = _cell_of(mask, (x0 + x1) / 2 * BG.width, (y0 + y1) / 2 * BG.height)
            assert np.isfinite(z[r, c]) == (groups[i] < 0)
    assert sum(t.type == "image" for t in fig.data) == 2 * len(regions)


def test_merged_patches_carry_their_group_colour():
    layout = GEOMETRIES["colqwen2"]
    groups = np.arange(len(layout)) // 3  # runs of three patches per vector
    fig = figures.exploration_figure(BG, layout.boxes, layout.cells, groups, None, merging=True)
    (layer,) = _heatmaps(fig, "merged groups")
    z = np.asarray(layer.z, dtype=float)
    colours = {}
    for i, (_, r, c) in enumerate(layout.cells.tolist()):
        colours.setdefault(groups[i], set()).add(z[r, c])
    assert all(len(c) == 1 for c in colours.values())  # one colour per group
    assert fig.layout.annotations[0].text == "attention (not available)"


def test_free_form_boxes_are_drawn_as_rectangles():
    boxes = np.array([[0.1, 0.1, 0.6, 0.13], [0.1, 0.2, 0.4, 0.23], [0.5, 0.5, 0.9, 0.55], [0.2, 0.7, 0.3, 0.72]])
    fig = figures.similarity_figure(BG, boxes, np.zeros((4, 3), int), np.array([0.1, np.nan, 0.9, 0.5]), "total")
    fills = [t for t in fig.data if t.type == "scatter" and t.fill == "toself"]
    # 3 scored boxes in the colour bins + 1 pruned box in the mask layer, 5 points + a break each
    assert sum(len(t.x) for t in fills) == 4 * 6
    assert all(t.opacity == 0 for t in _heatmaps(fig))  # only the invisible carrier of the colour bar


def test_figures_are_valid_plotly():
    """Figures are built without plotly's validation for speed; validating them here catches any
    property plotly would reject."""
    layout = GEOMETRIES["colsmol"]
    n = len(layout)
    built = [
        figures.exploration_figure(BG, layout.boxes, layout.cells, _groups(n), np.ones(n), title="t", merging=True),
        figures.similarity_figure(BG, layout.boxes, layout.cells, np.linspace(0, 1, n), "tok"),
        figures.message_figure("nothing yet"),
    ]
    for fig in built:
        go.Figure(fig.to_dict())  # raises on invalid properties
        assert json.loads(fig.to_json())["data"] is not None


def test_page_background_is_a_downscaled_jpeg():
    bg = figures.page_background(Image.new("RGB", (2000, 3000), "white"), max_side=1000)
    assert (bg.width, bg.height) == (667, 1000)
    assert bg.source.startswith("data:image/jpeg;base64,")


def test_centrality_panel_sits_beside_the_attention_and_says_when_it_is_missing():
    from vdr_app.models.layout import grid_layout

    layout = grid_layout(4, 5)
    n = len(layout.boxes)
    groups = np.where(np.arange(n) % 3 == 0, np.arange(n) // 3, -1)
    centrality = np.linspace(0, 5, n)
    fig = figures.exploration_figure(BG, layout.boxes, layout.cells, groups, np.ones(n),
                                     centrality=centrality, centrality_label="mid-layer centrality, layers 1-2 of 4")
    (layer,) = _heatmaps(fig, "mid-layer centrality, layers 1-2 of 4")
    z = np.asarray(layer.z, dtype=float)
    r, c = layout.cells[-1, 1], layout.cells[-1, 2]
    assert z[r, c] == np.nanmax(z) and z[0, 0] == np.nanmin(z)  # highest centrality, hottest patch
    titles = [a.text for a in fig.layout.annotations]
    assert titles.index("mid-layer centrality, layers 1-2 of 4") < titles.index("kept / pruned")
    missing = figures.exploration_figure(BG, layout.boxes, layout.cells, groups, np.ones(n),
                                         centrality_label="not stored: re-encode")
    (empty,) = _heatmaps(missing, "not stored: re-encode")
    assert np.isnan(np.asarray(empty.z, dtype=float)).all()
    no_panel = figures.exploration_figure(BG, layout.boxes, layout.cells, groups, np.ones(n))
    assert not any("centrality" in (a.text or "") for a in no_panel.layout.annotations)
