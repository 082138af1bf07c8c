"""Which evaluated rows stand on the memory / quality frontier: the Pareto front and the best row per
byte budget (rows are `Evaluation.as_dict()["views"]`)."""

from __future__ import annotations

from typing import Sequence

from ..pareto import pareto_front

# A rescoring variant that re-scores more than this share of the library is left off the frontier.
MAX_FRONTIER_RESCORE_SHARE = 0.05


def frontier_rows(views: Sequence[dict], y: str = "retention.ndcg@5") -> list[dict]:
    """The rows of `Evaluation.as_dict()["views"]` on the memory (bytes) / quality Pareto front
    (rows marked `off_frontier`, deep rescoring variants, never are)."""
    rows = [r for r in views if not r.get("skipped") and not r.get("off_frontier")]
    points = [(_row_bytes(r), _dotted_value(r, y)) for r in rows]
    return [rows[i] for i in pareto_front(points)]


# Byte budgets (shares of the float16 full index) of the stacked frontier table.
STACKED_BUDGETS = (0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


def stacked_frontier(views: Sequence[dict], budgets: Sequence[float] = STACKED_BUDGETS,
                     y: str = "retention.ndcg@5") -> list[tuple[float, dict | None]]:
    """Best strategy × precision per byte budget: for each budget (a share of the full index's
    bytes), the row of `Evaluation.as_dict()["views"]` with the highest `y` among those that
    store at most that share (ties: fewer bytes), or None when none fits. Skipped rows and rows
    marked `off_frontier` (deep rescoring variants) never count."""
    rows = [r for r in views if not r.get("skipped") and not r.get("off_frontier")
            and r.get("memory_ratio") is not None and _dotted_value(r, y) is not None]
    out = []
    for budget in budgets:
        fits = [r for r in rows if r["memory_ratio"] <= budget + 1e-12]
        best = max(fits, key=lambda r: (_dotted_value(r, y), -r["memory_ratio"]), default=None)
        out.append((float(budget), best))
    return out


def _row_bytes(row: dict) -> float | None:
    value = (row.get("memory") or {}).get("bytes")
    return float(value) if value else None


def _dotted_value(row: dict, path: str):
    value = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return None if value is None else float(value)
