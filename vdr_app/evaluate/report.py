"""An evaluation written out: every figure as JSON, and the trade-off curve as standalone HTML."""

from __future__ import annotations

import json
from pathlib import Path

from .run import Evaluation


def write_json(evaluation: Evaluation, path: str | Path) -> Path:
    """Write every figure of an evaluation as JSON (UTF-8, indented)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(evaluation.as_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def curve_metric(evaluation: Evaluation) -> tuple[str, str]:
    """What the trade-off curve plots: ("retention.ndcg@5", label) with labels, else overlap@10."""
    if evaluation.labelled:
        return "retention.ndcg@5", "nDCG@5 retention (view / full)"
    return "fidelity.overlap@10", "overlap@10 with the full index (label-free)"


def write_html(evaluation: Evaluation, path: str | Path, include_plotlyjs: bool | str = True) -> Path:
    """Save the retention-vs-memory figure as a standalone HTML file (plotly.js inlined by default,
    so it opens offline)."""
    from ..figures import retention_figure

    y, title = curve_metric(evaluation)
    figure = retention_figure(evaluation.as_dict(per_query=False)["views"], y=y, y_title=title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.write_html(str(path), include_plotlyjs=include_plotlyjs, full_html=True)
    return path
