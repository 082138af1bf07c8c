"""Two-stage search for large views: a small first stage finds candidates, exact MaxSim ranks them.

    stage = FirstStage(dim=128)                 # MUVERA encodings in a faiss inverted file
    stage.add(page_ids, packed, offsets)        # encode and insert pages (incremental)
    stage.remove(page_ids)                      # delete pages from the graph
    stage.candidates(query, n)                  # -> int64 page ids, the n best by encoding

    vectors = VectorFile(folder)                # every page's vectors, memory-mapped from disk
    two_stage_top_k(query, k, stage, vectors, depth)   # -> (page ids, exact scores)

Why: exhaustive MaxSim reads every vector of a view for every query, so its time and RAM grow
with the view (1M pages x 115 vectors: 29 GB of float16, seconds per query). Here RAM holds only
one encoding per page; each query scans a few lists of encodings for `depth` candidates and
reads only their vectors from the memory-mapped file (the operating system's page cache keeps the
hot ones), then scores them exactly, in float32, like `MaxSimIndex`. Recall against exhaustive
MaxSim, latency and memory by size: benchmarks/bench_scale.py, docs/scale.md.

Choices (measured in bench_scale.py, see docs/scale.md):
* Encodings: `vdr_app.index.muvera.Muvera` (FastEmbed's algorithm, vectorised; k_sim=3, 1,024 values).
* Index: faiss's inverted file (IVF, float16 codes, inner product), flat (exact) below 20,000
  pages. HNSW graphs (usearch, hnswlib, faiss) were measured too: at 1,024 values per page they
  took ~3-4 s per 1,000 inserted pages on the 2-core machine (about an hour for 1M pages), while
  IVF trains on a sample and adds 1M pages in about a minute; IVF also removes by id.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .maxsim import _round_bits, check_query, score_bits, top_k_of
from .muvera import Muvera
from .page_codes import PageCodes
from .page_rows import locate, packed_rows
from .token_stage import TokenStage

PAGE_SUMMARY_KINDS = ("muvera", "mean")  # FirstStage's
KINDS = (TokenStage.kind, *PAGE_SUMMARY_KINDS)
# Pages scored exactly per query (Settings.two_stage_depth) and candidates the first stage hands to
# the int2 middle stage (Settings.two_stage_code_depth). At 1M pages x 115: recall@10 0.98, p50
# 73 ms; without the middle stage 1,000 candidates recalled 0.935 at 137 ms (docs/scale.md).
DEFAULT_DEPTH = 200
DEFAULT_CODE_DEPTH = 2000
IVF_MIN_PAGES = 20_000  # below this the first stage is searched exactly (flat)
# Default nprobe: as many lists as hold about this many encodings (~50M multiply-adds per query at
# 1,024 values). At 50k pages that is every list, where 48 of 894 lists lost 0.1 of recall@10.
SCAN_ENCODINGS = 50_000


def make_first_stage(kind: str, dim: int) -> "FirstStage | TokenStage":
    """The first stage named by Settings.first_stage: "tokens" (every vector's centroid; the
    default, it recalls most: docs/scale.md), "muvera" or "mean" (one summary per page)."""
    if kind not in KINDS:
        raise ValueError(f"a first stage is one of {KINDS}, got {kind!r}")
    if kind == TokenStage.kind:
        return TokenStage(dim)
    return FirstStage(dim, kind=kind)


class FirstStage:
    """One encoding per page (MUVERA or the mean vector) under a faiss inverted-file index.

    Small views are searched exactly (a flat index); once a view has `ivf_min_pages` pages the
    encodings are clustered into ~4 sqrt(N) lists (k-means on a sample) and a query scans the
    `nprobe` nearest lists (float16 codes; default: ~50,000 encodings' worth). Pages are added and removed
    by page id (incremental; the lists are not retrained: reload the view when it has grown many
    times over).

    Args:
        dim: the pages' vector dimension.
        kind: "muvera" (default) or "mean" (the page's mean vector: 128 values, cheaper, weaker).
        encoder: the MUVERA encoding (default `Muvera(dim, k_sim=3)`, 1,024 values per page).
        nprobe: lists scanned per query (None: enough lists for about SCAN_ENCODINGS encodings;
            measured at 50k pages, depth 1000: 48 of 894 lists recall 0.83, 200 lists 0.90, all
            of them 0.93).
    """

    def __init__(self, dim: int, kind: str = "muvera", encoder: Muvera | None = None, nprobe: int | None = None,
                 ivf_min_pages: int = IVF_MIN_PAGES) -> None:
        import faiss

        if kind not in PAGE_SUMMARY_KINDS:
            raise ValueError(f"a page-summary first stage is one of {PAGE_SUMMARY_KINDS}, got {kind!r}")
        self.kind, self.dim, self.ivf_min_pages = kind, int(dim), int(ivf_min_pages)
        self.nprobe = None if nprobe is None else int(nprobe)
        self.encoder = (encoder or Muvera(dim, k_sim=3)) if kind == "muvera" else None
        self.size = self.encoder.size if self.encoder else self.dim
        self._faiss = faiss
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.size))
        self._lists = 0  # 0: flat (exact) index
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def nbytes(self) -> int:
        """Bytes held by the encodings (codes) and the list centres."""
        per = 2 if self._lists else 4
        return int(len(self) * (self.size * per + 8) + self._lists * self.size * 4)

    @property
    def state(self) -> str:
        return f"ivf, {self._lists} lists, nprobe {self.nprobe}" if self._lists else "flat (exact)"

    def set_nprobe(self, nprobe: int) -> None:
        """Lists scanned per query from now on (more: higher recall, slower)."""
        with self._lock:
            self.nprobe = int(nprobe)
            if self._lists:
                self._index.nprobe = self.nprobe

    def describe(self) -> str:
        what = self.encoder.describe() if self.encoder else "mean vector"
        return f"{what}, {self.size} values per page, faiss {self.state}, {len(self)} pages"

    def encode_pages(self, packed: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        if self.encoder is not None:
            return self.encoder.encode_pages(packed, offsets)
        offsets = np.asarray(offsets, dtype=np.int64)
        lengths = np.diff(offsets)
        out = np.zeros((len(lengths), self.dim), dtype=np.float32)
        nonempty = lengths > 0
        if packed.shape[0]:
            out[nonempty] = np.add.reduceat(np.asarray(packed, np.float32), offsets[:-1][nonempty], axis=0)
        return out / np.maximum(lengths, 1)[:, None]

    def encode_query(self, query: np.ndarray) -> np.ndarray:
        q = np.asarray(query, dtype=np.float32)
        return self.encoder.encode_query(q) if self.encoder is not None else q.sum(axis=0)

    def add(self, page_ids, packed: np.ndarray, offsets: np.ndarray) -> None:
        """Encode pages (vectors packed[offsets[i]:offsets[i+1]] for page_ids[i]) and insert them."""
        keys = np.asarray(page_ids, dtype=np.int64)
        if keys.size:
            self.add_encodings(keys, self.encode_pages(packed, offsets))

    def add_encodings(self, page_ids, encodings: np.ndarray) -> None:
        keys = np.asarray(page_ids, dtype=np.int64)
        x = np.ascontiguousarray(encodings, dtype=np.float32)
        with self._lock:
            self._index.remove_ids(keys)  # a page added again replaces its old encoding
            if not self._lists and len(self) + len(keys) >= self.ivf_min_pages:
                self._to_ivf(x)
            self._index.add_with_ids(x, keys)

    def train(self, sample: np.ndarray, expected_pages: int) -> None:
        """Start the inverted file now, sized for `expected_pages`, from a sample of encodings
        (a bulk build knows its size; incremental use trains itself at `ivf_min_pages`)."""
        with self._lock:
            if not self._lists:
                self._to_ivf(np.ascontiguousarray(sample, dtype=np.float32), expected_pages)

    def _to_ivf(self, fresh: np.ndarray, expected_pages: int = 0) -> None:
        """Move from the flat index to an inverted file trained on what is held plus `fresh` (which
        the caller adds itself, if it is to be held)."""
        faiss = self._faiss
        held = self._index.ntotal
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64) if held else np.empty(0, np.int64)
        old = self._index.index.reconstruct_n(0, held) if held else np.empty((0, self.size), np.float32)
        sample = np.concatenate([old, fresh])
        n = len(sample)
        pages = max(n, expected_pages, self.ivf_min_pages)
        lists = max(16, int(4 * np.sqrt(pages)))
        rng = np.random.default_rng(0)
        train = sample[rng.choice(n, size=min(n, lists * 40), replace=False)]
        quantizer = faiss.IndexFlatIP(self.size)
        ivf = faiss.IndexIVFScalarQuantizer(quantizer, self.size, lists, faiss.ScalarQuantizer.QT_fp16,
                                            faiss.METRIC_INNER_PRODUCT)
        ivf.train(train)
        if self.nprobe is None:
            self.nprobe = int(np.clip(np.ceil(SCAN_ENCODINGS * lists / pages), 16, lists))
        ivf.nprobe = min(self.nprobe, lists)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove_ids by id without a full scan
        self._ivf_quantizer = quantizer  # faiss does not own it: keep it alive
        self._index, self._lists = ivf, lists
        if held:
            self._index.add_with_ids(old, ids)

    def remove(self, page_ids) -> None:
        keys = np.asarray(list(page_ids) if not isinstance(page_ids, np.ndarray) else page_ids, dtype=np.int64)
        if keys.size:
            with self._lock:
                self._index.remove_ids(keys)

    def candidates(self, query: np.ndarray, n: int) -> np.ndarray:
        """int64 page ids of the (about) n pages whose encodings best match the query's."""
        if n <= 0 or not len(self):
            return np.empty(0, dtype=np.int64)
        with self._lock:
            _, ids = self._index.search(self.encode_query(query)[None], int(min(n, len(self))))
        ids = ids[0]
        return ids[ids >= 0].astype(np.int64)


class VectorFile:
    """Every page's vectors in one append-only file of bfloat16 rows, read through a memory map.

    RAM holds only each page's (row, length); the rows stay on disk and the operating system's page
    cache keeps what is read often. Removing a page forgets its rows (`compact` reclaims them).
    bfloat16 is what `MaxSimIndex` scores by default, so two-stage scores equal exhaustive ones.

    Args:
        path: the file (created, or emptied when `fresh`).
        dim: vector dimension.
    """

    def __init__(self, path: str | Path, dim: int, fresh: bool = True) -> None:
        self.path, self.dim = Path(path), int(dim)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh or not self.path.exists():
            self.path.write_bytes(b"")
        self._rows = self.path.stat().st_size // (2 * self.dim)
        self._where: dict[int, tuple[int, int]] = {}  # page id -> (first row, vector count)
        self._map: np.ndarray | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, page_id: int) -> bool:
        return int(page_id) in self._where

    @property
    def n_vectors(self) -> int:
        """Vectors of the pages held."""
        return sum(n for _, n in self._where.values())

    @property
    def disk_bytes(self) -> int:
        return self._rows * 2 * self.dim

    def append(self, page_ids, pages) -> None:
        """Write pages (float (n_i, d) arrays) at the end of the file; a page id written again moves."""
        with self._lock:
            with open(self.path, "ab") as f:
                for pid, page in zip(page_ids, pages):
                    bits = _round_bits(np.ascontiguousarray(page, dtype=np.float32).reshape(-1, self.dim), "bfloat16")
                    f.write(bits.tobytes())
                    self._where[int(pid)] = (self._rows, bits.shape[0])
                    self._rows += bits.shape[0]
            self._map = None

    def append_packed(self, page_ids, bits: np.ndarray, lengths) -> None:
        """Append pages given as bfloat16 bits (V, d) uint16 with per-page lengths (fast path)."""
        with self._lock:
            with open(self.path, "ab") as f:
                f.write(np.ascontiguousarray(bits, dtype=np.uint16).tobytes())
            starts = self._rows + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            for pid, s, n in zip(np.asarray(page_ids).tolist(), starts.tolist(), np.asarray(lengths).tolist()):
                self._where[int(pid)] = (int(s), int(n))
            self._rows += int(np.sum(lengths))
            self._map = None

    def remove(self, page_ids) -> None:
        with self._lock:
            for pid in page_ids:
                self._where.pop(int(pid), None)

    def _mapped(self) -> np.ndarray:
        if self._map is None or self._map.shape[0] != self._rows:
            self._map = (np.memmap(self.path, dtype=np.uint16, mode="r", shape=(self._rows, self.dim))
                         if self._rows else np.empty((0, self.dim), np.uint16))
        return self._map

    def read(self, page_ids, threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(kept page ids int64, bfloat16 bits (V, d) uint16, offsets (n + 1,)) of the pages held,
        in the given order; ids not held are left out.

        Each page's rows are one run of the file (neighbouring runs are read as one), read with
        `os.preadv` by `threads` (default READ_THREADS) threads at once: a disk serves concurrent
        reads several times faster than the memory map's one page fault at a time (cold file, 400
        pages of 1,030 vectors read and scored: 103 ms against 616 ms; docs/scale.md)."""
        if not hasattr(os, "preadv"):  # Windows
            return self.read_mapped(page_ids)
        with self._lock:
            ids, starts, offsets = locate(self._where, page_ids)
            fd = os.open(self.path, os.O_RDONLY) if len(ids) else None
        bits = np.empty((int(offsets[-1]), self.dim), dtype=np.uint16)
        if fd is not None:
            try:
                _read_runs_concurrently(fd, bits, _runs(starts, np.diff(offsets), offsets[:-1]), self.dim * 2,
                                        READ_THREADS if threads is None else threads)
            finally:
                os.close(fd)
        return ids, bits, offsets

    def read_mapped(self, page_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`read` through the memory map, one fancy index: the reference `read` is tested against."""
        with self._lock:
            ids, starts, offsets = locate(self._where, page_ids)
            data = self._mapped()
        return ids, np.asarray(data[packed_rows(starts, offsets)]).reshape(-1, self.dim), offsets

    def compact(self) -> None:
        """Rewrite the file with only the pages held (after many removals)."""
        with self._lock:
            data = self._mapped()
            tmp = self.path.with_suffix(".compact")
            where, row = {}, 0
            with open(tmp, "wb") as f:
                for pid, (start, n) in sorted(self._where.items(), key=lambda item: item[1][0]):
                    f.write(np.asarray(data[start:start + n]).tobytes())
                    where[pid] = (row, n)
                    row += n
            self._map = None
            os.replace(tmp, self.path)
            self._where, self._rows = where, row

    def close(self, delete: bool = False) -> None:
        self._map = None
        if delete:
            self.path.unlink(missing_ok=True)


READ_THREADS = 8  # concurrent reads per `read` (a cold disk: 4-8 at once read ~2.5x faster than 1)
_READ_POOL: ThreadPoolExecutor | None = None
_READ_POOL_LOCK = threading.Lock()


def _runs(starts: np.ndarray, lengths: np.ndarray, dest: np.ndarray) -> np.ndarray:
    """(file row, destination row, rows) of each read: consecutive pages that are neighbours in
    the file and in the destination are one read."""
    if not len(starts):
        return np.empty((0, 3), np.int64)
    joined = (starts[1:] == starts[:-1] + lengths[:-1]) & (dest[1:] == dest[:-1] + lengths[:-1])
    first = np.concatenate([[0], np.flatnonzero(~joined) + 1])
    rows = np.add.reduceat(lengths, first)
    return np.stack([starts[first], dest[first], rows], axis=1)


def _read_runs(fd: int, out: memoryview, runs: np.ndarray, row_bytes: int) -> None:
    for file_row, dest_row, rows in runs.tolist():
        view, at = out[dest_row * row_bytes:(dest_row + rows) * row_bytes], file_row * row_bytes
        while len(view):
            got = os.preadv(fd, [view], at)
            if got <= 0:
                raise OSError(f"vector file ended early at byte {at}")
            view, at = view[got:], at + got


def _read_runs_concurrently(fd: int, out: np.ndarray, runs: np.ndarray, row_bytes: int, threads: int) -> None:
    """Read every run into out (rows of row_bytes), split into `threads` groups of about equal
    bytes read at once (os.preadv releases the GIL); small reads stay on the calling thread."""
    global _READ_POOL
    buffer = memoryview(out.reshape(-1).view(np.uint8))
    total = int(runs[:, 2].sum()) * row_bytes if len(runs) else 0
    if threads <= 1 or len(runs) < 2 or total < (1 << 20):
        _read_runs(fd, buffer, runs, row_bytes)
        return
    with _READ_POOL_LOCK:  # one pool for the process (more groups than READ_THREADS queue)
        if _READ_POOL is None:
            _READ_POOL = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="vdr-read")
        pool = _READ_POOL
    cuts = np.searchsorted(np.cumsum(runs[:, 2]), runs[:, 2].sum() * np.arange(1, threads) / threads)
    groups = [g for g in np.split(runs, np.unique(cuts)) if len(g)]
    for done in [pool.submit(_read_runs, fd, buffer, g, row_bytes) for g in groups]:
        done.result()


def packed_maxsim(query: np.ndarray, packed: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """float32 MaxSim of pages packed as (V, d) float32 with offsets (n + 1,): one sgemm and one
    reduceat, the arithmetic of `MaxSimIndex`; -inf for pages without vectors."""
    n = len(offsets) - 1
    out = np.full(n, -np.inf, dtype=np.float32)
    if packed.shape[0] == 0:
        return out
    sims = packed @ np.ascontiguousarray(query.T)  # (V, q)
    nonempty = np.diff(offsets) > 0
    best = np.maximum.reduceat(sims, offsets[:-1][nonempty], axis=0)  # (pages, q)
    out[nonempty] = best.sum(axis=1)
    return out


def two_stage_top_k(query: np.ndarray, k: int, stage: "FirstStage | TokenStage", vectors: VectorFile, depth: int,
                    allowed=None, codes: PageCodes | None = None, code_depth: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The k best pages by exact MaxSim among the first stage's `depth` candidates.

    Args:
        allowed: a set of page ids that may compete (a document filter) or None. With a filter the
            first stage is asked for more candidates (x4, then every page) until k allowed ones come.
        codes, code_depth: a middle stage (`page_codes.PageCodes`): the first stage hands
            `code_depth` candidates to the codes, which keep their `depth` best for exact scoring.

    Returns:
        (page ids int64, float32 exact scores), best first, ties by lower page id.
    """
    q = check_query(query, vectors.dim)
    with _one_thread():
        return _two_stage(q, k, stage, vectors, depth, allowed, codes, code_depth)


def _one_thread():
    """Hold BLAS and OpenMP (faiss) to one thread while a query runs: its products are small, and
    on the 2-core machine their thread hand-offs cost more than they gain (measured 3x slower with
    2 threads each under load; bench_scale.py)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()  # scanning the loaded libraries once (it takes ms)
        except ImportError:  # threadpoolctl comes with scikit-learn; without it, libraries keep their threads
            _CONTROLLER = False
    return _CONTROLLER.limit(limits=1) if _CONTROLLER else contextlib.nullcontext()


_CONTROLLER = None


def _two_stage(q, k, stage, vectors, depth, allowed, codes=None, code_depth=0):
    depth = max(int(depth), int(k))
    want = max(depth, int(code_depth)) if codes is not None else depth
    while True:
        cand = stage.candidates(q, want)
        if allowed is not None:
            cand = cand[np.isin(cand, np.fromiter(allowed, dtype=np.int64))]
        if allowed is None or len(cand) >= k or want >= len(stage):
            break
        want = want * 4
    if codes is not None and len(cand) > depth:
        cand = codes.best(q, cand, depth)
    ids, bits, offsets = vectors.read(np.sort(cand))  # sorted ids: ties break by lower id
    scores = score_bits(q, bits, offsets)  # exhaustive search's kernel and arithmetic
    best, values = top_k_of(scores, int(k))
    return ids[best], values
