"""Confidence intervals of a view's retention: the paired percentile bootstrap over queries."""

from __future__ import annotations

from typing import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000


def bootstrap_retention(
    view: Sequence[float], full: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> list[float] | None:
    """95 % percentile-bootstrap interval of mean(view) / mean(full), resampling queries in pairs.

    Each resample draws n queries with replacement and takes the ratio of the two means over the
    same draw, so the interval reflects how much the retention depends on which queries were
    asked. Resamples whose full-index mean is 0 are dropped.

    Args:
        view, full: one metric per query, (n,) each, same query order.

    Returns:
        [low, high], or None without queries or when the full index scores 0 everywhere.
    """
    v, f = np.asarray(view, dtype=np.float64), np.asarray(full, dtype=np.float64)
    if v.size == 0 or not f.any():
        return None
    draws = np.random.default_rng(seed).integers(0, v.size, size=(resamples, v.size))  # (B, n)
    den = f[draws].mean(axis=1)
    ratios = v[draws].mean(axis=1)[den > 0] / den[den > 0]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return [float(low), float(high)]
