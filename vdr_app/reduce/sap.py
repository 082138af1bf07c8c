"""Structural Anchor Pruning (SAP; Liu, Hu, Zhang, Xiao, arXiv 2601.20107): keep the patches the
page's own patches attend to most in the middle layers of the backbone.

Final-layer attention (`attention`, `docpruner`) reads what the last token looks at, which drifts
towards a few positions and falls below random past ~80 % pruning; in the middle layers the
patches that many other patches attend to ("structural anchors": text lines, table rules,
headings) still carry the page's layout. Each patch's score is its in-degree centrality,
sum over image tokens i of mean over heads of A[h, i, j], captured per layer at encode time
(`vdr_app.models.centrality`, `PageEmbedding.centrality`), averaged over the layers of a window.

The window. The paper takes the middle band of the decoder, layers floor(0.4 L) .. floor(0.6 L)
(ColPali's 18 layers: 7-10; ColQwen2's 28: 11-16), which its per-layer Oracle Score Retention
diagnostic picks out as where pruning keeps the most query score. Here `layers=auto` is that band
for the page's layer count; `layers=a-b` overrides it (0-based, inclusive). Every layer is stored,
so a window, like a ratio, is a re-cut without re-encoding. The engine resolves `auto` before a view
is cut (`Engine.resolve_view`): to the window `sap-window` chose on the store's labelled queries by
the score-retention diagnostic (`sap_window.py`) and recorded for its model, else to this band.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from vdr_app.errors import InvalidSpecError
from vdr_app.reduce.ops import kept, target_count
from vdr_app.reduce.registry import LAYERS, PRUNING, RATIO, Param, register
from vdr_app.types import PageEmbedding

AUTO = "auto"


def middle_window(n_layers: int) -> tuple[int, int]:
    """The paper's middle band: layers floor(0.4 L) .. floor(0.6 L), 0-based and inclusive."""
    if n_layers < 1:
        raise ValueError(f"a model has at least one layer, got {n_layers}")
    first = min(int(0.4 * n_layers), n_layers - 1)
    last = min(max(first, int(0.6 * n_layers)), n_layers - 1)
    return first, last


def window(layers: str, n_layers: int) -> tuple[int, int]:
    """The (first, last) layers a `layers` parameter ("auto" or "a-b") means for this model.

    Raises:
        InvalidSpecError: the range goes past the model's last layer.
    """
    if layers == AUTO:
        return middle_window(n_layers)
    first, _, last = layers.partition("-")
    first, last = int(first), int(last or first)
    if last >= n_layers:
        raise InvalidSpecError(
            f"sap: layers={layers} goes past this page's model, whose {n_layers} decoder layers are 0-{n_layers - 1}"
        )
    return first, last


def sap_scores(centrality: np.ndarray, layers: str = AUTO) -> tuple[np.ndarray, tuple[int, int]]:
    """Each patch's SAP score: its in-degree centrality averaged over the window's layers.

    Args:
        centrality: float (layers, n) per-layer in-degree centrality of the page's patches.
        layers: "auto" or "a-b".

    Returns:
        float64 (n,) scores and the (first, last) window used.
    """
    first, last = window(layers, centrality.shape[0])
    return centrality[first : last + 1].astype(np.float64).mean(axis=0), (first, last)


def sap_order(centrality: np.ndarray, layers: str = AUTO) -> tuple[np.ndarray, tuple[int, int]]:
    """The page's patches from most to least central over the window (ties: page order), and the
    window: a view keeping k patches keeps the first k (what `sap` and the window chooser share)."""
    scores, window_used = sap_scores(centrality, layers)
    return np.argsort(-scores, kind="stable"), window_used


@register(
    "sap",
    kinds={PRUNING},
    params=(
        Param("keep", RATIO, "1/10", "share of image patches kept (or factor = 1/keep)"),
        Param("layers", LAYERS, AUTO,
              "decoder layers whose centrality counts: auto (the store's calibrated window, else the middle "
              "40-60 %) or a-b"),
    ),
    needs_centrality=True,
    doc="Structural Anchor Pruning: keep the patches other patches attend to most in the middle layers.",
)
def sap(page: PageEmbedding, keep: Fraction, layers: str) -> tuple:
    """Keep the max(1, floor(n·keep)) patches of highest mid-layer centrality (ties: page order)."""
    order, (first, last) = sap_order(page.centrality, layers)
    vectors, groups = kept(page.patches, order[: target_count(page.n_patches, keep)])
    return vectors, groups, {"layers": f"{first}-{last}", "n_layers": int(page.centrality.shape[0])}
