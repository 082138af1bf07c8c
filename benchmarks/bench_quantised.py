"""Quantised views: query time of bfloat16, int8, int4, int2 and binary MaxSim, with and without
exact rescoring of the top 100, and their top-10 overlap with the float view (issues 14, 19).

    python benchmarks/bench_quantised.py                 # 10k pages x 115 and x 1,030 vectors
    python benchmarks/bench_quantised.py --cells 10000x115 --queries 7
    python benchmarks/bench_quantised.py --profile       # ns per vector of each kernel step

Data: L2-normalised Gaussian vectors, d = 128, written once as float16 to a memory-mapped file in a
temporary folder (the "store": what rescoring reads its candidates' float vectors from, as the
app reads full embeddings from SQLite), so peak RSS stays at about one index. Each query (20
tokens) is planted in one page, which holds noisy copies of its tokens (dot ~ 0.9): every
correct method must rank that page first; ranks 2-10 are near-ties of random data, the hardest
case for top-10 overlap (real embeddings have wider score gaps).

Methods (one process, same data, the 115 cell interleaved query by query; the 1,030 cell one
method after another so that only one index is in RAM at a time):

    bf16            vdr_app.index.maxsim.MaxSimIndex (the float view as the app searches it)
    int8            QuantisedMaxSimIndex, kind int8 (int8 query x codes, torch._int_mm; numpy
                    float32 query x dequantised codes where torch is missing)
    int8+rescore    ... its top 100 re-scored exactly from the float16 "store"
    int4, int2      QuantisedMaxSimIndex, kinds int4 / int2 (rotated codes unpacked to their int8
                    levels by a table gather, then the int8 kernel with the rotated int8 query)
    int4+rescore, int2+rescore
    binary          QuantisedMaxSimIndex, kind binary (Hamming on packed sign bits)
    binary+rescore  ... its top 100 re-scored exactly

Overlap: |top-10(method) ∩ top-10(float)| / 10, where "float" is the exact float32 MaxSim over
the float16 vectors; "planted@1": share of queries whose planted page ranks first.

Also printed: what rescoring costs in the app itself (Store.rescore_inputs + rebuild_vectors for
100 pages of 1,030 vectors, full view and cluster:factor=9), from a real SQLite store.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vdr_app.quantise import bytes_per_vector, quantise, unpack_levels  # noqa: E402
from vdr_app.index.maxsim import MaxSimIndex  # noqa: E402
from vdr_app.index.maxsim_quantised import QuantisedMaxSimIndex, exact_scores  # noqa: E402

DIM, Q, RESCORE, K = 128, 20, 100, 10
CHUNK = 256  # pages generated / read at a time


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_store(folder: Path, n_pages: int, per_page: int, seed: int = 0) -> np.memmap:
    """float16 (n_pages, per_page, d) on disk, unit rows, written chunk by chunk."""
    path = folder / f"pages-{n_pages}x{per_page}.f16"
    store = np.memmap(path, dtype=np.float16, mode="w+", shape=(n_pages, per_page, DIM))
    rng = np.random.default_rng(seed)
    for start in range(0, n_pages, CHUNK):
        x = rng.standard_normal((min(CHUNK, n_pages - start), per_page, DIM), dtype=np.float32)
        x /= np.linalg.norm(x, axis=2, keepdims=True)
        store[start : start + len(x)] = x
    store.flush()
    return store


def make_queries(store: np.memmap, n: int, seed: int = 1) -> list[tuple[np.ndarray, int]]:
    """(query (Q, d), planted page) pairs; the planted page's first Q rows become noisy copies."""
    rng = np.random.default_rng(seed)
    out = []
    for target in rng.choice(store.shape[0], size=n, replace=False).tolist():
        q = rng.standard_normal((Q, DIM)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        noise = rng.standard_normal((Q, DIM)).astype(np.float32)
        noise -= (noise * q).sum(1, keepdims=True) * q
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        copies = 0.9 * q + np.sqrt(1 - 0.81) * noise
        rows = min(Q, store.shape[1])
        store[target, :rows] = copies[:rows]
        out.append((q, target))
    store.flush()
    return out


def pages(store: np.memmap, convert=None):
    for start in range(0, store.shape[0], CHUNK):
        block = np.asarray(store[start : start + CHUNK], dtype=np.float32)
        for page in block:
            yield page if convert is None else convert(page)


def float_top(store: np.memmap, query: np.ndarray) -> np.ndarray:
    """The float view's exact top 10 (float32 over the float16 values), chunk by chunk."""
    scores = np.empty(store.shape[0], np.float32)
    for start in range(0, store.shape[0], CHUNK):
        block = np.asarray(store[start : start + CHUNK], dtype=np.float32)  # (c, P, d)
        scores[start : start + len(block)] = (block @ query.T).max(axis=1).sum(axis=1)  # (c, P, Q) -> (c,)
    return np.lexsort((np.arange(len(scores)), -scores))[:K]


def timed(fn, query):
    start = time.perf_counter()
    result = fn(query)
    return time.perf_counter() - start, result


def run_cell(n_pages: int, per_page: int, n_queries: int, folder: Path) -> list[dict]:
    print(f"\n== {n_pages:,} pages x {per_page:,} vectors (d={DIM}, {Q}-token queries, {n_queries} timed "
          f"+ 1 warm-up; RSS {rss_mb():.0f} MB) ==", flush=True)
    t0 = time.perf_counter()
    store = make_store(folder, n_pages, per_page)
    queries = make_queries(store, n_queries + 1)
    print(f"data written in {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    reference = [float_top(store, q) for q, _ in queries]
    print(f"exact float top-10 computed in {time.perf_counter() - t0:.0f} s", flush=True)

    def float_pages(positions):
        return [np.asarray(store[i], dtype=np.float32) for i in positions]

    def methods_for(kind, index):
        if kind == "bf16":
            return {"bf16": lambda q: index.top_k(q, K)[0]}
        return {kind: lambda q: index.top_k(q, K)[0],
                f"{kind}+rescore": lambda q: index.top_k(q, K, rescore=RESCORE, float_pages=float_pages)[0]}

    def build(kind):
        t = time.perf_counter()
        if kind == "bf16":
            index = MaxSimIndex(pages(store))
        else:
            index = QuantisedMaxSimIndex(pages(store, lambda p: quantise(p, kind)), kind=kind, dim=DIM)
        print(f"  {kind:6} index {index.nbytes / 1e6:9.1f} MB built in {time.perf_counter() - t:5.1f} s "
              f"(RSS {rss_mb():.0f} MB)", flush=True)
        return index

    interleave = n_pages * per_page <= 3_000_000
    kinds = ["bf16", "int8", "int4", "int2", "binary"]
    groups = [kinds] if interleave else [[k] for k in kinds]
    results: dict[str, dict] = {}
    for group in groups:
        indexes = {kind: build(kind) for kind in group}
        methods = {}
        for kind in group:
            methods.update(methods_for(kind, indexes[kind]))
        times = {m: [] for m in methods}
        tops = {m: [] for m in methods}
        for i, (q, _) in enumerate(queries):
            for name, fn in methods.items():
                seconds, top = timed(fn, q)
                if i:  # query 0 warms up
                    times[name].append(seconds)
                tops[name].append(top)
        for name in methods:
            overlap = np.mean([len(set(t.tolist()) & set(r.tolist())) / K for t, r in zip(tops[name], reference)])
            planted = np.mean([t[0] == target for t, (_, target) in zip(tops[name], queries)])
            results[name] = dict(p50=1000 * float(np.median(times[name])), overlap=float(overlap),
                                 planted=float(planted), nbytes=indexes[name.split("+")[0]].nbytes)
        del indexes, methods, fn  # the last lambda holds the index too
        gc.collect()
    base = results["bf16"]["p50"]
    rows = []
    print(f"uptime: {os.getloadavg()[0]:.1f} load (1 min) on {os.cpu_count()} CPUs")
    print(f"{'method':16} {'B/vector':>8} {'index MB':>9} {'p50 ms':>8} {'x bf16':>7} {'overlap@10':>10} "
          f"{'planted@1':>9}")
    for name in ("bf16", "int8", "int8+rescore", "int4", "int4+rescore", "int2", "int2+rescore",
                 "binary", "binary+rescore"):
        r = results[name]
        kind = name.split("+")[0]
        per = 2 * DIM if kind == "bf16" else bytes_per_vector(DIM, kind)
        print(f"{name:16} {per:8d} {r['nbytes'] / 1e6:9.1f} {r['p50']:8.1f} {r['p50'] / base:7.2f} "
              f"{r['overlap']:10.2f} {r['planted']:9.2f}")
        rows.append(dict(cell=f"{n_pages}x{per_page}", method=name, **r))
    del store
    for f in folder.glob("*.f16"):
        f.unlink()
    return rows


def app_rescore_cost(folder: Path, n_pages: int = 120, per_page: int = 1030) -> None:
    """Rescoring as the app does it: candidates' full embeddings and groups from SQLite, rebuilt."""
    from PIL import Image

    from vdr_app import reduce as reduce_lib
    from vdr_app.index import MemoryIndex
    from vdr_app.store import Store
    from vdr_app.types import PageEmbedding, PageImage

    rng = np.random.default_rng(3)
    store = Store(folder / "rescore.sqlite")
    side = int(np.ceil(np.sqrt(per_page)))
    rows, cols = np.divmod(np.arange(per_page), side)
    boxes = np.stack([cols / side, rows / side, (cols + 1) / side, (rows + 1) / side], 1)
    specs = ["full@binary", "cluster:factor=9,features=profile@binary"]
    for spec in specs:
        store.add_view(spec, {}, quant="binary")
    for d in range(n_pages // 10):
        batch = []
        for i in range(10):
            x = rng.standard_normal((per_page, DIM)).astype(np.float32)
            batch.append((PageImage(Image.new("RGB", (8, 8)), i + 1),
                          PageEmbedding(patches=x / np.linalg.norm(x, axis=1, keepdims=True), boxes=boxes)))
        views = {s: [reduce_lib.reduce_page(e, s) for _, e in batch] for s in specs}
        store.add_document(f"d{d}.pdf", f"{d:064x}", 1, "bench", batch, views)
    index = MemoryIndex(store)
    ids = np.array(store.page_ids()[:RESCORE], dtype=np.int64)
    print(f"\n== rescoring in the app: {RESCORE} candidates of {per_page} patches, read from SQLite and rebuilt ==")
    for spec in specs:
        index.float_view_pages(spec, ids)  # warm the page cache
        t = []
        for _ in range(5):
            start = time.perf_counter()
            vecs = index.float_view_pages(spec, ids)
            exact_scores(np.ones((Q, DIM), np.float32), vecs)
            t.append(time.perf_counter() - start)
        print(f"{spec:44} {1000 * np.median(t):7.1f} ms (p50 of 5)")
    store.close()


def profile(n: int = 8192) -> None:
    """ns per stored vector of each step on one block, one thread (BLAS limited to 1)."""
    from threadpoolctl import threadpool_limits

    from vdr_app.index import int8_matmul
    from vdr_app.index.maxsim import _round_bits, _widen_into

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    bits = _round_bits(x, "bfloat16")
    codes = rng.integers(-127, 128, size=(n, DIM), dtype=np.int8)
    scales = rng.random(n).astype(np.float32)
    q = rng.standard_normal((Q, DIM)).astype(np.float32)
    qT = np.ascontiguousarray(q.T)
    buf, s_nq, s_qn = np.empty((n, DIM), np.float32), np.empty((n, Q), np.float32), np.empty((Q, n), np.float32)
    starts = np.arange(0, n, 115)
    words = np.ascontiguousarray(quantise(x, "binary").codes.view(np.uint64).T)  # (2, n)
    qwords = quantise(q, "binary").codes.view(np.uint64)[:, :, None]  # (Q, 2, 1)
    xor, cnt, ham = np.empty((Q, 2, n), np.uint64), np.empty((Q, 2, n), np.uint8), np.empty((Q, n), np.uint16)
    qcodes = quantise(q, "int8").codes
    dots = int8_matmul.int_mm(qcodes, codes) if int8_matmul.available(DIM) else None
    packed4, packed2 = quantise(x, "int4").codes, quantise(x, "int2").codes
    levels = np.empty((n, DIM), np.int8)
    scratch4, scratch2 = np.empty((n, DIM // 2), np.uint8), np.empty((n, DIM // 4), np.uint8)

    def ns(fn, reps=100):
        fn()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        return 1e9 * (time.perf_counter() - start) / reps / n

    steps = {
        "bf16 widen (copy + shift)": lambda: _widen_into(bits, buf, "bfloat16"),
        "int8 cast to float32": lambda: np.copyto(buf, codes, casting="unsafe"),
        "int4 unpack to int8 levels": lambda: unpack_levels(packed4, "int4", out=levels, scratch=scratch4),
        "int2 unpack to int8 levels": lambda: unpack_levels(packed2, "int2", out=levels, scratch=scratch2),
        "sgemm (n,d)@(d,q) -> (n,q)": lambda: np.matmul(buf, qT, out=s_nq),
        "sgemm (q,d)@(d,n) -> (q,n)": lambda: np.matmul(q, buf.T, out=s_qn),
        **({"int8 _int_mm (q,d)@(d,n) -> int32": lambda: int8_matmul.int_mm(qcodes, codes),
            "int32 -> float32 (q,n)": lambda: np.copyto(s_qn, dots, casting="unsafe")}
           if int8_matmul.available(DIM) else {}),
        "scale rows, (n,q) layout": lambda: np.multiply(s_nq, scales[:, None], out=s_nq),
        "scale columns, (q,n) layout": lambda: np.multiply(s_qn, scales, out=s_qn),
        "page max, (n,q) axis 0": lambda: np.maximum.reduceat(s_nq, starts, axis=0),
        "page max, (q,n) axis 1": lambda: np.maximum.reduceat(s_qn, starts, axis=1),
        "binary XOR (q,2,n)": lambda: np.bitwise_xor(words[None], qwords, out=xor),
        "binary popcount": lambda: np.bitwise_count(xor, out=cnt),
        "binary add words": lambda: np.add(cnt[:, 0], cnt[:, 1], out=ham, dtype=np.uint16),
        "binary page min, axis 1": lambda: np.minimum.reduceat(ham, starts, axis=1),
    }
    print(f"\n== one block of {n} vectors, one thread: ns per stored vector ({Q}-token query) ==")
    torch = int8_matmul._torch()  # torch's own threads held to one as well, then restored
    torch_threads = torch.get_num_threads() if torch else None
    try:
        if torch:
            torch.set_num_threads(1)
        with threadpool_limits(1, "blas"):
            for name, fn in steps.items():
                print(f"{name:36} {ns(fn):6.1f}")
    finally:
        if torch:
            torch.set_num_threads(torch_threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", nargs="+", default=["10000x115", "10000x1030"], help="PAGESxVECTORS")
    parser.add_argument("--queries", type=int, default=7, help="timed queries per method (after 1 warm-up)")
    parser.add_argument("--profile", action="store_true", help="only the per-step profile")
    parser.add_argument("--no-app-rescore", action="store_true", help="skip the SQLite rescoring measurement")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs visible, pid {os.getpid()}")
    profile()
    if args.profile:
        return
    with tempfile.TemporaryDirectory(prefix="vdr-bench-quant-") as tmp:
        folder = Path(tmp)
        for cell in args.cells:
            n_pages, per_page = (int(v) for v in cell.lower().split("x"))
            run_cell(n_pages, per_page, args.queries, folder)
            gc.collect()
        if not args.no_app_rescore:
            app_rescore_cost(folder)
    print(f"\npeak RSS {open('/proc/self/status').read().split('VmHWM:')[1].split()[0]} kB")


if __name__ == "__main__":
    main()
