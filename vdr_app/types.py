"""Plain data that crosses module boundaries: dataclasses of numpy arrays, no torch, no sqlite.

Shapes are part of the contract:
    n  image patches of one page, m  non-image tokens of one page, d  vector dimension (128),
    k  vectors a reduction keeps, q  query tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image


# progress(fraction done in 0..1, message): how every long call (render, encode, index, evaluate)
# reports progress; the CLI draws a bar from it, the web app a gr.Progress.
Progress = Callable[[float, str], None]

_progress_log = logging.getLogger("vdr_app.progress")


def log_progress(fraction: float, message: str) -> None:
    """The default Progress: a debug log line."""
    _progress_log.debug("%3.0f%% %s", fraction * 100, message)


def scaled_progress(progress: Progress, start: float, end: float) -> Progress:
    """A Progress mapping 0..1 onto start..end of `progress` (one step of a longer job)."""
    return lambda fraction, message: progress(start + (end - start) * fraction, message)


@dataclass
class PageImage:
    """One rendered PDF page.

    Attributes:
        image: the page as an RGB PIL image.
        page_number: 1-based page number in its PDF.
        pdf_bytes: the whole PDF this page came from (shared, not copied), for encoders that read
            the text layer; None for images that did not come from a PDF.
    """

    image: Image.Image
    page_number: int = 1
    pdf_bytes: bytes | None = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.image.size


def _as_2d(array: Any, name: str, width: int | None = None) -> np.ndarray:
    out = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
    if out.ndim != 2 or (width is not None and out.shape[1] != width):
        want = f"(n, {width})" if width is not None else "(n, d)"
        raise ValueError(f"{name} must have shape {want}, got {out.shape}")
    return out


@dataclass
class PageEmbedding:
    """A page encoded by a multi-vector model, before any reduction.

    Attributes:
        patches: float32 (n, d), L2-normalised, one row per image patch.
        boxes: float32 (n, 4), each patch's (x0, y0, x1, y1) on the page in 0-1 coordinates.
        attention: float32 (n,) last-layer attention of the final token to each patch, or None.
        extra: float32 (m, d) non-image tokens (prompt/special tokens), kept as they are by
            every reduction and counted in memory.
        cells: int (n, 3) each patch's (region, row, column) on its region's grid, or None.
            Regions are separately gridded parts of the input: colSmol's tiled page is region 0
            and its global thumbnail region 1; single-grid families use region 0 only. When None,
            it is derived from `boxes` (see `derive_cells`).
        model_id: the encoder that produced it.
        info: free-form per-page facts from the encoder (e.g. "no_text": True).
        centrality: float32 (layers, n) each patch's in-degree centrality in every decoder layer
            (attention received from the page's other patches, `models/centrality.py`), what the
            `sap` strategy ranks by; None for pages encoded without it (before it was captured).
    """

    patches: np.ndarray
    boxes: np.ndarray
    attention: np.ndarray | None = None
    extra: np.ndarray | None = None
    cells: np.ndarray | None = None
    model_id: str = ""
    info: dict = field(default_factory=dict)
    centrality: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.patches = _as_2d(self.patches, "patches")
        n, d = self.patches.shape
        self.boxes = _as_2d(self.boxes, "boxes", 4)
        if self.boxes.shape[0] != n:
            raise ValueError(f"boxes has {self.boxes.shape[0]} rows for {n} patches")
        if self.attention is not None:
            self.attention = np.asarray(self.attention, dtype=np.float32).reshape(-1)
            if self.attention.shape[0] != n:
                raise ValueError(f"attention has {self.attention.shape[0]} values for {n} patches")
        self.extra = np.zeros((0, d), np.float32) if self.extra is None else _as_2d(self.extra, "extra", d)
        if self.cells is None:
            self.cells = derive_cells(self.boxes)
        else:
            self.cells = np.asarray(self.cells, dtype=np.int64).reshape(-1, 3)
            if self.cells.shape[0] != n:
                raise ValueError(f"cells has {self.cells.shape[0]} rows for {n} patches")
        if self.centrality is not None:
            self.centrality = np.asarray(self.centrality, dtype=np.float32)
            if self.centrality.ndim != 2 or self.centrality.shape[1] != n or self.centrality.shape[0] < 1:
                raise ValueError(f"centrality must have shape (layers, {n}), got {self.centrality.shape}")

    @property
    def n_patches(self) -> int:
        return self.patches.shape[0]

    @property
    def dim(self) -> int:
        return self.patches.shape[1]

    def all_vectors(self) -> np.ndarray:
        """float32 (n + m, d): what the full index searches (patches, then extra tokens)."""
        return np.concatenate([self.patches, self.extra]) if len(self.extra) else self.patches


def derive_cells(boxes: np.ndarray) -> np.ndarray:
    """Recover (region, row, col) for patches given only their boxes.

    Patches of one region share a box size (a grid); a region's rows and columns are the ranks of
    the distinct box tops and lefts. Boxes are rounded to 1e-4 so float noise does not split rows.

    Args:
        boxes: float (n, 4) in 0-1 coordinates.

    Returns:
        int64 (n, 3).
    """
    boxes = np.round(np.asarray(boxes, dtype=np.float64), 4)
    n = boxes.shape[0]
    cells = np.zeros((n, 3), dtype=np.int64)
    if n == 0:
        return cells
    sizes = boxes[:, 2:] - boxes[:, :2]  # (n, 2)
    _, region = np.unique(np.round(sizes, 3), axis=0, return_inverse=True)
    # Order regions by first appearance so the main page grid (listed first) is region 0.
    first_seen = {r: i for i, r in reversed(list(enumerate(region.tolist())))}
    order = sorted(first_seen, key=first_seen.get)
    remap = {r: i for i, r in enumerate(order)}
    cells[:, 0] = [remap[r] for r in region.tolist()]
    for r in range(len(order)):
        members = cells[:, 0] == r
        _, cells[members, 1] = np.unique(boxes[members, 1], return_inverse=True)
        _, cells[members, 2] = np.unique(boxes[members, 0], return_inverse=True)
    return cells


@dataclass
class QueryEmbedding:
    """A query encoded by the same model as the pages.

    Attributes:
        vectors: float32 (q, d), L2-normalised.
        tokens: q token strings, for per-token similarity maps.
        text: the query as typed.
    """

    vectors: np.ndarray
    tokens: list[str] = field(default_factory=list)
    text: str = ""

    def __post_init__(self) -> None:
        self.vectors = _as_2d(self.vectors, "query vectors")


@dataclass
class Reduction:
    """One page's embedding after pruning or merging.

    Attributes:
        vectors: float32 (k, d) the kept or merged image vectors (merged ones re-normalised).
        groups: int64 (n,) for every original patch, the row of `vectors` that now stands for it,
            or -1 if it was pruned.
        extra: float32 (m, d) the page's non-image tokens, passed through untouched.
        info: strategy facts worth showing (e.g. DocPruner's threshold, the realised keep ratio).
        quantised: for a quantised view (`...@int8`, `...@int4`, `...@int2`, `...@binary`),
            `vdr_app.quantise.QuantisedVectors` of `all_vectors()` (k + m rows): what the store keeps and search scores; None otherwise.
    """

    vectors: np.ndarray
    groups: np.ndarray
    extra: np.ndarray
    info: dict = field(default_factory=dict)
    quantised: object | None = None

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        self.groups = np.asarray(self.groups, dtype=np.int64)
        self.extra = np.asarray(self.extra, dtype=np.float32)

    @property
    def n_vectors(self) -> int:
        """Vectors stored for this page: reduced image vectors plus extra tokens."""
        return self.vectors.shape[0] + self.extra.shape[0]

    def all_vectors(self) -> np.ndarray:
        """float32 (k + m, d): what a view searches."""
        return np.concatenate([self.vectors, self.extra]) if len(self.extra) else self.vectors


@dataclass
class SearchHit:
    """One ranked page.

    Attributes:
        page_id: the page's id in the store.
        doc_id: its document's id.
        doc_name: the document's file name.
        page_number: 1-based page number in the document.
        score: MaxSim score.
        rank: 1-based rank.
    """

    page_id: int
    doc_id: int
    doc_name: str
    page_number: int
    score: float
    rank: int

    def as_dict(self) -> dict:
        return dict(
            rank=self.rank,
            score=round(float(self.score), 6),
            doc_id=self.doc_id,
            doc_name=self.doc_name,
            page_number=self.page_number,
            page_id=self.page_id,
        )
