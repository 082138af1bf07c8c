"""Memory accounting: what a set of stored vectors costs, and how a view compares to full.

Everything counts stored vectors at float16 (2 bytes per value), extra (non-image) tokens included,
which is how the store holds them and how Light-ColPali's memory ratio is defined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BYTES_PER_VALUE = 2  # float16


@dataclass(frozen=True)
class MemorySummary:
    """Vectors and bytes of one view over all pages.

    Attributes:
        view: the view spec ("full" for the stored embeddings).
        pages: pages counted.
        vectors: vectors stored in all.
        bytes: vectors × dim × 2.
        per_page_min, per_page_mean, per_page_max: vectors per page.
        bytes_per_page: mean bytes per page.
        ratio_to_full: bytes of this view / bytes of the full index (1.0 for full; NaN when empty).
    """

    view: str
    pages: int
    vectors: int
    bytes: int
    per_page_min: int
    per_page_mean: float
    per_page_max: int
    bytes_per_page: float
    ratio_to_full: float

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in self.__dict__.items()}


def summarize(view: str, counts: np.ndarray, dim: int, full_vectors: int) -> MemorySummary:
    """Summarise per-page vector counts of one view.

    Args:
        view: view spec.
        counts: int (N,) vectors stored per page.
        dim: vector dimension.
        full_vectors: vectors of the full index over the same pages (for the ratio).
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    pages = int(counts.size)
    return MemorySummary(
        view=view,
        pages=pages,
        vectors=total,
        bytes=total * dim * BYTES_PER_VALUE,
        per_page_min=int(counts.min()) if pages else 0,
        per_page_mean=round(float(counts.mean()), 2) if pages else 0.0,
        per_page_max=int(counts.max()) if pages else 0,
        bytes_per_page=round(total * dim * BYTES_PER_VALUE / pages, 1) if pages else 0.0,
        ratio_to_full=round(total / full_vectors, 4) if full_vectors else float("nan"),
    )


def format_bytes(n: float) -> str:
    """Human-readable size: 1.5 KB, 257.5 KB, 3.2 MB (decimal units, as the papers use)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover
