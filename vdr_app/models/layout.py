"""Where each image token of a page sits: boxes in 0-1 page coordinates and grid cells.

Pure numpy, no torch: the families' token orders are written down here once and tested directly.
Every family stretches the whole page onto its input canvas (no letterboxing), so a token grid of
rows x cols always tiles the full page uniformly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PatchLayout:
    """The geometry of one page's image tokens, in token order.

    Attributes:
        boxes: float32 (n, 4) each token's (x0, y0, x1, y1) on the page, 0-1 coordinates.
        cells: int64 (n, 3) each token's (region, row, col) on its region's grid.
        info: grid facts worth storing (e.g. {"grid": [rows, cols]}).
    """

    boxes: np.ndarray
    cells: np.ndarray
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def grid_layout(rows: int, cols: int, region: int = 0) -> PatchLayout:
    """A rows x cols grid over the whole page, tokens in row-major order.

    Used by ColPali (32x32), the Qwen-VL families (rows = h/2, cols = w/2 of image_grid_thw) and
    for colSmol's global thumbnail (8x8).

    Args:
        rows: number of token rows (top to bottom).
        cols: number of token columns (left to right).
        region: region id written into `cells`.

    Returns:
        layout with rows*cols tokens.
    """
    if rows <= 0 or cols <= 0:
        raise ValueError(f"grid must have positive rows and cols, got {rows}x{cols}")
    r, c = np.divmod(np.arange(rows * cols), cols)  # (n,), (n,)
    boxes = np.stack([c / cols, r / rows, (c + 1) / cols, (r + 1) / rows], axis=1)
    cells = np.stack([np.full_like(r, region), r, c], axis=1)
    return PatchLayout(boxes.astype(np.float32), cells.astype(np.int64), {"grid": [int(rows), int(cols)]})


def tiled_layout(tile_rows: int, tile_cols: int, side: int) -> PatchLayout:
    """Idefics3-style tiles: tile by tile (row-major over tiles), side x side row-major inside.

    Together the tiles form one (tile_rows*side) x (tile_cols*side) grid over the page, region 0.

    Args:
        tile_rows: tiles stacked vertically.
        tile_cols: tiles side by side.
        side: tokens per tile side (sqrt of image_seq_len; 8 for colSmol).

    Returns:
        layout with tile_rows*tile_cols*side*side tokens.
    """
    if tile_rows <= 0 or tile_cols <= 0 or side <= 0:
        raise ValueError(f"tiles must be positive, got {tile_rows}x{tile_cols} of side {side}")
    n = tile_rows * tile_cols * side * side
    tile, within = np.divmod(np.arange(n), side * side)  # (n,), (n,)
    tile_r, tile_c = np.divmod(tile, tile_cols)
    in_r, in_c = np.divmod(within, side)
    rows, cols = tile_rows * side, tile_cols * side
    r, c = tile_r * side + in_r, tile_c * side + in_c
    boxes = np.stack([c / cols, r / rows, (c + 1) / cols, (r + 1) / rows], axis=1)
    cells = np.stack([np.zeros_like(r), r, c], axis=1)
    return PatchLayout(
        boxes.astype(np.float32),
        cells.astype(np.int64),
        {"grid": [int(rows), int(cols)], "tiles": [int(tile_rows), int(tile_cols)]},
    )


def idefics3_layout(tile_rows: int, tile_cols: int, side: int) -> PatchLayout:
    """colSmol / ColModernVBert: local tiles (region 0), then the global thumbnail (region 1).

    When the page is not split (the processor reports 0x0 tiles), the model sees only the
    global image; it then is the page's only grid and is region 0.

    Args:
        tile_rows, tile_cols: the image processor's rows/cols (0, 0 when not split).
        side: tokens per tile side.

    Returns:
        layout with (tile_rows*tile_cols + 1)*side*side tokens, or side*side when not split.
    """
    if tile_rows * tile_cols == 0:
        layout = grid_layout(side, side, region=0)
        layout.info.update(tiles=[0, 0], global_grid=[int(side), int(side)])
        return layout
    local = tiled_layout(tile_rows, tile_cols, side)
    thumb = grid_layout(side, side, region=1)
    return PatchLayout(
        np.concatenate([local.boxes, thumb.boxes]),
        np.concatenate([local.cells, thumb.cells]),
        {**local.info, "global_grid": [int(side), int(side)]},
    )
