"""The memory/quality Pareto front: which views no other view beats on both axes.

Its own module because both the evaluation (frontier rows) and the figures (the ringed frontier
line) need it, and neither should import the other for it.
"""

from __future__ import annotations

import math
from typing import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes: less memory (x) and at least as
    much quality (y), or as little memory and more quality. Best memory first.

    Args:
        points: (memory, quality) pairs; NaN or None entries are never on the front.

    Returns:
        indices into `points`, sorted by memory (ascending), quality rising along the front.
    """
    valid = [i for i, (x, y) in enumerate(points)
             if x is not None and y is not None and x == x and y == y]
    order = sorted(valid, key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front
