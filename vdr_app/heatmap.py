"""Per-patch maps of one page: query-token similarity, attention, and what a reduction did.

Pure numpy. Every map is a float array with one value per *original* patch of the page (the rows
of `PageEmbedding.patches`), so the same drawing code serves every family's geometry; the patch
boxes and cells say where each value goes. A reduced view is mapped back through
`Reduction.groups`: a patch takes the value of the vector that now stands for it, and a pruned
patch (group -1) is NaN.

Shapes: n original patches, k reduced vectors, q query tokens, d dimension.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

# Decision codes of `patch_decisions`.
PRUNED = 0
KEPT = 1
MERGED = 2

# Tokens that carry no content of their own: specials such as <bos>, <pad>, <|endoftext|>, [CLS],
# the prompt words ColPali-family processors prepend, and word-piece markers left alone.
_SPECIAL_RE = re.compile(r"^(<[^<>]*>|\[[A-Z]+\]|<\|[^|]*\|>)$")
_PROMPT_WORDS = {"query", "query:", "user", "user:", "assistant", "assistant:", "question", "question:"}


def spread(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Give every original patch the value of the vector standing for it; NaN where pruned.

    Args:
        values: (..., k) one value per reduced vector (leading axes, e.g. query tokens, kept).
        groups: int (n,) the reduced vector of each patch, or -1 if pruned.

    Returns:
        float32 (..., n).

    Raises:
        ValueError: a group points past the k vectors.
    """
    values = np.asarray(values, dtype=np.float32)
    groups = np.asarray(groups, dtype=np.int64)
    k = values.shape[-1]
    if groups.size and groups.max(initial=-1) >= k:
        raise ValueError(f"groups point at vector {int(groups.max())} but only {k} vectors are given")
    if k == 0:
        return np.full(values.shape[:-1] + groups.shape, np.nan, dtype=np.float32)
    out = np.take(values, np.clip(groups, 0, None), axis=-1).astype(np.float32, copy=True)  # (..., n)
    out[..., groups < 0] = np.nan
    return out


def token_similarity(query_vectors: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Dot products of every query token with every page vector (cosine: both are L2-normalised).

    Args:
        query_vectors: (q, d).
        vectors: (k, d).

    Returns:
        float32 (q, k).

    Raises:
        ValueError: the dimensions differ.
    """
    query_vectors = np.asarray(query_vectors, dtype=np.float32)
    vectors = np.asarray(vectors, dtype=np.float32)
    if query_vectors.ndim != 2 or vectors.ndim != 2 or query_vectors.shape[1] != vectors.shape[1]:
        raise ValueError(f"query vectors {query_vectors.shape} and page vectors {vectors.shape} do not match")
    return query_vectors @ vectors.T  # (q, k)


def similarity_maps(query_vectors: np.ndarray, patches: np.ndarray, groups: np.ndarray | None = None,
                    reduced: np.ndarray | None = None) -> np.ndarray:
    """Per-token similarity maps over a page's original patches, for the full page or a view.

    For the full page each patch is scored with its own vector. For a view (`reduced` and
    `groups` given) each patch shows the similarity of the vector that stands for it after the
    reduction, which is what MaxSim over that view actually sees; pruned patches are NaN.

    Args:
        query_vectors: (q, d).
        patches: (n, d) the page's original patch vectors.
        groups: int (n,) from `Reduction.groups`, or None for the full page.
        reduced: (k, d) from `Reduction.vectors`, or None for the full page.

    Returns:
        float32 (q, n).
    """
    if (groups is None) != (reduced is None):
        raise ValueError("give both groups and reduced vectors for a view, or neither for the full page")
    if groups is None:
        return token_similarity(query_vectors, patches)
    groups = np.asarray(groups)
    if groups.shape[0] != np.asarray(patches).shape[0]:
        raise ValueError(f"groups has {groups.shape[0]} entries for {np.asarray(patches).shape[0]} patches")
    return spread(token_similarity(query_vectors, reduced), groups)


def patch_decisions(groups: np.ndarray) -> np.ndarray:
    """What a reduction did to each original patch: PRUNED, KEPT (alone) or MERGED (shares a vector).

    Args:
        groups: int (n,).

    Returns:
        int8 (n,).
    """
    sizes = group_sizes(groups)
    return np.where(sizes == 0, PRUNED, np.where(sizes > 1, MERGED, KEPT)).astype(np.int8)


def group_sizes(groups: np.ndarray) -> np.ndarray:
    """For each patch, how many patches share its vector (0 where pruned).

    Args:
        groups: int (n,).

    Returns:
        int64 (n,).
    """
    groups = np.asarray(groups, dtype=np.int64)
    out = np.zeros(groups.shape, dtype=np.int64)
    kept = groups >= 0
    if kept.any():
        out[kept] = np.bincount(groups[kept])[groups[kept]]
    return out


def normalise(values: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1], ignoring NaN (kept as NaN); a constant map becomes all 0.5.

    Args:
        values: float (..., n).

    Returns:
        float32 of the same shape.
    """
    values = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        return values.copy()
    low, high = float(values[finite].min()), float(values[finite].max())
    if high - low <= 1e-12:
        return np.where(finite, 0.5, np.nan).astype(np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def content_tokens(tokens: list[str]) -> list[int]:
    """Indices of query tokens worth a similarity map.

    Drops special tokens (`<bos>`, `<pad>`, `<|endoftext|>`, `[CLS]`, ...), the prompt words the
    processors prepend ("Query:", "User:"; only before the first content token, so a query about
    "query plans" keeps its word), and tokens that are only whitespace or punctuation
    (after stripping the byte-level markers Ġ/▁). If nothing is left, every token is offered so
    the user still has a choice.

    Args:
        tokens: q token strings as the encoder reports them.

    Returns:
        increasing indices into `tokens`.
    """
    keep = []
    for i, token in enumerate(tokens):
        text = str(token)
        if _SPECIAL_RE.match(text.strip()):
            continue
        bare = text.replace("Ġ", " ").replace("▁", " ").replace("Ċ", " ").strip()
        if not bare or (not keep and bare.lower() in _PROMPT_WORDS):
            continue
        if all(unicodedata.category(ch)[0] in "PSZ" for ch in bare):
            continue
        keep.append(i)
    return keep if keep else list(range(len(tokens)))


def display_token(token: str) -> str:
    """A token as a person would read it (byte-level markers turned into spaces, trimmed)."""
    return str(token).replace("Ġ", " ").replace("▁", " ").replace("Ċ", " ").strip() or repr(token)


@dataclass(frozen=True)
class RegionGrid:
    """Where one region's patches sit, when they form a regular grid.

    Attributes:
        region: the region id (column 0 of `PageEmbedding.cells`).
        members: int (n_r,) indices of the region's patches among the page's n.
        cells_rc: int (n_r, 2) each member's (row, col) on the region's grid.
        rows, cols: the grid's size.
        x0, y0, x1, y1: the extent of the region's rows x cols grid on the page, 0-1
            coordinates (cells without a patch included: some encoders keep only some cells).
        regular: True when the boxes tile the extent uniformly as rows x cols cells, so the
            region can be drawn as one image; False for free-form boxes (e.g. text lines).
    """

    region: int
    members: np.ndarray
    cells_rc: np.ndarray
    rows: int
    cols: int
    x0: float
    y0: float
    x1: float
    y1: float
    regular: bool

    def to_grid(self, values: np.ndarray) -> np.ndarray:
        """Place per-patch values (n,) of the whole page into this region's (rows, cols) grid.

        Cells no patch covers are NaN. Only meaningful when `regular`.
        """
        return grid_values(np.asarray(values)[..., self.members], self.cells_rc, self.rows, self.cols)


def grid_values(values: np.ndarray, cells_rc: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Scatter per-patch values into a (rows, cols) grid; unset cells are NaN.

    Args:
        values: (n_r,) or (..., n_r).
        cells_rc: int (n_r, 2) each patch's (row, col).
        rows, cols: grid size.

    Returns:
        float32 (..., rows, cols).
    """
    values = np.asarray(values, dtype=np.float32)
    out = np.full(values.shape[:-1] + (rows, cols), np.nan, dtype=np.float32)
    out[..., cells_rc[:, 0], cells_rc[:, 1]] = values
    return out


def region_grids(boxes: np.ndarray, cells: np.ndarray) -> list[RegionGrid]:
    """Split a page's patches into regions and describe each region's grid.

    Region 0 is the page itself (for colSmol: its tiles, which together form one grid); higher
    regions are other views of the same page (colSmol's global thumbnail).

    Args:
        boxes: float (n, 4) (x0, y0, x1, y1) in 0-1 page coordinates.
        cells: int (n, 3) (region, row, col).

    Returns:
        one RegionGrid per region, by region id.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    cells = np.asarray(cells, dtype=np.int64)
    out = []
    for region in np.unique(cells[:, 0]).tolist() if len(cells) else []:
        members = np.flatnonzero(cells[:, 0] == region)
        rc = cells[members, 1:]  # (n_r, 2)
        b = boxes[members]  # (n_r, 4)
        rows, cols = int(rc[:, 0].max()) + 1, int(rc[:, 1].max()) + 1
        # Cell size and origin from the boxes themselves, so a sparse grid (the text-layout
        # encoder keeps only cells holding text) is placed as well as a full one.
        dx = float(np.median(b[:, 2] - b[:, 0]))
        dy = float(np.median(b[:, 3] - b[:, 1]))
        x0 = float(np.median(b[:, 0] - rc[:, 1] * dx))
        y0 = float(np.median(b[:, 1] - rc[:, 0] * dy))
        x1, y1 = x0 + cols * dx, y0 + rows * dy
        # Regular when each box is the cell its (row, col) names, to a tolerance well under a
        # patch (boxes are stored as uint16 fractions, ~1.5e-5).
        expect = np.stack([x0 + rc[:, 1] * dx, y0 + rc[:, 0] * dy, x0 + (rc[:, 1] + 1) * dx,
                           y0 + (rc[:, 0] + 1) * dy], axis=1)
        unique_cells = len(np.unique(rc[:, 0] * cols + rc[:, 1])) == len(members)
        regular = bool(unique_cells and min(dx, dy) > 0
                       and np.abs(b - expect).max(initial=0.0) < 0.1 * min(dx, dy))
        out.append(RegionGrid(int(region), members, rc, rows, cols, x0, y0, x1, y1, regular))
    return out


def colour_groups(groups: np.ndarray, cells: np.ndarray, n_colours: int = 10) -> np.ndarray:
    """Give merged groups colour indices so that groups touching on the page differ.

    Greedy colouring of the group adjacency graph (two groups touch when patches of theirs are
    grid neighbours in the same region), largest groups first, each taking the least used colour its neighbours
    leave free; with more touching groups than
    colours a group may share a colour with a neighbour.

    Args:
        groups: int (n,) from `Reduction.groups` (-1 pruned).
        cells: int (n, 3) (region, row, col).
        n_colours: palette size.

    Returns:
        int64 (n,) colour index in [0, n_colours) per patch, -1 where pruned.
    """
    groups = np.asarray(groups, dtype=np.int64)
    cells = np.asarray(cells, dtype=np.int64)
    out = np.full(groups.shape, -1, dtype=np.int64)
    kept = groups >= 0
    if not kept.any():
        return out
    n_groups = int(groups.max()) + 1
    # Patches keyed by (region, row, col) so right/down neighbours can be looked up.
    key = {(int(r), int(y), int(x)): int(g) for (r, y, x), g in zip(cells[kept], groups[kept])}
    neighbours: list[set[int]] = [set() for _ in range(n_groups)]
    for (r, y, x), g in key.items():
        for other in (key.get((r, y, x + 1)), key.get((r, y + 1, x))):
            if other is not None and other != g:
                neighbours[g].add(other)
                neighbours[other].add(g)
    sizes = np.bincount(groups[kept], minlength=n_groups)
    colour = np.full(n_groups, -1, dtype=np.int64)
    used = np.zeros(n_colours, dtype=np.int64)
    for g in np.argsort(-sizes, kind="stable").tolist():
        if sizes[g] == 0:
            continue
        taken = {int(colour[o]) for o in neighbours[g]}
        free = [c for c in range(n_colours) if c not in taken]
        # The least used free colour spreads the palette over the page instead of two colours.
        colour[g] = min(free, key=lambda c: used[c]) if free else g % n_colours
        used[colour[g]] += 1
    out[kept] = colour[groups[kept]]
    return out


def robust_normalise(values: np.ndarray, upper_percentile: float = 99.0) -> np.ndarray:
    """Scale to [0, 1] with the top clipped at a percentile, NaN kept.

    Attention is heavy-tailed (a few patches take most of it); clipping the top 1 % keeps the
    rest of the page from washing out to zero.

    Args:
        values: float (n,).
        upper_percentile: values above this percentile map to 1.

    Returns:
        float32 (n,).
    """
    values = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    if finite.sum() < 2:
        return normalise(values)
    high = float(np.percentile(values[finite], upper_percentile))
    return normalise(np.where(finite, np.minimum(values, high), np.nan))


def boundary_segments(grid: RegionGrid, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cell edges of a regular region where the label changes: the outlines of every group.

    Each edge between two grid cells (or between a cell and the outside) is returned when the
    labels on its two sides differ and at least one side is a group (label >= 0). Cells without a
    patch, and patches labelled < 0 (pruned), are outside every group.

    Args:
        grid: a regular region (`RegionGrid.regular`).
        labels: int (n,) over all patches of the page: a group id >= 0, or < 0 for none.

    Returns:
        segments float (s, 4) as (x0, y0, x1, y1) in 0-1 page coordinates, and sides int (s, 2):
        the labels on both sides of each segment (-1 for none).
    """
    labels = np.asarray(labels, dtype=np.int64)
    lab = np.full((grid.rows + 2, grid.cols + 2), -1, dtype=np.int64)  # padded with "none"
    own = np.where(labels[grid.members] >= 0, labels[grid.members], -1)
    lab[grid.cells_rc[:, 0] + 1, grid.cells_rc[:, 1] + 1] = own
    dx = (grid.x1 - grid.x0) / grid.cols
    dy = (grid.y1 - grid.y0) / grid.rows
    # Horizontal edges: between row r-1 and row r (r = 0..rows), for columns 0..cols-1.
    above, below = lab[:-1, 1:-1], lab[1:, 1:-1]  # (rows + 1, cols)
    r, c = np.nonzero((above != below) & ((above >= 0) | (below >= 0)))
    horizontal = np.stack([grid.x0 + c * dx, grid.y0 + r * dy, grid.x0 + (c + 1) * dx, grid.y0 + r * dy], axis=1)
    h_sides = np.stack([above[r, c], below[r, c]], axis=1)
    # Vertical edges: between column c-1 and column c, for rows 0..rows-1.
    left, right = lab[1:-1, :-1], lab[1:-1, 1:]  # (rows, cols + 1)
    r, c = np.nonzero((left != right) & ((left >= 0) | (right >= 0)))
    vertical = np.stack([grid.x0 + c * dx, grid.y0 + r * dy, grid.x0 + c * dx, grid.y0 + (r + 1) * dy], axis=1)
    v_sides = np.stack([left[r, c], right[r, c]], axis=1)
    segments = np.concatenate([horizontal, vertical]).reshape(-1, 4).astype(np.float64)
    sides = np.concatenate([h_sides, v_sides]).reshape(-1, 2).astype(np.int64)
    return segments, sides


def query_words(tokens: list[str], indices: list[int]) -> list[tuple[str, list[int]]]:
    """Group sub-word query tokens into the words a person typed.

    WordPiece marks a continuation with "##" ("hi", "##gh" -> "high"); byte-level BPE and
    SentencePiece mark a word's *start* with "Ġ" / "▁", so in a query that uses those markers a
    token without one continues the previous word. Only tokens in `indices` (the content tokens)
    are grouped; a word never spans a dropped token.

    Args:
        tokens: the q token strings of the query.
        indices: increasing indices of the content tokens (see `content_tokens`).

    Returns:
        (word, token indices) pairs in query order.
    """
    marked = any(str(t).startswith(("Ġ", "▁")) for t in tokens)
    words: list[tuple[str, list[int]]] = []
    previous = None
    for i in indices:
        token = str(tokens[i])
        continues = previous is not None and previous == i - 1 and (
            token.startswith("##") or (marked and not token.startswith(("Ġ", "▁", "Ċ")))
        )
        piece = token[2:] if token.startswith("##") else display_token(token)
        if continues:
            word, members = words[-1]
            words[-1] = (word + piece, members + [i])
        else:
            words.append((piece, [i]))
        previous = i
    return words
