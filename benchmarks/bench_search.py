#!/usr/bin/env python3
"""Benchmark `vdr_app.index.maxsim.MaxSimIndex` against the obvious alternatives, in one run.

Workload: N pages of P L2-normalised random vectors (d = 128; P fixed, or "ragged": P ~ U[50, 600]
per page), queries of 20 L2-normalised vectors, top-10. Query k is planted in one page (noisy
copies of its vectors), which must rank first. The baselines get the index's bfloat16-rounded
vectors widened to float32, so their scores are compared with ours (max abs difference) as a
correctness check; quality is also measured against float32 MaxSim of the unrounded vectors.

Timing: data in RAM, 1 warm-up query per implementation, then --repeats rounds in which every
implementation answers the same query in turn (interleaved, so all see the same load on a shared
host), each after a 0.2 s pause (other libraries' OpenMP / BLAS threads busy-wait after a call).
Wall-clock median [and min] and CPU time (all threads) per query are reported. Implementations:
    vdr-bf16, vdr-f16   MaxSimIndex(dtype="bfloat16" / "float16"), scores + top_k
    numpy               plain numpy on float32: packed (V, d) @ q.T in page-aligned pieces of 2M
                        vectors, np.maximum.reduceat over page starts, sum, argpartition
    colpali             colpali-engine BaseVisualRetrieverProcessor.score_multi_vector on float32
                        per-page tensors (batch_size=128, cpu) -- its fastest dtype on this CPU
    maxsim-cpu,         PyPI CPU MaxSim packages (float32 only), if importable; they are not
    fast-maxsim         project requirements: `.venv/bin/pip install fast-maxsim maxsim-cpu`

Floors: "read" = index bytes / measured 2-thread read bandwidth; "flop" = 2 * V * d * q / measured
square-sgemm rate (both measured at the start of the run).

Memory per cell: index.nbytes, the RSS growth while building the index (kept), and each
implementation's peak RSS above the process before its setup (VmHWM, reset per implementation).
Each cell runs in its own subprocess, so cells cannot disturb each other's memory figures.

Usage (from the repository root):
    .venv/bin/python benchmarks/bench_search.py                 # full grid (several minutes)
    .venv/bin/python benchmarks/bench_search.py --quick         # small grid, seconds
    .venv/bin/python benchmarks/bench_search.py --n 10000 --p 115 --impls vdr-bf16,colpali
    .venv/bin/python benchmarks/bench_search.py --tune-blocks --n 1000 --p 115
The host is shared: rerun noisy cells; the load average at each cell's start is printed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vdr_app.index import maxsim as search
from vdr_app.index.maxsim import MaxSimIndex

DIM = 128
Q_TOKENS = 20
TOPK = 10
SEED = 20240611
CHUNK_PAGES = 256  # pages generated at a time (generation is deterministic per chunk)
NUMPY_PIECE = 2_000_000  # vectors per piece in the plain numpy reference
RAGGED = (50, 600)
# Pause before each timed query: OpenBLAS and OpenMP worker threads of the previous implementation
# busy-wait for a while after their last call and would steal the cores from the next one.
SETTLE_S = 0.2
IMPLS = ("vdr-bf16", "vdr-f16", "numpy", "colpali", "maxsim-cpu", "fast-maxsim")


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------


def page_lengths(n: int, p: str) -> np.ndarray:
    if p == "ragged":
        return np.random.default_rng(SEED + 1).integers(RAGGED[0], RAGGED[1] + 1, size=n)
    return np.full(n, int(p), dtype=np.int64)


def iter_pages(lengths: np.ndarray, queries: np.ndarray, exact: np.ndarray | None = None):
    """Yield float32 (P_i, d) unit vectors page by page, generated in chunks of CHUNK_PAGES.

    Query k is planted in page targets(N)[k]: its first Q_TOKENS vectors are noisy copies of the
    query's (dot ~0.9), so that page must rank first; the rest are random near-ties. When `exact`
    (float32 (queries, N)) is given, the float32 MaxSim of the unrounded vectors is written there.
    """
    tgt = targets(len(lengths), len(queries))
    for c0 in range(0, len(lengths), CHUNK_PAGES):
        lens = lengths[c0 : c0 + CHUNK_PAGES]
        rng = np.random.default_rng([SEED, c0])
        x = rng.standard_normal((int(lens.sum()), DIM), dtype=np.float32)
        starts = np.concatenate([[0], np.cumsum(lens)])
        for k, t in enumerate(tgt):
            if c0 <= t < c0 + len(lens):
                r = starts[t - c0]
                x[r : r + Q_TOKENS] = queries[k] + rng.standard_normal((Q_TOKENS, DIM), dtype=np.float32) * 0.04
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        if exact is not None:
            for k, q in enumerate(queries):
                sims = x @ q.T
                exact[k, c0 : c0 + len(lens)] = np.maximum.reduceat(sims, starts[:-1], axis=0).sum(axis=1)
        for i in range(len(lens)):
            yield x[starts[i] : starts[i + 1]]
        del x


def targets(n: int, count: int) -> np.ndarray:
    """The planted page of each query."""
    return np.random.default_rng(SEED + 3).choice(n, size=count, replace=n < count)


def make_queries(count: int) -> np.ndarray:
    q = np.random.default_rng(SEED + 2).standard_normal((count, Q_TOKENS, DIM), dtype=np.float32)
    return q / np.linalg.norm(q, axis=2, keepdims=True)


# --------------------------------------------------------------------------------------------------
# process memory
# --------------------------------------------------------------------------------------------------


def proc_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return -1


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


# --------------------------------------------------------------------------------------------------
# machine floors
# --------------------------------------------------------------------------------------------------


def measure_machine() -> dict:
    """Read bandwidth (2 threads) and sgemm rates, best of a few runs."""

    def best(f, k=5):
        f()
        t = []
        for _ in range(k):
            a = time.perf_counter()
            f()
            t.append(time.perf_counter() - a)
        return min(t)

    nbytes = 1_000_000_000
    a = np.ones(nbytes // 4, np.float32)
    halves = [a[: a.size // 2], a[a.size // 2 :]]
    with ThreadPoolExecutor(2) as ex:
        read = nbytes / best(lambda: list(ex.map(np.sum, halves))) / 1e9
    m = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)
    peak = 2 * 4096**3 / best(lambda: m @ m, 3) / 1e9
    x = np.random.default_rng(0).standard_normal((1_000_000, DIM), dtype=np.float32)
    q = np.ones((DIM, Q_TOKENS), np.float32)
    s = np.empty((1_000_000, Q_TOKENS), np.float32)
    skinny = 2 * 1e6 * DIM * Q_TOKENS / best(lambda: np.matmul(x, q, out=s)) / 1e9
    return {"read_GBps": round(read, 1), "sgemm_GFLOPS": round(peak, 1), "skinny_sgemm_GFLOPS": round(skinny, 1)}


# --------------------------------------------------------------------------------------------------
# implementations: setup(data) -> state; run(state, q) -> (top indices, scores of all pages or None)
# --------------------------------------------------------------------------------------------------


def top10(scores: np.ndarray) -> np.ndarray:
    k = min(TOPK, len(scores))
    idx = np.argpartition(-scores, k - 1)[:k]
    return idx[np.argsort(-scores[idx], kind="stable")]


class Data:
    """The cell's float32 copy of the stored vectors (packed) and page offsets, built on demand."""

    def __init__(self, lengths: np.ndarray, index: MaxSimIndex):
        self.lengths = lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.x = np.empty((int(self.offsets[-1]), DIM), np.float32)
        for i in range(len(lengths)):
            self.x[self.offsets[i] : self.offsets[i + 1]] = index.page_vectors(i)
        self.equal = bool((lengths == lengths[0]).all())

    def views(self):
        return [self.x[self.offsets[i] : self.offsets[i + 1]] for i in range(len(self.lengths))]


def setup_numpy(d: Data):
    pieces, p0, n = [], 0, len(d.lengths)
    while p0 < n:
        p1 = max(p0 + 1, int(np.searchsorted(d.offsets, d.offsets[p0] + NUMPY_PIECE, side="right")) - 1)
        pieces.append((p0, min(p1, n)))
        p0 = min(p1, n)
    return {"pieces": pieces}


def run_numpy(st, d: Data, q):
    scores = np.empty(len(d.lengths), np.float32)
    for p0, p1 in st["pieces"]:
        v0, v1 = d.offsets[p0], d.offsets[p1]
        sims = d.x[v0:v1] @ q.T
        scores[p0:p1] = np.maximum.reduceat(sims, d.offsets[p0:p1] - v0, axis=0).sum(axis=1)
    return top10(scores), scores


def setup_colpali(d: Data):
    import torch

    from vdr_app.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor

    xt = torch.from_numpy(d.x)
    return {
        "fn": BaseVisualRetrieverProcessor.score_multi_vector,
        "ps": [xt[a:b] for a, b in zip(d.offsets[:-1], d.offsets[1:])],
    }


def run_colpali(st, d: Data, q):
    import torch

    s = st["fn"]([torch.from_numpy(q)], st["ps"], batch_size=128, device="cpu")[0].numpy()
    return top10(s), s


def setup_lib(module: str):
    def setup(d: Data):
        import importlib

        m = importlib.import_module(module)
        st = {"m": m}
        if d.equal:
            st["docs"] = d.x.reshape(len(d.lengths), int(d.lengths[0]), DIM)
        else:
            st["docs"] = d.views()
        return st

    return setup


def run_lib(st, d: Data, q):
    q = np.ascontiguousarray(q)
    if d.equal:
        s = st["m"].maxsim_scores(q, st["docs"])
    else:
        s = st["m"].maxsim_scores_variable(q, st["docs"])
    s = np.asarray(s, dtype=np.float32)
    return top10(s), s


BASELINES = {
    "numpy": (setup_numpy, run_numpy),
    "colpali": (setup_colpali, run_colpali),
    "maxsim-cpu": (setup_lib("maxsim_cpu"), run_lib),
    "fast-maxsim": (setup_lib("fast_maxsim"), run_lib),
}


def importable(name: str) -> str | None:
    """None if the implementation can run here, else why not."""
    import importlib.util

    module = {"maxsim-cpu": "maxsim_cpu", "fast-maxsim": "fast_maxsim", "colpali": "colpali_engine"}.get(name)
    if module and importlib.util.find_spec(module) is None:
        return f"{module} not installed (.venv/bin/pip install {name})"
    return None


# --------------------------------------------------------------------------------------------------
# one cell (in a subprocess)
# --------------------------------------------------------------------------------------------------


def time_queries(run, queries, repeats):
    run(queries[0])  # warm-up
    times, results = [], []
    for k in range(1, repeats + 1):
        a = time.perf_counter()
        res = run(queries[k])
        times.append(time.perf_counter() - a)
        results.append(res)
    return times, results


def run_cell(n: int, p: str, impls: list[str], repeats: int, emit) -> None:
    """Set up every implementation (peak RSS measured over setup + warm-up query), then time them
    interleaved, query by query, so that all see the same load on a shared host."""
    lengths = page_lengths(n, p)
    queries = make_queries(repeats + 1)
    tgt = targets(n, len(queries))
    cell = {"n": n, "p": p, "vectors": int(lengths.sum()), "load": round(os.getloadavg()[0], 2)}
    exact = np.empty((len(queries), n), np.float32)  # float32 MaxSim of the unrounded vectors
    have_exact = False
    runners: dict[str, object] = {}  # name -> q -> (top-10 indices, all scores)
    info: dict[str, dict] = {}
    indexes: dict[str, MaxSimIndex] = {}
    bf16_index = None

    def warm(name, runner, base):
        t0 = time.perf_counter()
        runner(queries[0])
        info[name]["warmup_s"] = time.perf_counter() - t0
        info[name]["peak_above"] = proc_status("VmHWM") - base
        runners[name] = runner

    # float16 first: streaming the first build also computes the exact float32 reference.
    for dtype, name in (("float16", "vdr-f16"), ("bfloat16", "vdr-bf16")):
        if name not in impls and not (dtype == "bfloat16" and set(impls) & set(BASELINES)):
            continue
        gc.collect()
        rss0 = proc_status("VmRSS")
        t0 = time.perf_counter()
        index = MaxSimIndex(iter_pages(lengths, queries, None if have_exact else exact), dtype=dtype)
        have_exact = True
        info[name] = {
            "index_nbytes": index.nbytes,
            "index_rss": proc_status("VmRSS") - rss0,
            "build_s": round(time.perf_counter() - t0, 1),
        }
        if dtype == "bfloat16":
            bf16_index = index
        if name in impls:
            reset_peak()
            warm(name, lambda q, index=index: (index.top_k(q, TOPK)[0], None), proc_status("VmRSS"))
            indexes[name] = index
    data = Data(lengths, bf16_index) if set(impls) & set(BASELINES) else None  # exactly the stored values
    for name in impls:
        if name not in BASELINES:
            continue
        why = importable(name)
        if why:
            emit({"kind": "skip", **cell, "impl": name, "reason": why})
            continue
        setup, run = BASELINES[name]
        gc.collect()
        reset_peak()
        base = proc_status("VmRSS")
        info[name] = {}
        st = setup(data)
        warm(name, lambda q, run=run, st=st: run(st, data, q), base)

    # Timed rounds, interleaved; a baseline whose warm-up took > 5 s runs only 3 rounds.
    times = {name: [] for name in runners}
    cpu = {name: [] for name in runners}
    tops = {name: [] for name in runners}
    diffs = {name: [] for name in runners}
    for k in range(1, repeats + 1):
        for name, runner in runners.items():
            if k > 3 and info[name]["warmup_s"] > 5:
                continue
            time.sleep(SETTLE_S)
            c0, t0 = time.process_time(), time.perf_counter()
            top, scores = runner(queries[k])
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            tops[name].append(top.tolist())
            if scores is not None and bf16_index is not None:
                diffs[name].append(float(np.max(np.abs(scores - bf16_index.scores(queries[k])))))

    # Quality: planted page first; top-10 overlap with, and max error against, unrounded float32.
    for name in runners:
        got = tops[name]
        rec = {
            "kind": "result",
            **cell,
            "impl": name,
            "ms": 1e3 * float(np.median(times[name])),
            "ms_min": 1e3 * min(times[name]),
            "cpu_ms": 1e3 * float(np.median(cpu[name])),
            "n_timed": len(got),
            **info[name],
            "top1_planted": f"{sum(t[0] == int(tgt[k + 1]) for k, t in enumerate(got))}/{len(got)}",
            "top10_vs_exact": round(
                float(np.mean([len(set(t) & set(top10(exact[k + 1]).tolist())) / TOPK for k, t in enumerate(got)])), 3
            ),
            "top10": got,
        }
        if diffs[name]:
            rec["max_abs_diff_vs_vdr"] = max(diffs[name])
        if name in indexes:
            rec["max_err_vs_exact"] = max(
                float(np.max(np.abs(indexes[name].scores(queries[k + 1]) - exact[k + 1]))) for k in range(len(got))
            )
        emit(rec)
    emit({"kind": "cell_done", **cell, "load_end": round(os.getloadavg()[0], 2)})


def tune_blocks(n: int, p: str, repeats: int, sizes: list[int]) -> None:
    lengths = page_lengths(n, p)
    queries = make_queries(repeats + 1)
    for dtype in ("bfloat16", "float16"):
        index = MaxSimIndex(iter_pages(lengths, queries), dtype=dtype)
        for b in sizes:
            search.BLOCK_VECTORS = b
            index._plan = None  # re-plan with the new block size
            times, _ = time_queries(index.scores, queries, repeats)
            ns = 1e9 * min(times) / index.n_vectors
            print(
                f"{dtype} N={n} P={p} block={b}: median {1e3 * np.median(times):.2f} ms, min {1e3 * min(times):.2f} ms "
                f"({ns:.1f} ns/vector at min), load {os.getloadavg()[0]:.2f}",
                flush=True,
            )


# --------------------------------------------------------------------------------------------------
# driver and report
# --------------------------------------------------------------------------------------------------


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def fmt_mib(b: int) -> str:
    return f"{b / 2**20:,.0f}"


def report(recs: list[dict], machine: dict, impls: list[str]) -> None:
    res = [r for r in recs if r["kind"] == "result"]
    cells = []
    for r in res:
        if (r["n"], r["p"]) not in cells:
            cells.append((r["n"], r["p"]))
    print(f"\nmachine: {machine}  (floors use read_GBps and sgemm_GFLOPS)\n")
    print(f"ms per query ({Q_TOKENS}-token query, top-{TOPK}), wall-clock median of interleaved rounds; [min]\n")
    print(
        "| N | P | vectors | load | read floor (bf16) | flop floor | "
        + " | ".join(impls)
        + " | vdr-bf16 vs best of maxsim libs | vdr-bf16 / colpali |"
    )
    print("| --- " * (8 + len(impls)) + "|")
    for n, p in cells:
        rows = {r["impl"]: r for r in res if (r["n"], r["p"]) == (n, p)}
        any_r = next(iter(rows.values()))
        v = any_r["vectors"]
        read_floor = v * DIM * 2 / (machine["read_GBps"] * 1e9) * 1e3
        flop_floor = 2 * v * DIM * Q_TOKENS / (machine["sgemm_GFLOPS"] * 1e9) * 1e3
        cols = [f"{fmt_ms(rows[i]['ms'])} [{fmt_ms(rows[i]['ms_min'])}]" if i in rows else "skipped" for i in impls]
        ours = rows.get("vdr-bf16", {}).get("ms")
        libs = [rows[i]["ms"] for i in ("maxsim-cpu", "fast-maxsim") if i in rows]
        vs_lib = f"{min(libs) / ours:.2f}x faster" if ours and libs else "-"
        vs_col = f"{ours / rows['colpali']['ms']:.2f}" if ours and "colpali" in rows else "-"
        print(
            f"| {n:,} | {p} | {v / 1e6:.2f}M | {any_r['load']} | {fmt_ms(read_floor)} | {fmt_ms(flop_floor)} | "
            + " | ".join(cols)
            + f" | {vs_lib} | {vs_col} |"
        )
    print("\nCPU ms per query (all threads of the process), median: the cost that load on a shared host cannot hide\n")
    print("| N | P | " + " | ".join(impls) + " | CPU: best maxsim lib / vdr-bf16 |")
    print("| --- " * (3 + len(impls)) + "|")
    for n, p in cells:
        rows = {r["impl"]: r for r in res if (r["n"], r["p"]) == (n, p)}
        cols = [fmt_ms(rows[i]["cpu_ms"]) if i in rows else "-" for i in impls]
        ours = rows.get("vdr-bf16", {}).get("cpu_ms")
        libs = [rows[i]["cpu_ms"] for i in ("maxsim-cpu", "fast-maxsim") if i in rows]
        ratio = f"{min(libs) / ours:.2f}" if ours and libs else "-"
        print(f"| {n:,} | {p} | " + " | ".join(cols) + f" | {ratio} |")
    print(
        "\nmemory (MiB): index.nbytes, RSS kept after building the index, peak RSS above the process per implementation\n"
    )
    print(
        "| N | P | vdr-bf16 nbytes | vdr-bf16 RSS | vdr-f16 nbytes | " + " | ".join(f"{i} peak" for i in impls) + " |"
    )
    print("| --- " * (5 + len(impls)) + "|")
    for n, p in cells:
        rows = {r["impl"]: r for r in res if (r["n"], r["p"]) == (n, p)}
        b = rows.get("vdr-bf16", {})
        f = rows.get("vdr-f16", {})
        cols = [fmt_mib(rows[i]["peak_above"]) if i in rows else "-" for i in impls]
        print(
            f"| {n:,} | {p} | {fmt_mib(b['index_nbytes']) if b else '-'} | {fmt_mib(b['index_rss']) if b else '-'} | "
            f"{fmt_mib(f['index_nbytes']) if f else '-'} | " + " | ".join(cols) + " |"
        )
    print(
        "\nquality: planted page ranked first; mean top-10 overlap with, and max |score error| against, float32 MaxSim"
    )
    print("on the unrounded vectors (baselines score the bf16-rounded vectors, so they inherit vdr-bf16's rounding)\n")
    print("| N | P | " + " | ".join(impls) + " |")
    print("| --- " * (2 + len(impls)) + "|")
    for n, p in cells:
        rows = {r["impl"]: r for r in res if (r["n"], r["p"]) == (n, p)}
        cols = []
        for i in impls:
            r = rows.get(i)
            if not r:
                cols.append("-")
                continue
            err = f", err {r['max_err_vs_exact']:.1e}" if "max_err_vs_exact" in r else ""
            cols.append(f"top-1 {r.get('top1_planted', '-')}, top-10 {r.get('top10_vs_exact', '-')}{err}")
        print(f"| {n:,} | {p} | " + " | ".join(cols) + " |")
    print(
        "\nagreement with vdr-bf16 (same stored values): max |score difference|, top-10 identical (of timed queries)\n"
    )
    for n, p in cells:
        rows = {r["impl"]: r for r in res if (r["n"], r["p"]) == (n, p)}
        ref = rows.get("vdr-bf16")
        parts = []
        for i in impls:
            r = rows.get(i)
            if not r or i == "vdr-bf16" or not ref:
                continue
            same = sum(a == b for a, b in zip(r["top10"], ref["top10"]))
            d = f", max diff {r['max_abs_diff_vs_vdr']:.1e}" if "max_abs_diff_vs_vdr" in r else ""
            parts.append(f"{i}: top-10 {same}/{len(r['top10'])}{d}")
        print(f"- N={n:,} P={p}: " + "; ".join(parts))
    for r in recs:
        if r["kind"] in ("skip", "cell_failed"):
            print(f"- {r['kind']} N={r['n']} P={r['p']} {r.get('impl', '')}: {r.get('reason') or r.get('stderr', '')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="1000,10000", help="page counts, comma-separated")
    ap.add_argument("--p", default="1030,115,ragged", help="vectors per page (or 'ragged'), comma-separated")
    ap.add_argument("--impls", default=",".join(IMPLS), help=f"subset of {','.join(IMPLS)}")
    ap.add_argument("--repeats", type=int, default=7, help="timed queries per implementation (after 1 warm-up)")
    ap.add_argument("--quick", action="store_true", help="small grid: N=300, P in {115, ragged}, 3 repeats")
    ap.add_argument("--out", default="", help="also append the JSON records to this file")
    ap.add_argument("--tune-blocks", action="store_true", help="time MaxSimIndex over block sizes instead")
    ap.add_argument("--blocks", default="1024,2048,4096,8192,16384", help="block sizes for --tune-blocks")
    ap.add_argument("--one-cell", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.p, args.repeats = "300", "115,ragged", 3
    impls = [i for i in args.impls.split(",") if i]
    unknown = set(impls) - set(IMPLS)
    if unknown:
        ap.error(f"unknown implementations {sorted(unknown)}; choose from {IMPLS}")
    ns = [int(x) for x in args.n.split(",")]
    ps = args.p.split(",")
    if args.tune_blocks:
        for n in ns:
            for p in ps:
                tune_blocks(n, p, args.repeats, [int(b) for b in args.blocks.split(",")])
        return
    if args.one_cell:
        run_cell(ns[0], ps[0], impls, args.repeats, lambda r: print(json.dumps(r), flush=True))
        return
    machine = measure_machine()
    print("machine:", machine, flush=True)
    recs = []
    for n in ns:
        for p in ps:
            cmd = [
                sys.executable,
                __file__,
                "--one-cell",
                "--n",
                str(n),
                "--p",
                p,
                "--impls",
                ",".join(impls),
                "--repeats",
                str(args.repeats),
            ]
            t0 = time.perf_counter()
            pr = subprocess.run(cmd, check=False, capture_output=True, text=True)
            got = [json.loads(line) for line in pr.stdout.splitlines() if line.startswith("{")]
            if pr.returncode != 0:
                got.append({"kind": "cell_failed", "n": n, "p": p, "stderr": pr.stderr[-600:]})
            for r in got:
                if r["kind"] == "result":
                    print(f"  N={n} P={p} {r['impl']}: {fmt_ms(r['ms'])} ms (min {fmt_ms(r['ms_min'])})", flush=True)
            recs += got
            print(f"cell N={n} P={p}: rc={pr.returncode}, {time.perf_counter() - t0:.0f} s", flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps({"kind": "machine", **machine}) + "\n")
            for r in recs:
                f.write(json.dumps(r) + "\n")
    report(recs, machine, impls)


if __name__ == "__main__":
    main()
