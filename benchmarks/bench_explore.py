"""Explore tab latency: from choosing a new ratio to the updated figure, engine side.

One ColPali-sized page (32x32 = 1024 patches + 6 extra tokens = 1030 vectors, d = 128) of the
sample PDF is stored once; then, for each strategy, a new ratio is chosen `--repeats` times and the
Explore handler runs exactly as the web app runs it: `Engine.explore` (read the page from SQLite,
reduce on the fly) + `figures.exploration_figure` (page background cached per page, as in the
app) + `Figure.to_json` (what Gradio sends to the browser). Prints p50 / p90 in milliseconds per
step and in total. Target: total p50 < 300 ms.

Vectors are random unit vectors around 40 centres and attention is log-normal (as in
bench_reduce.py); reduction cost does not depend on their meaning.

    python benchmarks/bench_explore.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vdr_app import figures  # noqa: E402
from vdr_app.config import Settings  # noqa: E402
from vdr_app.engine import Engine  # noqa: E402
from vdr_app.models.base import Encoder  # noqa: E402
from vdr_app.models.layout import grid_layout  # noqa: E402
from vdr_app.types import PageEmbedding, QueryEmbedding  # noqa: E402
from vdr_app.ui.common import PageImages  # noqa: E402

TARGET_MS = 300.0
# (strategy, the ratios a user slides through) -> specs
SWEEPS = {
    "docpruner": [f"docpruner:k={k}" for k in (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)],
    "random": [f"random:keep={k}" for k in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)],
    "attention": [f"attention:keep={k}" for k in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)],
    "pool2d": [f"pool2d:factor={f}" for f in (2, 3, 4, 6, 9, 12, 16, 20, 25)],
    "cluster": [f"cluster:factor={f}" for f in (2, 3, 4, 6, 9, 12, 16, 20, 25)],
    "kmeans": [f"kmeans:factor={f}" for f in (2, 3, 4, 6, 9, 12, 16, 20, 25)],
    "prune_then_merge": [f"prune_then_merge:k=-0.5,factor={f}" for f in (2, 3, 4, 6, 9, 12, 16, 20, 25)],
}


class ColPaliShaped(Encoder):
    """Pages as ColPali sees them: a 32x32 grid over the page, 6 extra tokens, attention."""

    model_id = "bench-colpali-shaped"
    family = "bench"
    dim = 128

    def encode_pages(self, pages, progress=None):
        rng = np.random.default_rng(0)
        layout = grid_layout(32, 32)
        out = []
        for _ in pages:
            centres = rng.standard_normal((40, self.dim))
            patches = centres[rng.integers(40, size=len(layout))] + 0.8 * rng.standard_normal((len(layout), self.dim))
            extra = rng.standard_normal((6, self.dim))
            out.append(PageEmbedding(
                patches=patches / np.linalg.norm(patches, axis=1, keepdims=True),
                boxes=layout.boxes, cells=layout.cells,
                attention=rng.lognormal(0.0, 1.0, len(layout)).astype(np.float32),
                extra=extra / np.linalg.norm(extra, axis=1, keepdims=True), model_id=self.model_id,
            ))  # fmt: skip
        return out

    def encode_queries(self, queries):
        return [QueryEmbedding(np.ones((1, self.dim)) / np.sqrt(self.dim), ["q"], q) for q in queries]


def _ms(seconds: list[float], q: float) -> float:
    return 1000 * float(np.percentile(seconds, q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="ratio changes per strategy (default 15)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(Settings(data_dir=Path(folder)), encoder=ColPaliShaped())
        engine.add_files([ROOT / "assets" / "sample.pdf"])
        page_id = engine.pages()[0].id
        n_vectors = engine.explore(page_id, "full").full_vectors
        pages = PageImages(engine)
        pages.background(page_id)  # the app caches the page image on first view; so does the bench
        explore_figure = figures.exploration_figure  # warm plotly's validators once
        ex = engine.explore(page_id, "docpruner:k=0")
        explore_figure(pages.background(page_id), ex.embedding.boxes, ex.embedding.cells, ex.reduction.groups,
                       ex.embedding.attention).to_json()

        print(f"page: {n_vectors} vectors x {ex.dim} (32x32 patches + 6 extra); repeats per strategy: {args.repeats}")
        print(f"{'strategy':<18}{'explore p50':>12}{'figure p50':>12}{'json p50':>10}{'total p50':>11}"
              f"{'total p90':>11}  {'target':>6}")
        worst = 0.0
        for name, specs in SWEEPS.items():
            steps: dict[str, list[float]] = {"explore": [], "figure": [], "json": [], "total": []}
            for i in range(args.repeats):
                spec = specs[i % len(specs)]
                t0 = time.perf_counter()
                ex = engine.explore(page_id, spec)
                t1 = time.perf_counter()
                fig = explore_figure(pages.background(page_id), ex.embedding.boxes, ex.embedding.cells,
                                     ex.reduction.groups, ex.embedding.attention, title=spec,
                                     merging=ex.kind == "merging")
                t2 = time.perf_counter()
                fig.to_json()
                t3 = time.perf_counter()
                for key, value in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                    steps[key].append(value)
            p50 = _ms(steps["total"], 50)
            worst = max(worst, p50)
            print(f"{name:<18}{_ms(steps['explore'], 50):>12.1f}{_ms(steps['figure'], 50):>12.1f}"
                  f"{_ms(steps['json'], 50):>10.1f}{p50:>11.1f}{_ms(steps['total'], 90):>11.1f}  "
                  f"{'ok' if p50 < TARGET_MS else 'SLOW':>6}")
        print(f"worst total p50: {worst:.1f} ms (target < {TARGET_MS:.0f} ms)")
        engine.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
