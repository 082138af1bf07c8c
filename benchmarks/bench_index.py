#!/usr/bin/env python3
"""Benchmark the search-index backends (vdr_app.index) through the seam the engine uses, in one run.

    python -m benchmarks.bench_index                       # both parts, default sizes (many minutes)
    python -m benchmarks.bench_index incremental [--n 10000 --p 115]
    python -m benchmarks.bench_index backends [--cells 10000x115,10000x1030 --qdrant-cells 10000x115,1000x1030]
    python -m benchmarks.bench_index --quick               # small sizes, about a minute

Part 1, incremental update (memory backend, the default). A store of N pages x P vectors is
loaded; then a 10-page document is added and deleted, and the first search after each write is
timed against a warm search. "before" is the old engine behaviour (every write dropped the view
and the next search rebuilt it from SQLite; reproduced with `add_view`, which drops a loaded
view); "after" is the index updated in place. Same store, same queries, same process.

Part 2, backends. For each N x P cell, a synthetic store (random L2-normalised 128-d vectors,
pages with a shared topic direction, 20-token queries made of noisy copies of one page's vectors)
is written once, then each backend runs in its own subprocess:
    memory        MemoryIndex (MaxSimIndex, bfloat16 in RAM)
    qdrant-local  QdrantIndex in qdrant-client's local mode (a folder; numpy inside the client)
    reference     MaxSimIndex(dtype="float16"): exact MaxSim of the stored float16 values
Figures: ingest (memory: loading the view from SQLite; Qdrant: `sync`, i.e. creating the
collection and uploading every page), query p50 over the timed queries (1 warm-up), peak RSS
above the process before ingest (VmHWM), and recall@10 against the memory backend and against
the reference. Local mode holds everything in Python/numpy structures and warns above 20k points:
it is a stand-in for the server's API, not for its speed or memory; cells too large for it on the
shared 24 GiB machine are scaled down with --qdrant-cells (say so when quoting figures).
No Qdrant server can be installed on the project's machines, so no server figures come from here.

The host is shared: the load average is printed beside every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 128
Q_TOKENS = 20
TOPK = 10
SEED = 20261202
DOC_PAGES = 10


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _status(key: str) -> float:
    """A /proc/self/status field in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    except OSError:
        pass


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _page_vectors(rng: np.random.Generator, p: int, topic: np.ndarray) -> np.ndarray:
    return _unit(0.35 * topic + rng.standard_normal((p, DIM)).astype(np.float32) / np.sqrt(DIM) * 1.0)


def build_store(path: Path, n: int, p: int) -> None:
    """Write a synthetic store of n pages x p vectors (documents of DOC_PAGES pages)."""
    from PIL import Image

    from vdr_app.store import Store
    from vdr_app.types import PageEmbedding, PageImage

    store = Store(path)
    rng = np.random.default_rng(SEED + p)
    topics = _unit(rng.standard_normal((16, DIM)))
    image = Image.new("RGB", (8, 8))
    side = int(np.ceil(np.sqrt(p)))
    rows, cols = np.divmod(np.arange(p), side)
    boxes = np.stack([cols / side, rows / side, (cols + 1) / side, (rows + 1) / side], 1)
    for d in range(n // DOC_PAGES):
        pages = []
        for i in range(DOC_PAGES):
            vecs = _page_vectors(rng, p, topics[rng.integers(16)])
            pages.append((PageImage(image, i + 1), PageEmbedding(patches=vecs, boxes=boxes, model_id="synthetic")))
        sha = hashlib.sha256(f"{n}-{p}-{d}".encode()).hexdigest()
        store.add_document(f"doc{d:05d}.pdf", sha, 1, "synthetic", pages)
    store.close()


def queries(store, count: int) -> list[np.ndarray]:
    """Noisy copies of Q_TOKENS vectors of randomly chosen stored pages."""
    rng = np.random.default_rng(SEED)
    ids = store.page_ids()
    out = []
    for _ in range(count):
        pid = ids[int(rng.integers(len(ids)))]
        _, vecs = store.load_vectors("full", [pid])
        v = vecs[0].astype(np.float32)
        pick = v[rng.choice(len(v), size=min(Q_TOKENS, len(v)), replace=False)]
        out.append(_unit(pick + 0.05 * rng.standard_normal(pick.shape).astype(np.float32)))
    return out


# -- part 1 -------------------------------------------------------------------------------------------


def incremental(store_path: Path, repeats: int) -> dict:
    from vdr_app.index import MemoryIndex
    from vdr_app.store import Store
    from vdr_app.types import PageEmbedding, PageImage
    from PIL import Image

    store = Store(store_path)
    index = MemoryIndex(store)
    qs = queries(store, 1 + repeats)
    rng = np.random.default_rng(SEED + 1)
    p = int(store.vector_counts("full")[0])
    side = int(np.ceil(np.sqrt(p)))
    rows, cols = np.divmod(np.arange(p), side)
    boxes = np.stack([cols / side, rows / side, (cols + 1) / side, (rows + 1) / side], 1)
    topic = _unit(rng.standard_normal(DIM))

    def search(q) -> float:
        t = time.perf_counter()
        index.top_k("full", q, TOPK)
        return time.perf_counter() - t

    t = time.perf_counter()
    index.top_k("full", qs[0], TOPK)
    first_load = time.perf_counter() - t
    warm = float(np.median([search(q) for q in qs[1:]]))
    rounds = {"before": [], "after": []}
    for r in range(repeats):
        for mode in ("before", "after"):
            pages = [(PageImage(Image.new("RGB", (8, 8)), i + 1),
                      PageEmbedding(patches=_page_vectors(rng, p, topic), boxes=boxes, model_id="synthetic"))
                     for i in range(DOC_PAGES)]
            sha = hashlib.sha256(f"bench-{mode}-{r}".encode()).hexdigest()
            t = time.perf_counter()
            doc_id = store.add_document(f"bench-{mode}-{r}.pdf", sha, 1, "synthetic", pages).doc_id
            t_store_add = time.perf_counter() - t
            t = time.perf_counter()
            if mode == "before":
                index.add_view("full")  # the old engine: drop the view, rebuild on the next search
            else:
                index.add_document(doc_id)
            t_index_add = time.perf_counter() - t
            q = qs[1 + r % repeats]
            s_add = search(q)
            t = time.perf_counter()
            store.delete_document(doc_id)
            t_store_del = time.perf_counter() - t
            t = time.perf_counter()
            if mode == "before":
                index.add_view("full")
            else:
                index.remove_document(doc_id)
            t_index_del = time.perf_counter() - t
            s_del = search(q)
            s_warm = search(q)
            rounds[mode].append(dict(store_add=t_store_add, index_add=t_index_add, search_after_add=s_add,
                                     store_delete=t_store_del, index_delete=t_index_del, search_after_delete=s_del,
                                     warm=s_warm))
    out = {"pages": len(store.page_ids()), "vectors_per_page": p, "first_load_s": first_load, "warm_s": warm,
           "load": _load()}
    for mode, rs in rounds.items():
        out[mode] = {k: float(np.median([x[k] for x in rs])) for k in rs[0]}
    return out


def print_incremental(r: dict) -> None:
    print(f"\n## incremental update, memory backend: {r['pages']} pages x {r['vectors_per_page']} vectors "
          f"(load {r['load']})")
    print(f"first load of the view from SQLite: {r['first_load_s'] * 1e3:.0f} ms; warm search p50 "
          f"{r['warm_s'] * 1e3:.1f} ms")
    print(f"{'':8} {'index add':>10} {'search after add':>17} {'index delete':>13} {'search after delete':>20} "
          f"{'warm search':>12} {'worst / warm':>13}")
    for mode in ("before", "after"):
        m = r[mode]
        worst = max(m["search_after_add"], m["search_after_delete"]) / m["warm"]
        print(f"{mode:8} {m['index_add'] * 1e3:>8.1f}ms {m['search_after_add'] * 1e3:>15.1f}ms "
              f"{m['index_delete'] * 1e3:>11.1f}ms {m['search_after_delete'] * 1e3:>18.1f}ms "
              f"{m['warm'] * 1e3:>10.1f}ms {worst:>12.2f}x")
    print("(medians over the rounds; SQLite add/delete themselves, the same in both modes: "
          f"{r['after']['store_add'] * 1e3:.0f} / {r['after']['store_delete'] * 1e3:.0f} ms)")


# -- part 2 -------------------------------------------------------------------------------------------


def child(args) -> None:
    """One backend on one store, in its own process: print one JSON line."""
    import warnings

    from vdr_app.index import MemoryIndex
    from vdr_app.index.qdrant import QdrantIndex
    from vdr_app.index.maxsim import MaxSimIndex
    from vdr_app.store import Store

    warnings.filterwarnings("ignore")
    store = Store(args.store)
    qs = queries(store, args.queries + 1)
    base = _status("VmRSS")
    _reset_peak()
    t = time.perf_counter()
    if args.backend == "reference":
        ids, vectors = store.load_vectors("full")
        ref = MaxSimIndex(vectors, dtype="float16")
        del vectors

        def top(q):
            idx, _ = ref.top_k(q, TOPK)
            return [ids[i] for i in idx]
    else:
        if args.backend == "memory":
            index = MemoryIndex(store)
            index.top_k("full", qs[0], 1)  # loads the view
        else:
            index = QdrantIndex(store, path=args.qdrant_path)
            index.sync()

        def top(q):
            return [pid for pid, _ in index.top_k("full", q, TOPK)]
    ingest = time.perf_counter() - t
    top(qs[0])
    times, tops = [], []
    for q in qs[1:]:
        t = time.perf_counter()
        tops.append(top(q))
        times.append(time.perf_counter() - t)
    print(json.dumps(dict(backend=args.backend, ingest_s=ingest, p50_s=float(np.median(times)),
                          peak_above_mib=_status("VmHWM") - base, rss_after_mib=_status("VmRSS"),
                          tops=tops, load=_load())))


def run_child(backend: str, store: Path, n_queries: int, workdir: Path) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_index", "_child", "--backend", backend, "--store", str(store),
           "--queries", str(n_queries), "--qdrant-path", str(workdir / f"qdrant-{store.stem}")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:
        return {"backend": backend, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def recall(tops, against) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(tops, against)]))


def _cells(text: str) -> list[tuple[int, int]]:
    return [tuple(int(x) for x in c.split("x")) for c in text.split(",") if c]


def store_for(workdir: Path, n: int, p: int) -> Path:
    path = workdir / f"store-{n}x{p}.sqlite"
    if not path.exists():
        t = time.perf_counter()
        build_store(path, n, p)
        print(f"(wrote a synthetic store of {n} x {p} in {time.perf_counter() - t:.0f} s)", flush=True)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="all", choices=["all", "incremental", "backends", "_child"])
    parser.add_argument("--n", type=int, default=10_000, help="pages for the incremental part")
    parser.add_argument("--p", type=int, default=115, help="vectors per page for the incremental part")
    parser.add_argument("--repeats", type=int, default=5, help="add/delete rounds per mode")
    parser.add_argument("--cells", default="10000x115,10000x1030", help="NxP cells for the memory backend")
    parser.add_argument("--qdrant-cells", default="10000x115,500x1030",
                        help="NxP cells for Qdrant local mode (it needs far more RAM than the memory backend)")
    parser.add_argument("--queries", type=int, default=9)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the synthetic stores here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="small sizes: 2000 pages, cells 2000x115 and 300x1030")
    parser.add_argument("--backend"), parser.add_argument("--store"), parser.add_argument("--qdrant-path")
    args = parser.parse_args(argv)
    if args.part == "_child":
        child(args)
        return
    if args.quick:
        args.n, args.cells, args.qdrant_cells = 2000, "2000x115,300x1030", "2000x115,300x1030"
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-index-")
        args.workdir = Path(tmp.name)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"bench_index: load {_load()}, {os.cpu_count()} CPUs")
    if args.part in ("all", "incremental"):
        print_incremental(incremental(store_for(args.workdir, args.n, args.p), args.repeats))
    if args.part in ("all", "backends"):
        cells = sorted(set(_cells(args.cells)) | set(_cells(args.qdrant_cells)))
        qdrant = set(_cells(args.qdrant_cells))
        print(f"\n## backends: ingest, query p50 (top-{TOPK}, {Q_TOKENS}-token queries), peak RSS, recall@{TOPK}")
        print(f"{'cell':>11} {'backend':>13} {'ingest':>9} {'p50':>10} {'peak RSS':>10} "
              f"{'recall vs memory':>17} {'recall vs exact':>16} {'load':>6}")
        for n, p in cells:
            store = store_for(args.workdir, n, p)
            results = {"reference": run_child("reference", store, args.queries, args.workdir)}
            backends = ["memory"] + (["qdrant-local"] if (n, p) in qdrant else [])
            for b in backends:
                results[b] = run_child(b, store, args.queries, args.workdir)
            for b in backends:
                r = results[b]
                if "error" in r:
                    print(f"{n:>6}x{p:<4} {b:>13}  failed: {r['error']}")
                    continue
                vs_mem = recall(r["tops"], results["memory"]["tops"]) if "tops" in results["memory"] else float("nan")
                vs_ref = recall(r["tops"], results["reference"]["tops"]) if "tops" in results["reference"] else float("nan")
                print(f"{n:>6}x{p:<4} {b:>13} {r['ingest_s']:>8.1f}s {r['p50_s'] * 1e3:>8.1f}ms "
                      f"{r['peak_above_mib'] / 1024:>8.2f}GiB {vs_mem:>17.3f} {vs_ref:>16.3f} {r['load']:>6}")
            if (n, p) not in qdrant:
                print(f"{n:>6}x{p:<4} {'qdrant-local':>13}  not run at this size (see --qdrant-cells)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
