"""Memory accounting: what a set of stored vectors costs, and how a view compares to full.

Everything counts stored vectors, extra (non-image) tokens included, at the bytes the store holds
them in: float16 (2 bytes per value), or for a quantised view its real codes and scales (int8:
d + 4 bytes per vector; int4: ceil(d/2) + 4; int2: ceil(d/4) + 4; binary: ceil(d/8); see
vdr_app.quantise). The ratio to full is a ratio of
bytes, so for float16 views it is Light-ColPali's memory ratio (the share of vectors kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .quantise import FLOAT16, bytes_per_vector

@dataclass(frozen=True)
class MemorySummary:
    """Vectors and bytes of one view over all pages.

    Attributes:
        view: the view spec ("full" for the stored embeddings).
        pages: pages counted.
        vectors: vectors stored in all.
        bytes: vectors × bytes per vector (float16: dim × 2; int8: dim + 4; int4: ceil(dim / 2) + 4;
            int2: ceil(dim / 4) + 4; binary: ceil(dim / 8)).
        per_page_min, per_page_mean, per_page_max: vectors per page.
        bytes_per_page: mean bytes per page.
        ratio_to_full: bytes of this view / bytes of the full index (1.0 for full; NaN when empty).
        precision: "float16", "int8", "int4", "int2" or "binary".
        vector_ratio: vectors of this view / vectors of the full index (the reduction alone).
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
    precision: str = FLOAT16
    vector_ratio: float = float("nan")

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in self.__dict__.items()}


def summarize(view: str, counts: np.ndarray, dim: int, full_vectors: int, quant: str | None = None) -> MemorySummary:
    """Summarise per-page vector counts of one view.

    Args:
        view: view spec.
        counts: int (N,) vectors stored per page.
        dim: vector dimension.
        full_vectors: vectors of the full index over the same pages (for the ratio; stored at float16).
        quant: the view's quantiser (None: float16).
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    pages = int(counts.size)
    per_vector = bytes_per_vector(dim, quant)
    nbytes = total * per_vector
    full_bytes = full_vectors * bytes_per_vector(dim)  # the full index is float16
    return MemorySummary(
        view=view,
        pages=pages,
        vectors=total,
        bytes=nbytes,
        per_page_min=int(counts.min()) if pages else 0,
        per_page_mean=round(float(counts.mean()), 2) if pages else 0.0,
        per_page_max=int(counts.max()) if pages else 0,
        bytes_per_page=round(nbytes / pages, 1) if pages else 0.0,
        ratio_to_full=round(nbytes / full_bytes, 6) if full_bytes else float("nan"),
        precision=quant or FLOAT16,
        vector_ratio=round(total / full_vectors, 4) if full_vectors else float("nan"),
    )


def format_bytes(n: float) -> str:
    """Human-readable size: 1.5 KB, 257.5 KB, 3.2 MB (decimal units, as the papers use)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover
