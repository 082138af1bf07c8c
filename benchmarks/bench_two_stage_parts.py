#!/usr/bin/env python3
"""Two pieces of two-stage search measured on their own (docs/scale.md, "How it works").

    python -m benchmarks.bench_two_stage_parts reads  [--workdir DIR]
    python -m benchmarks.bench_two_stage_parts codes  [--pages 40000]

reads: candidates' vectors read and scored two ways on the same file, in one process: the memory
    map (one fancy index, then float32 MaxSim: the first version) against `VectorFile.read`
    (os.preadv, 8 reads in flight) + `score_bits` (exhaustive search's kernel). 400 pages x 1,030
    and 1,000 pages x 115 vectors of random values, drawn from a file of 6,000 / 40,000 pages;
    "cold" drops the file from the page cache before each try (posix_fadvise), "warm" reads the
    same pages once first. Best and median of 5 per cell, and the largest score difference.

codes: does a middle stage of low-bit codes keep the exact top 10 when it filters the token first
    stage's candidates? Pages recombined from the corpus's own page vectors (benchmarks/scale_data.py,
    its pool cached under /tmp/vdr_bench_scale), a token stage with a small nprobe (a weak first
    stage), 40 queries with known answers. Per (nprobe, depth): recall@10 after exact scoring of
    the first stage's best `depth` (first), of the best `depth` by the codes of every page
    (<kind>: what the codes alone can rank), and of the best `depth` by the codes among the first
    stage's 4 x depth candidates (<kind>-x4: the middle stage).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vdr_app.index.first_stage import VectorFile, _one_thread, packed_maxsim  # noqa: E402
from vdr_app.index.maxsim import MaxSimIndex, _round_bits, _widen_into, score_bits  # noqa: E402


def reads(workdir: Path) -> None:
    rng = np.random.default_rng(0)
    for vectors, n_pages, n in [(1030, 6000, 400), (115, 40000, 1000)]:
        vf = VectorFile(workdir / f"reads-{vectors}.bf16", 128)
        for s in range(0, n_pages, 500):
            bits = _round_bits(rng.standard_normal((500 * vectors, 128)).astype(np.float32), "bfloat16")
            vf.append_packed(np.arange(s, s + 500), bits, np.full(500, vectors))
        q = rng.standard_normal((20, 128)).astype(np.float32)
        fd = os.open(vf.path, os.O_RDONLY)

        def mapped(c, vf=vf, q=q):
            _, bits, offsets = vf.read_mapped(c)
            packed = np.empty(bits.shape, np.float32)
            _widen_into(bits, packed, "bfloat16")
            return packed_maxsim(q, packed, offsets)

        def preadv(c, vf=vf, q=q):
            _, bits, offsets = vf.read(c)
            return score_bits(q, bits, offsets)

        for cold in (True, False):
            for name, method in (("memory map + float32", mapped), ("preadv x 8 + kernel", preadv)):
                ms = []
                for _ in range(5):
                    c = np.sort(rng.choice(n_pages, n, replace=False))
                    if cold:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    else:
                        method(c)
                    with _one_thread():
                        t = time.perf_counter()
                        method(c)
                        ms.append((time.perf_counter() - t) * 1000)
                print(f"{n} pages x {vectors}, {'cold' if cold else 'warm'}: {name}: best {min(ms):.0f} ms, "
                      f"median {np.median(ms):.0f} ms", flush=True)
        c = np.sort(rng.choice(n_pages, n, replace=False))
        print(f"  largest score difference: {np.abs(mapped(c) - preadv(c)).max()}; load {os.getloadavg()[0]:.2f}")
        os.close(fd)
        vf.close(delete=True)


def codes(n_pages: int, pool_file: Path) -> None:
    from benchmarks.scale_data import CHUNK, DIM, generate_chunk, load_pool, make_queries
    from vdr_app.index.maxsim_quantised import QuantisedMaxSimIndex
    from vdr_app.index.token_stage import TokenStage
    from vdr_app.quantise import quantise

    vectors = 115
    pool, offsets, desc = load_pool(pool_file if pool_file.exists() else None, 1)
    print(f"pool: {desc}", flush=True)
    chunks = []
    for first in range(0, n_pages, CHUNK):
        bits = _round_bits(generate_chunk(pool, offsets, first, min(CHUNK, n_pages - first), vectors, 1), "bfloat16")
        chunks.append(np.empty(bits.shape, np.float32))
        _widen_into(bits, chunks[-1], "bfloat16")
    x = np.concatenate(chunks)
    del chunks
    pages = [x[i * vectors:(i + 1) * vectors] for i in range(n_pages)]
    queries, _ = make_queries(lambda i: pages[i], n_pages, vectors, 40, 1)
    exact = MaxSimIndex(pages)
    truth = [set(exact.top_k(q, 10)[0].tolist()) for q in queries]
    stage = TokenStage(DIM)
    stage.train(x[::7], n_pages * vectors)
    stage.add(np.arange(n_pages), x, np.arange(n_pages + 1) * vectors)
    kinds = {k: QuantisedMaxSimIndex((quantise(p, k) for p in pages), kind=k, dim=DIM) for k in ("binary", "int2")}
    for nprobe in (4, 8, 16):
        stage.set_nprobe(nprobe)
        for depth in (200, 400):
            recall: dict[str, list[float]] = {"first": []}
            for q, want in zip(queries, truth):
                scores = exact.scores(q)

                def top10(cand, scores=scores):
                    return set(cand[np.argsort(-scores[cand], kind="stable")[:10]].tolist())

                wide = stage.candidates(q, depth * 4)
                recall["first"].append(len(top10(wide[:depth]) & want) / 10)
                for kind, index in kinds.items():
                    coded = index.scores(q)
                    every = np.argsort(-coded, kind="stable")[:depth]
                    kept = wide[np.argsort(-coded[wide], kind="stable")[:depth]]
                    recall.setdefault(kind, []).append(len(top10(every) & want) / 10)
                    recall.setdefault(f"{kind}-x4", []).append(len(top10(kept) & want) / 10)
            print(f"{n_pages} pages, nprobe {nprobe}, depth {depth}: "
                  + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in recall.items()), flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["reads", "codes"])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vdr_bench_scale"))
    ap.add_argument("--pages", type=int, default=40_000)
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.part == "reads":
        reads(args.workdir)
    else:
        codes(args.pages, args.workdir / "pool.npz")


if __name__ == "__main__":
    main()
