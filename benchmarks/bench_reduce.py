"""Milliseconds per page for every reduction strategy, on one core.

Pages: ColPali-sized 1030×128 (32×32 patch grid + 6 extra tokens) and ColQwen2-sized 768×128
(24×32 grid + 6 extra), random unit vectors drawn around 40 centres (Ward and k-means cost do not
depend on the content) and log-normal attention (σ = 1, which makes DocPruner at k = -0.25 prune
about half, as the paper reports for ColQwen2.5). Prints the median of `--repeats` runs after one warm-up, the realised
vector count, a breakdown of `cluster`'s steps, and, when colpali-engine is installed,
HierarchicalTokenPooler on the same page for reference.

    python benchmarks/bench_reduce.py [--repeats 15] [--no-reference]
"""

from __future__ import annotations

import os

# One core, as the target says: set before numpy loads OpenBLAS.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy.cluster.hierarchy import fcluster, linkage  # noqa: E402

from vdr_app.reduce import available_strategies, parse_spec, reduce_page  # noqa: E402
from vdr_app.reduce import ops  # noqa: E402
from vdr_app.reduce.ops import group_means, pairwise_distances, profile_features, target_count  # noqa: E402
from vdr_app.types import PageEmbedding  # noqa: E402

SPECS = [
    "identity",
    "random:keep=0.5",
    "attention:keep=0.5",
    "docpruner:k=-0.25",
    "pool1d:factor=9",
    "pool2d:factor=9",
    "cluster:factor=9",
    "cluster:factor=2",
    "cluster:factor=9,features=vector",
    "kmeans:factor=9",
    "kmeans:factor=2",
    "prune_then_merge:k=-0.75,factor=4",
    "prune_then_merge:k=-0.25,factor=9",
]


def make_page(rows: int, cols: int, extra: int = 6, dim: int = 128, seed: int = 0) -> PageEmbedding:
    rng = np.random.default_rng(seed)
    n = rows * cols
    centres = rng.standard_normal((40, dim))
    patches = centres[rng.integers(40, size=n)] + 0.8 * rng.standard_normal((n, dim))
    patches /= np.linalg.norm(patches, axis=1, keepdims=True)
    r, c = np.divmod(np.arange(n), cols)
    boxes = np.stack([c / cols, r / rows, (c + 1) / cols, (r + 1) / rows], 1)
    extra_vecs = rng.standard_normal((extra, dim))
    extra_vecs /= np.linalg.norm(extra_vecs, axis=1, keepdims=True)
    return PageEmbedding(patches, boxes, attention=rng.lognormal(0.0, 1.0, n), extra=extra_vecs)


def median_ms(func, repeats: int) -> tuple[float, float]:
    """Median wall-clock and median CPU (process) milliseconds of `func()` over `repeats` runs.

    CPU time leaves out the time spent waiting for a busy machine's cores, which wall time counts
    (on a shared, loaded 2-core box the two differ by up to ~2.5×); both still include slow-down
    from other processes sharing caches and hyperthreads.
    """
    func()  # warm-up: imports, allocator, BLAS init
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        func()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def cluster_breakdown(page: PageEmbedding, factor: int, repeats: int) -> list[tuple[str, tuple[float, float]]]:
    """Time the steps of `cluster` (features="profile") separately, as ops.ward_labels runs them."""
    patches = page.patches
    points = profile_features(patches)
    clusters = target_count(page.n_patches, Fraction(1, factor))

    condensed = pairwise_distances(points)
    tree = linkage(condensed, method="ward")
    labels = fcluster(tree, t=clusters, criterion="maxclust") - 1
    return [
        ("features Y = E·L (eigh of EᵀE)", median_ms(lambda: profile_features(patches), repeats)),
        ("pairwise distances (BLAS Y·Yᵀ, sqrt)", median_ms(lambda: pairwise_distances(points), repeats)),
        ("scipy linkage(ward) on condensed", median_ms(lambda: linkage(condensed, method="ward"), repeats)),
        ("fcluster(maxclust)", median_ms(lambda: fcluster(tree, t=clusters, criterion="maxclust"), repeats)),
        ("group means + normalise", median_ms(lambda: group_means(patches, labels.astype(np.int64)), repeats)),
    ]


def cold_reduce(page, text):
    """reduce_page without the per-page Ward tree memo: the cost of a page's first view.

    (A new factor on a page already clustered only re-cuts the memoised tree: ~1 ms.)"""
    ops._TREES.clear()
    return reduce_page(page, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-reference", action="store_true", help="skip colpali-engine's pooler")
    args = parser.parse_args()

    pages = {"1030x128 (32x32+6)": make_page(32, 32), "768x128 (24x32+6)": make_page(24, 32)}
    missing = set(available_strategies()) - {parse_spec(s).strategy for s in SPECS}
    assert not missing, f"benchmark lacks strategies {missing}"

    names = list(pages)
    print(f"median of {args.repeats} runs, ms per page (wall / cpu), "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, load average {os.getloadavg()[0]:.1f}")
    print(f"| {'spec':<50} | " + " | ".join(f"{n:>19}" for n in names) + f" | {'vectors (1030 page)':>19} |")
    print(f"|{'-' * 52}|" + "|".join("-" * 21 for _ in names) + f"|{'-' * 21}|")
    for text in SPECS:
        cells = [median_ms(lambda: cold_reduce(page, text), args.repeats) for page in pages.values()]
        red = reduce_page(pages[names[0]], text)
        kept = f"{red.vectors.shape[0]} ({red.info['keep_ratio']:.1%})"
        timings = " | ".join(f"{w:8.2f} / {c:8.2f}" for w, c in cells)
        print(f"| {str(parse_spec(text)):<50} | {timings} | {kept:>19} |")

    if not args.no_reference:
        try:
            from vdr_app.torchvision_compat import ensure_torchvision

            ensure_torchvision()
            import torch
            from colpali_engine.compression import HierarchicalTokenPooler
        except ImportError as error:
            print(f"\n(reference skipped: {error})")
        else:
            torch.set_num_threads(1)
            pooler = HierarchicalTokenPooler()
            cells = []
            for page in pages.values():
                tensor = torch.from_numpy(page.patches)
                cells.append(median_ms(lambda: pooler._pool_single_embedding(tensor, 9), max(3, args.repeats // 5)))
            label = "reference: HierarchicalTokenPooler, factor 9"
            print(f"| {label:<50} | " + " | ".join(f"{w:8.2f} / {c:8.2f}" for w, c in cells) + f" | {'':>19} |")

    for name, page in pages.items():
        print(f"\ncluster:factor=9 breakdown on {name}")
        for step, (wall, cpu) in cluster_breakdown(page, 9, args.repeats):
            print(f"  {step:<40} {wall:8.2f} / {cpu:8.2f} ms")


if __name__ == "__main__":
    main()
