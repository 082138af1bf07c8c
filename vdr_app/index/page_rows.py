"""Where each page's vectors sit in an append-only array of rows (`VectorFile`'s file,
`PageCodes`' arrays): a dict page id -> (first row, vector count)."""

from __future__ import annotations

import numpy as np


def locate(where: dict[int, tuple[int, int]], page_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(held page ids int64, their first rows int64, offsets (n + 1,) of their vectors packed in
    that order) for the page ids found in `where`, in the given order; the others are left out."""
    found = [(int(p), where[int(p)]) for p in page_ids if int(p) in where]
    lengths = np.array([n for _, (_, n) in found], dtype=np.int64)
    starts = np.array([row for _, (row, _) in found], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return np.array([p for p, _ in found], dtype=np.int64), starts, offsets


def packed_rows(starts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The row of every vector of located pages, packed page after page (an index array)."""
    return np.repeat(starts - offsets[:-1], np.diff(offsets)) + np.arange(int(offsets[-1]))
