"""Evaluation: how much retrieval quality each view keeps, for the memory it saves (see `run`).

A step on the way to one module per concept: the module moves here whole first, so its history
follows it, and is split by concept in the next commit.
"""

from .run import *  # noqa: F401,F403
from .run import (  # noqa: F401  names used outside `__all__`
    DEPTH,
    FULL,
    STACKED_BUDGETS,
    SWEEP_QUANTISED,
    __all__,
    _dotted_value,
    distinctive_phrase,
    documents_by_name,
    stored_page_counts,
)
