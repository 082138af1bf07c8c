"""SQLite bytes on disk per stored vector, against raw float16.

Writes N synthetic ColPali-sized pages (1024 patches on a 32×32 grid + 6 extra tokens, d=128) into a
fresh store and prints, from SQLite's dbstat table, the bytes each table occupies:

    embeddings  the vectors themselves (target: ≤ 1.05 × raw float16)
    layouts     per-patch boxes (uint16) and attention (float32), beside the vectors
    pages       the page images (tiny here; real pages are JPEGs of ~100 KB)

    python -m benchmarks.bench_store [--pages 200]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vdr_app.store import Store
from vdr_app.types import PageEmbedding, PageImage


def colpali_page(rng: np.random.Generator, side: int = 32, extra: int = 6, dim: int = 128) -> PageEmbedding:
    patches = rng.standard_normal((side * side, dim)).astype(np.float32)
    patches /= np.linalg.norm(patches, axis=1, keepdims=True)
    r, c = np.divmod(np.arange(side * side), side)
    boxes = np.stack([c / side, r / side, (c + 1) / side, (r + 1) / side], 1)
    return PageEmbedding(patches=patches, boxes=boxes, attention=rng.random(side * side),
                         extra=rng.standard_normal((extra, dim)), model_id="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.sqlite"
        store = Store(path)
        pages = [(PageImage(Image.new("RGB", (8, 8), "white"), i + 1), colpali_page(rng)) for i in range(args.pages)]
        start = time.perf_counter()
        store.add_document("bench.pdf", "0" * 64, 0, "bench", pages)
        elapsed = time.perf_counter() - start
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        vectors = sum(p.n_patches + len(p.extra) for _, p in pages)
        raw = vectors * 128 * 2
        conn = sqlite3.connect(path)
        sizes = dict(conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
        conn.close()
        file_bytes = path.stat().st_size
    print(f"{args.pages} pages × 1030 vectors × 128 d; written in {elapsed:.2f} s ({args.pages / elapsed:.0f} pages/s)")
    print(f"raw float16 vectors: {raw:,} B ({raw / vectors:.0f} B per vector)")
    print(f"{'table':<22} {'bytes':>14} {'per vector':>11} {'× raw f16':>10}")
    for name in ("embeddings", "layouts", "pages"):
        b = sizes.get(name, 0)
        print(f"{name:<22} {b:>14,} {b / vectors:>11.1f} {b / raw:>10.3f}")
    print(f"{'whole file':<22} {file_bytes:>14,} {file_bytes / vectors:>11.1f} {file_bytes / raw:>10.3f}")


if __name__ == "__main__":
    main()
