#!/usr/bin/env python3
"""Space given back by the store: a Lab-style sweep (views added, then removed), and `compact`
(SQLite VACUUM) on a large store. Synthetic pages and vectors; no model.

    .venv/bin/python -m benchmarks.bench_compact sweep [--pages 60] [--views 50]
    .venv/bin/python -m benchmarks.bench_compact compact --gb 1 [--folder /tmp]

`sweep`: adds --views views of the default Lab grid one by one and removes each again (what the
Lab does without "keep the evaluated views"), then prints the file size (WAL included) and the
free pages inside it, before and after `Store.compact` where it exists.
`compact`: builds a store of about --gb GB (full vectors, plus one view as large as them that is
then deleted, so about half of the file is free), times `Store.compact` (or a plain VACUUM where
that method does not exist), and deletes the file.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from vdr_app.config import Settings  # noqa: E402
from vdr_app.engine import Engine  # noqa: E402
from vdr_app.evaluate import sweep_specs  # noqa: E402
from vdr_app.store import Store  # noqa: E402
from vdr_app.types import PageEmbedding, PageImage  # noqa: E402


def _pages(n: int, patches: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(patches)))
    rows, cols = np.divmod(np.arange(patches), side)
    boxes = np.stack([cols / side, rows / side, (cols + 1) / side, (rows + 1) / side], 1).astype(np.float32)
    image = Image.new("RGB", (64, 90), "white")
    out = []
    for i in range(n):
        vectors = rng.standard_normal((patches, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        attention = rng.random(patches).astype(np.float32)
        out.append((PageImage(image=image, page_number=i + 1),
                    PageEmbedding(patches=vectors, boxes=boxes, attention=attention / attention.sum(),
                                  extra=vectors[:2].copy(), model_id="synthetic")))
    return out


def _free(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("freelist_count", "page_size"))
        return free * size, conn.execute("PRAGMA auto_vacuum").fetchone()[0]
    finally:
        conn.close()


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _parts(path: Path) -> str:
    wal = Path(f"{path}-wal")
    return f"file {path.stat().st_size / 1e6:.1f} MB + WAL {wal.stat().st_size / 1e6 if wal.exists() else 0:.1f} MB"


def sweep(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vdr.sqlite"
        store = Store(path)
        for doc in range(args.pages // 10):
            store.add_document(f"doc{doc}.pdf", f"{doc:064x}", 1000, "synthetic", _pages(10, 1024, 128, doc))
        engine = Engine(Settings(data_dir=Path(tmp), store_path=path, model="synthetic"), store=store)
        start = _size(path)
        specs = [s for s in sweep_specs()][: args.views]
        began = time.perf_counter()
        for spec in specs:
            engine.add_view(spec)
            engine.delete_view(spec)
        took = time.perf_counter() - began
        free, auto = _free(path)
        print(f"{args.pages} pages x 1024 patches: store {start / 1e6:.1f} MB; after adding and removing "
              f"{len(specs)} views ({took:.0f} s): {_size(path) / 1e6:.1f} MB on disk, {free / 1e6:.1f} MB of it "
              f"free pages (auto_vacuum={auto}; {_parts(path)})")
        if hasattr(store, "compact"):
            began = time.perf_counter()
            store.compact()
            print(f"after compact ({time.perf_counter() - began:.1f} s): {_size(path) / 1e6:.1f} MB ({_parts(path)})")
        store.close()


def compact(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="vdr-compact-", dir=args.folder))
    try:
        path = folder / "vdr.sqlite"
        store = Store(path)
        dim, patches = 128, 1024
        per_page = patches * dim * 2 * 2  # full vectors + a view as large, float16
        pages = int(args.gb * 1e9 / per_page)
        for doc in range(0, pages, 50):
            store.add_document(f"doc{doc}.pdf", f"{doc:064x}", 1000, "synthetic", _pages(50, patches, dim, doc))
        ids = store.page_ids()
        # Rows as large as the full vectors, written then dropped (as a deleted view would be): about
        # half of the file becomes free pages.
        conn = store.db
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE ballast (b BLOB)")
        for _ in ids:
            conn.execute("INSERT INTO ballast VALUES (randomblob(?))", [patches * dim * 2])
        conn.conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        full = _size(path)
        conn.execute("DROP TABLE ballast")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        free, auto = _free(path)
        print(f"store of {len(ids)} pages: {full / 1e9:.2f} GB on disk, {free / 1e9:.2f} GB free pages "
              f"(auto_vacuum={auto})")
        began = time.perf_counter()
        if hasattr(store, "compact"):
            store.compact()
        else:
            conn.execute("VACUUM")
        print(f"compact: {time.perf_counter() - began:.1f} s -> {_size(path) / 1e9:.2f} GB")
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("--pages", type=int, default=60)
    s.add_argument("--views", type=int, default=50)
    c = sub.add_parser("compact")
    c.add_argument("--gb", type=float, default=1.0)
    c.add_argument("--folder", default=None)
    args = parser.parse_args()
    (sweep if args.what == "sweep" else compact)(args)


if __name__ == "__main__":
    main()
