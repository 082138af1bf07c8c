#!/usr/bin/env python3
"""Exhaustive vs two-stage MaxSim from 10k to 1M pages, in one process per cell.

    python -m benchmarks.bench_scale --pages 10000 --vectors 115 --json OUT.json
    python -m benchmarks.bench_scale --pages 1000000 --vectors 115 --json OUT.json --add-delete 1000

Data (benchmarks/scale_data.py): pages recombined from the corpus's own page vectors with noise,
deterministic per chunk, streamed once into a bfloat16 file under --workdir (never held in RAM);
queries are noisy copies of 20 vectors of known target pages.

One streaming pass over the generated chunks writes the vector file (the two-stage method reads
its candidates from it), computes the ground truth (exact MaxSim of every page for every query at
the stored bfloat16 values, all queries in one product per chunk; the best 50 pages per query are
kept), the first-stage encodings (to a float32 file beside it) and, when asked for, the binary
codes of exhaustive-binary. Then each method is timed on the queries:

    exhaustive-bfloat16   MaxSimIndex over the whole view in RAM (skipped when it does not fit)
    exhaustive-binary     QuantisedMaxSimIndex, binary codes in RAM (its own top 10, no rescoring)
    two-stage-<kind>-d<N> first stage (vdr_app/index/token_stage.py, first_stage.py) -> N candidates
                          -> exact MaxSim of their vectors read from the file (VectorFile.read)
    two-stage-tokens-int2-c<C>-d<N>-p<P>  (--code-depths) the token stage's C candidates -> the
                          int2 codes in RAM (vdr_app/index/page_codes.py) keep N -> exact MaxSim
    ...-sqlite            the same, candidates' vectors read from a SQLite table instead

Before each two-stage method the vector file is dropped from the page cache (--warm keeps it), so
every method's first reads come from disk, as a fresh query's would.

Each record: method, pages, vectors, p50_ms, p95_ms, recall_at_10 (mean overlap of the method's
top 10 with the exact top 10), target_at_1 (the known answer ranked first), rss_mb (VmRSS after
the method's queries; rss_peak_mb: VmHWM, reset before the method), build_s (index build, page
encoding included), disk_mb, load (1-min load average) and notes. The host is shared: always
quote `load` beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scale_data import CHUNK, DIM, encode_corpus_pool, generate_chunk, load_pool, make_queries  # noqa: E402
from vdr_app.index.first_stage import FirstStage, VectorFile, _one_thread, packed_maxsim, two_stage_top_k  # noqa: E402
from vdr_app.index.muvera import Muvera  # noqa: E402
from vdr_app.index.page_codes import PageCodes  # noqa: E402
from vdr_app.index.token_stage import TokenStage  # noqa: E402
from vdr_app.quantise import QuantisedVectors, quantise_binary  # noqa: E402
from vdr_app.index.maxsim import MaxSimIndex, _round_bits, _widen_into, top_k_of  # noqa: E402
from vdr_app.index.maxsim_quantised import QuantisedMaxSimIndex  # noqa: E402

TRUTH_DEPTH = 50
RAM_EXHAUSTIVE_BYTES = 6 << 30  # exhaustive-bfloat16 only when its copy fits beside everything else


def _status(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _widen(bits: np.ndarray) -> np.ndarray:
    out = np.empty(bits.shape, dtype=np.float32)
    _widen_into(np.ascontiguousarray(bits), out, "bfloat16")
    return out


class Truth:
    """The best TRUTH_DEPTH pages per query by exact MaxSim, merged chunk by chunk."""

    def __init__(self, queries: list[np.ndarray]) -> None:
        self.q_all = np.concatenate(queries).T.copy()  # (d, Q * t)
        self.tokens = queries[0].shape[0]
        self.n = len(queries)
        self.ids = [np.empty(0, np.int64) for _ in queries]
        self.scores = [np.empty(0, np.float32) for _ in queries]

    def page_scores(self, x: np.ndarray, vectors: int) -> np.ndarray:
        """(pages, Q) exact scores of equal-length pages x (pages * vectors, d), a block of pages at
        a time (a whole chunk of 1,030-vector pages against every query token would be 6.7 GB)."""
        pages = x.shape[0] // vectors
        out = np.empty((pages, self.n), np.float32)
        step = max(1, 262_144 // vectors)
        for s in range(0, pages, step):
            sims = (x[s * vectors:(s + step) * vectors] @ self.q_all).reshape(-1, vectors, self.n, self.tokens)
            out[s:s + step] = sims.max(axis=1).sum(axis=2)
        return out

    def merge(self, first_page: int, scores: np.ndarray) -> None:
        ids = first_page + np.arange(scores.shape[0])
        for j in range(self.n):
            self.merge_one(j, ids, scores[:, j])

    def merge_one(self, j: int, ids: np.ndarray, s: np.ndarray) -> None:
        all_ids = np.concatenate([self.ids[j], ids])
        all_s = np.concatenate([self.scores[j], s.astype(np.float32)])
        best, vals = top_k_of_ids(all_ids, all_s, TRUTH_DEPTH)
        self.ids[j], self.scores[j] = best, vals

    def drop(self, gone: set) -> None:
        for j in range(self.n):
            keep = np.array([i not in gone for i in self.ids[j]], dtype=bool)
            self.ids[j], self.scores[j] = self.ids[j][keep], self.scores[j][keep]

    def top10(self, j: int) -> np.ndarray:
        return self.ids[j][:10]


def top_k_of_ids(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


def recall_at_10(found: list[np.ndarray], truth: Truth, which: list[int]) -> float:
    return float(np.mean([len(set(f[:10].tolist()) & set(truth.top10(j).tolist())) / 10 for f, j in zip(found, which)]))


def drop_from_page_cache(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages, so the next method reads its candidates
    from disk as a fresh query would, not from what the previous method left in the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def time_queries(search, queries: list[np.ndarray]) -> tuple[list[np.ndarray], list[float]]:
    search(queries[0])  # warm-up (not timed)
    found, ms = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(np.asarray(search(q)))
        ms.append((time.perf_counter() - t) * 1000)
    return found, ms


class SqliteVectors:
    """Candidates' vectors from a SQLite table (page id -> bfloat16 blob): the alternative to the
    memory-mapped file."""

    def __init__(self, path: Path, dim: int) -> None:
        path.unlink(missing_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE pages (id INTEGER PRIMARY KEY, n INTEGER, v BLOB)")
        self.dim = dim
        self.path = path

    def add(self, first_page: int, bits: np.ndarray, vectors: int) -> None:
        rows = bits.reshape(-1, vectors * self.dim)
        self.db.executemany("INSERT INTO pages VALUES (?, ?, ?)",
                            ((first_page + i, vectors, rows[i].tobytes()) for i in range(len(rows))))
        self.db.commit()

    def gather(self, page_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = [int(p) for p in page_ids]
        found = {}
        for start in range(0, len(ids), 900):
            part = ids[start:start + 900]
            for pid, n, blob in self.db.execute(
                    f"SELECT id, n, v FROM pages WHERE id IN ({','.join('?' * len(part))})", part):
                found[pid] = np.frombuffer(blob, dtype=np.uint16).reshape(n, self.dim)
        kept = [p for p in ids if p in found]
        lengths = np.array([found[p].shape[0] for p in kept], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        packed = _widen(np.concatenate([found[p] for p in kept])) if kept else np.empty((0, self.dim), np.float32)
        return np.array(kept, dtype=np.int64), packed, offsets


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, required=True)
    ap.add_argument("--vectors", type=int, required=True)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--depths", default="200,400,1000")
    ap.add_argument("--kinds", default="muvera,mean,tokens", help="first stages to build: muvera, mean (one "
                    "vector per page), tokens (every vector's centroid)")
    ap.add_argument("--code-depths", default="", help="with tokens: also a middle stage of int2 codes in RAM "
                    "(vdr_app/index/page_codes.py) that takes this many first-stage candidates and keeps --depths "
                    "of them for exact scoring; a list times each (method ...-int2-c<code depth>-d<depth>-p<nprobe>)")
    ap.add_argument("--token-nprobe", default="32", help="centroids probed per query token by the tokens stage; "
                    "a list times each on the same index")
    ap.add_argument("--nprobe", default="", help="inverted-file lists scanned per query (default: a quarter of "
                    "the lists); a list "
                    "(e.g. 48,128,400) times each on the same index (method name gets -p<nprobe>)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vdr_bench_scale"))
    ap.add_argument("--pool", type=Path, default=None, help="pool .npz (default: workdir/pool.npz, "
                    "encoded from --corpus when missing)")
    ap.add_argument("--corpus", type=Path, help="folder of PDFs for the pool (default: $VDR_CORPUS_DIR/pdfs or "
                    "../shared/corpus/pdfs; without it the pool is synthetic)",
                    default=Path(os.environ.get("VDR_CORPUS_DIR") or Path(__file__).resolve().parents[2] / "shared" / "corpus") / "pdfs")
    ap.add_argument("--binary-queries", type=int, default=0, help="queries for exhaustive-binary (0: all; it is slow at 1M)")
    ap.add_argument("--sqlite", choices=["auto", "yes", "no"], default="auto",
                    help="also read candidates from SQLite (auto: up to 12M vectors)")
    ap.add_argument("--add-delete", type=int, default=0, help="then add and delete this many pages (two-stage)")
    ap.add_argument("--new-page-queries", type=int, default=10, help="queries aimed at added pages (their ground "
                    "truth needs one more pass over the file; 0 skips them)")
    ap.add_argument("--compare-fastembed", action="store_true", help="time FastEmbed's Muvera on 500 pages")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--warm", action="store_true", help="leave the vector file in the page cache between methods "
                    "(default: dropped before each two-stage method, so each reads from disk like a fresh query)")
    args = ap.parse_args(argv)

    N, P = args.pages, args.vectors
    work = args.workdir / f"{N}x{P}"
    work.mkdir(parents=True, exist_ok=True)
    pool_file = args.pool or args.workdir / "pool.npz"
    if not pool_file.exists() and args.corpus.is_dir():
        print(f"encoding the pool from {args.corpus} (once; cached in {pool_file})", flush=True)
        encode_corpus_pool(args.corpus, pool_file)
    pool, pool_offsets, pool_desc = load_pool(pool_file if pool_file.exists() else None, args.seed)
    print(f"pool: {pool_desc}; load {_load()}", flush=True)
    records: list[dict] = []
    base = dict(pages=N, vectors=P)

    def record(method: str, ms: list[float] | None, recall: float | None, build_s: float | None, **extra) -> None:
        rec = dict(method=method, **base,
                   p50_ms=round(float(np.percentile(ms, 50)), 2) if ms else None,
                   p95_ms=round(float(np.percentile(ms, 95)), 2) if ms else None,
                   recall_at_10=None if recall is None else round(recall, 4),
                   rss_mb=round(_status("VmRSS")), rss_peak_mb=round(_status("VmHWM")),
                   build_s=None if build_s is None else round(build_s, 1), load=_load(), **extra)
        records.append(rec)
        print(json.dumps(rec), flush=True)
        args.json.write_text(json.dumps(records, indent=1))

    # -- queries: targets' chunks regenerated on their own (each chunk is deterministic) ----------
    chunk_cache: dict[int, np.ndarray] = {}

    def page_vectors(i: int) -> np.ndarray:
        c = i // CHUNK
        if c not in chunk_cache:
            chunk_cache.clear()  # one chunk at a time: 4,096 pages x 1,030 vectors are 2 GB
            first = c * CHUNK
            chunk_cache[c] = _widen(_round_bits(generate_chunk(pool, pool_offsets, first, min(CHUNK, N - first), P,
                                                               args.seed), "bfloat16"))
        return chunk_cache[c][(i - c * CHUNK) * P:(i - c * CHUNK + 1) * P]

    queries, targets = make_queries(page_vectors, N, P, args.queries, args.seed)
    chunk_cache.clear()
    truth = Truth(queries)

    # -- one streaming pass ---------------------------------------------------------------------
    kinds = [k for k in args.kinds.split(",") if k]
    nprobes = [int(p) for p in str(args.nprobe).split(",") if p] or [None]
    token_probes = [int(p) for p in str(args.token_nprobe).split(",") if p]
    tokens = None
    code_depths = [int(c) for c in args.code_depths.split(",") if c]
    codes = PageCodes(DIM) if code_depths and TokenStage.kind in kinds else None
    codes_s = 0.0
    if TokenStage.kind in kinds:  # trained first, on vectors of chunks spread over the view
        kinds.remove(TokenStage.kind)
        t = time.perf_counter()
        tokens = TokenStage(DIM, nprobe=token_probes[0])
        spread = np.unique(np.linspace(0, (N - 1) // CHUNK, 16).astype(int))
        rng = np.random.default_rng(3)
        per_chunk = -(-2_000_000 // (len(spread) * P))  # pages from the start of each spread chunk
        sample = np.concatenate([
            _widen(_round_bits(generate_chunk(pool, pool_offsets, c * CHUNK, min(CHUNK, N - c * CHUNK), P,
                                              args.seed, only_pages=per_chunk), "bfloat16"))
            for c in spread])
        tokens.train(sample, N * P)
        del sample
        token_s = time.perf_counter() - t
        print(f"token stage trained: {tokens.state} in {token_s:.0f} s", flush=True)
    stages = {k: FirstStage(DIM, kind=k, nprobe=nprobes[0], ivf_min_pages=20_000) for k in kinds}
    enc_files = {k: np.lib.format.open_memmap(work / f"enc-{k}.npy", mode="w+", dtype=np.float32,
                                              shape=(N, stages[k].size)) for k in kinds}
    enc_s = dict.fromkeys(kinds, 0.0)
    vectors = VectorFile(work / "vectors.bf16", DIM)
    want_sqlite = args.sqlite == "yes" or (args.sqlite == "auto" and N * P <= 12_000_000)
    sql = SqliteVectors(work / "vectors.sqlite", DIM) if want_sqlite else None
    sql_s = 0.0
    fits = N * P * DIM * 2 <= RAM_EXHAUSTIVE_BYTES
    binary_codes: list[np.ndarray] = []
    t_gen = t_write = t_truth = t_bin = 0.0
    start = time.perf_counter()
    for first in range(0, N, CHUNK):
        n = min(CHUNK, N - first)
        t = time.perf_counter()
        bits = _round_bits(generate_chunk(pool, pool_offsets, first, n, P, args.seed), "bfloat16")
        x = _widen(bits)
        t_gen += time.perf_counter() - t
        t = time.perf_counter()
        vectors.append_packed(np.arange(first, first + n), bits, np.full(n, P))
        t_write += time.perf_counter() - t
        if sql is not None:
            t = time.perf_counter()
            sql.add(first, bits, P)
            sql_s += time.perf_counter() - t
        t = time.perf_counter()
        truth.merge(first, truth.page_scores(x, P))
        t_truth += time.perf_counter() - t
        offsets = np.arange(n + 1, dtype=np.int64) * P
        for k in kinds:
            t = time.perf_counter()
            enc_files[k][first:first + n] = stages[k].encode_pages(x, offsets)
            enc_s[k] += time.perf_counter() - t
        if tokens is not None:
            t = time.perf_counter()
            tokens.add(np.arange(first, first + n), x, offsets)
            token_s += time.perf_counter() - t
        if codes is not None:
            t = time.perf_counter()
            codes.add(np.arange(first, first + n), x, offsets)
            codes_s += time.perf_counter() - t
        t = time.perf_counter()
        binary_codes.append(quantise_binary(x))
        t_bin += time.perf_counter() - t
        if (first // CHUNK) % 20 == 0:
            print(f"  chunk {first // CHUNK + 1}/{-(-N // CHUNK)}: {time.perf_counter() - start:.0f} s, "
                  f"RSS {_status('VmRSS'):.0f} MB, load {_load()}", flush=True)
        del x, bits
    print(f"pass: generate {t_gen:.0f} s, write {t_write:.0f} s, truth {t_truth:.0f} s, encode "
          + ", ".join(f"{k} {v:.0f} s" for k, v in enc_s.items()) + f", binary {t_bin:.0f} s, codes {codes_s:.0f} s", flush=True)
    hits = np.mean([truth.top10(j)[0] == targets[j] for j in range(len(queries))])
    print(f"known answers ranked first by exact MaxSim: {hits:.3f}", flush=True)
    which = list(range(len(queries)))
    disk_mb = round(vectors.disk_bytes / 2**20)

    # -- exhaustive -----------------------------------------------------------------------------
    if fits:
        _reset_peak()
        t = time.perf_counter()
        data = np.memmap(vectors.path, dtype=np.uint16, mode="r", shape=(N * P, DIM))
        index = MaxSimIndex((_widen(data[i * P:(i + 1) * P]) for i in range(N)))
        build = time.perf_counter() - t
        found, ms = time_queries(lambda q: index.top_k(q, 10)[0], queries)
        record("exhaustive-bfloat16", ms, recall_at_10(found, truth, which), build,
               target_at_1=float(np.mean([f[0] == t for f, t in zip(found, targets)])), disk_mb=0,
               notes="whole view in RAM (MaxSimIndex, bfloat16)")
        del index, data
    else:
        record("exhaustive-bfloat16", None, None, None,
               notes=f"not run: {N * P * DIM * 2 / 2**30:.1f} GiB of bfloat16 does not fit in RAM here")
    _reset_peak()
    t = time.perf_counter()
    bindex = QuantisedMaxSimIndex((QuantisedVectors("binary", DIM, c[i * P:(i + 1) * P])
                                   for c in binary_codes for i in range(len(c) // P)), kind="binary", dim=DIM)
    binary_codes.clear()
    build = time.perf_counter() - t + t_bin
    bq = queries if not args.binary_queries else queries[:args.binary_queries]
    found, ms = time_queries(lambda q: bindex.top_k(q, 10)[0], bq)
    record("exhaustive-binary", ms, recall_at_10(found, truth, which[:len(bq)]), build,
           target_at_1=float(np.mean([f[0] == t for f, t in zip(found, targets)])), disk_mb=0,
           notes=f"binary codes in RAM ({bindex.nbytes / 2**20:.0f} MiB), no rescoring; {len(bq)} queries")
    del bindex

    # -- two-stage ------------------------------------------------------------------------------
    depths = [int(d) for d in args.depths.split(",") if d]
    if tokens is not None:
        _reset_peak()
        tokens.candidates(queries[0], 10)  # folds the last pending vectors into the lists
        for p, d in [(p, d) for p in token_probes for d in depths]:
            tokens.set_nprobe(p)
            if not args.warm:
                drop_from_page_cache(vectors.path)
            found, ms = time_queries(lambda q: two_stage_top_k(q, 10, tokens, vectors, d)[0], queries)
            record(f"two-stage-tokens-d{d}-p{p}", ms, recall_at_10(found, truth, which), token_s, depth=d,
                   target_at_1=float(np.mean([f[0] == t for f, t in zip(found, targets)])),
                   first_stage=tokens.describe(), first_stage_mb=round(tokens.nbytes / 2**20), disk_mb=disk_mb,
                   notes="token centroids (vdr_app/index/token_stage.py) -> candidates' vectors from the file")
            for c in [c for c in code_depths if c > d] if codes is not None else []:
                if not args.warm:
                    drop_from_page_cache(vectors.path)
                found, ms = time_queries(
                    lambda q, d=d, c=c: two_stage_top_k(q, 10, tokens, vectors, d, codes=codes, code_depth=c)[0],
                    queries)
                record(f"two-stage-tokens-{codes.kind}-c{c}-d{d}-p{p}", ms, recall_at_10(found, truth, which),
                       token_s + codes_s, depth=d, code_depth=c,
                       target_at_1=float(np.mean([f[0] == t for f, t in zip(found, targets)])),
                       first_stage=tokens.describe(), first_stage_mb=round(tokens.nbytes / 2**20),
                       codes_mb=round(codes.nbytes / 2**20), codes_s=round(codes_s, 1), disk_mb=disk_mb,
                       notes=f"token centroids -> {c} candidates -> their {codes.kind} codes in RAM keep {d} -> "
                             "those pages' vectors from the file")
        tokens.set_nprobe(token_probes[0])
    for k in kinds:
        _reset_peak()
        stage = stages[k]
        t = time.perf_counter()
        if N >= stage.ivf_min_pages:  # sized for the whole view, trained on a spread sample
            rows = np.sort(np.random.default_rng(0).choice(N, size=min(N, 200_000), replace=False))
            stage.train(np.asarray(enc_files[k][rows]), N)
        for s in range(0, N, 50_000):
            stage.add_encodings(np.arange(s, min(N, s + 50_000)), np.asarray(enc_files[k][s:s + 50_000]))
        build = time.perf_counter() - t + enc_s[k]
        for p, d in [(p, d) for p in nprobes for d in depths]:
            if p is not None:
                stage.set_nprobe(p)
            name = f"two-stage-{k}-d{d}" + (f"-p{p}" if len(nprobes) > 1 else "")
            if not args.warm:
                drop_from_page_cache(vectors.path)
            found, ms = time_queries(lambda q: two_stage_top_k(q, 10, stage, vectors, d)[0], queries)
            record(name, ms, recall_at_10(found, truth, which), build, depth=d,
                   target_at_1=float(np.mean([f[0] == t for f, t in zip(found, targets)])),
                   first_stage=stage.describe(), first_stage_mb=round(stage.nbytes / 2**20),
                   encode_ms_per_page=round(enc_s[k] / N * 1000, 3), disk_mb=disk_mb,
                   notes="candidates' vectors from the memory-mapped bfloat16 file")
        if nprobes[0] is not None:
            stage.set_nprobe(nprobes[0])
        if sql is not None and k == kinds[0]:
            d = 400 if 400 in depths else depths[0]

            def via_sqlite(q, d=d, stage=stage):
                with _one_thread():  # as two_stage_top_k does
                    cand = np.sort(stage.candidates(q, d))
                    ids, packed, offsets = sql.gather(cand)
                    best, _ = top_k_of(packed_maxsim(q, packed, offsets), 10)
                return ids[best]

            found, ms = time_queries(via_sqlite, queries)
            record(f"two-stage-{k}-d{d}-sqlite", ms, recall_at_10(found, truth, which), build + sql_s, depth=d,
                   target_at_1=float(np.mean([f[0] == t for f, t in zip(found, targets)])),
                   disk_mb=round(sql.path.stat().st_size / 2**20),
                   notes=f"candidates' vectors from a SQLite table (writing it: {sql_s:.0f} s)")
        if k != kinds[0]:
            stages[k] = None  # free it: only the first kind is kept for add/delete
            del stage

    # -- add and delete -------------------------------------------------------------------------
    if args.add_delete:
        M = args.add_delete
        # the token stage when it was built (the one that recalls most), else the first page summary;
        # at the first depth and nprobe asked for
        k, stage = (TokenStage.kind, tokens) if tokens is not None else (kinds[0], stages[kinds[0]])
        d = depths[0]
        c = next((c for c in code_depths if c > d), 0) if codes is not None and k == TokenStage.kind else 0
        via = {"codes": codes, "code_depth": c} if c else {}
        if c:
            k = f"{k}-{codes.kind}-c{c}"

        def search(q, stage=stage, d=d, via=via):
            return two_stage_top_k(q, 10, stage, vectors, d, **via)[0]
        new_first = N
        new = generate_chunk(pool, pool_offsets, (N // CHUNK + 10_000) * CHUNK, M, P, args.seed)
        bits = _round_bits(new, "bfloat16")
        x = _widen(bits)
        t = time.perf_counter()
        ids = np.arange(new_first, new_first + M)
        vectors.append_packed(ids, bits, np.full(M, P))
        stage.add(ids, x, np.arange(M + 1) * P)
        if c:
            codes.add(ids, x, np.arange(M + 1) * P)
        add_s = time.perf_counter() - t
        for j, s in enumerate(truth.page_scores(x, P).T):
            truth.merge_one(j, ids, s)
        found, ms = time_queries(search, queries)
        rec_old = recall_at_10(found, truth, which)
        extra_fields = {}
        if args.new_page_queries:
            # Queries whose answers are among the new pages, beside the old ones.
            new_q, new_t = make_queries(lambda i: x[i * P:(i + 1) * P], M, P, min(args.new_page_queries, M),
                                        args.seed + 1)
            extra = Truth(new_q)
            data = np.memmap(vectors.path, dtype=np.uint16, mode="r", shape=((N + M) * P, DIM))
            for first in range(0, N, CHUNK):  # their ground truth needs one more pass over the file
                n = min(CHUNK, N - first)
                extra.merge(first, extra.page_scores(_widen(data[first * P:(first + n) * P]), P))
            extra.merge(N, extra.page_scores(x, P))
            found_new, ms_new = time_queries(search, new_q)
            rec_new = recall_at_10(found_new, extra, list(range(len(new_q))))
            ms = ms + ms_new
            rec_old = (rec_old * len(which) + rec_new * len(new_q)) / (len(which) + len(new_q))
            extra_fields = dict(recall_new_pages=round(rec_new, 4),
                                target_at_1_new=float(np.mean([f[0] == t + N for f, t in zip(found_new, new_t)])))
        record(f"two-stage-{k}-d{d}-after-add-{M}", ms, rec_old, None, add_s=round(add_s, 2), depth=d, **extra_fields)
        # Delete M old pages that are not query targets.
        rng = np.random.default_rng([args.seed, 99])
        pool_ids = np.setdiff1d(np.arange(N), targets)
        gone = rng.choice(pool_ids, size=M, replace=False)
        t = time.perf_counter()
        stage.remove(gone)
        vectors.remove(gone)
        if c:
            codes.remove(gone)
        del_s = time.perf_counter() - t
        truth.drop(set(gone.tolist()))
        found, ms = time_queries(search, queries)
        returned_gone = sum(len(set(f.tolist()) & set(gone.tolist())) for f in found)
        record(f"two-stage-{k}-d{d}-after-delete-{M}", ms, recall_at_10(found, truth, which), None,
               delete_s=round(del_s, 2), deleted_pages_returned=int(returned_gone), depth=d)

    if args.compare_fastembed:
        sample = min(500, N)
        data = np.memmap(vectors.path, dtype=np.uint16, mode="r", shape=(N * P, DIM))
        x = _widen(data[: sample * P])
        ours = Muvera(DIM, k_sim=3)
        t = time.perf_counter()
        mine = ours.encode_pages(x, np.arange(sample + 1) * P)
        ours_ms = (time.perf_counter() - t) / sample * 1000
        try:
            from fastembed.postprocess import Muvera as FastEmbedMuvera

            fe = FastEmbedMuvera(DIM, k_sim=3, dim_proj=16, r_reps=8, random_seed=0)
            t = time.perf_counter()
            theirs = np.stack([fe.process_document(x[i * P:(i + 1) * P]) for i in range(sample)])
            fe_ms = (time.perf_counter() - t) / sample * 1000
            diff = float(np.abs(theirs - mine).max())
        except ImportError as error:
            fe_ms, diff = None, f"fastembed not importable: {error}"
        record("muvera-encoding-speed", None, None, None, ours_ms_per_page=round(ours_ms, 3),
               fastembed_ms_per_page=None if fe_ms is None else round(fe_ms, 3), max_abs_difference=diff,
               notes=f"{sample} pages; same seed and parameters (k_sim=3, dim_proj=16, r_reps=8)")

    if not args.keep:
        vectors.close(delete=True)
        for k in kinds:
            (work / f"enc-{k}.npy").unlink(missing_ok=True)
        if sql is not None:
            sql.db.close()
            sql.path.unlink(missing_ok=True)
    print(f"wrote {args.json}", flush=True)


if __name__ == "__main__":
    main()
