"""The middle stage of two-stage search: every page's vectors as low-bit codes in RAM.

    codes = PageCodes(dim=128)                 # int2 rotated codes (36 bytes a vector at d = 128)
    codes.add(page_ids, packed, offsets)       # quantise and keep (a page added again is replaced)
    codes.remove(page_ids)
    codes.best(query, candidates, keep)        # -> the `keep` best candidates by their codes
    codes.scores(query, page_ids)              # -> (kept ids, float32 quantised MaxSim)

Why: the token first stage scores a page by its centroids, and at 1M pages the pages around a
query differ by less than a centroid can tell, so the exact top 10 hides deep in its ranking.
Reading 4x more candidates from disk costs 4x the reads; scoring them by their codes, in RAM,
costs ~40 ms per 4,000 pages of 115 vectors, and the codes rank almost as the vectors do: on 40k
recombined pages the int2 top 200 of every page held the whole exact top 10 (1.00), where the
centroids' top 200 held 0.88 (benchmarks/bench_two_stage_parts.py codes, docs/scale.md). So: the
first stage hands `code_depth` candidates to the codes, the codes keep the best `depth`, and only
those are read from disk and scored exactly.

Storage is append-only like `VectorFile`: rows appended, a page id maps to (first row, count),
removal forgets the page and the arrays are compacted when a quarter of the rows are dead. The
scores are `QuantisedMaxSimIndex`'s (`score_codes`: the same kernels).
"""

from __future__ import annotations

import threading

import numpy as np

from ..quantise import packed_width, quantise_rotated
from .maxsim_quantised import score_codes
from .page_rows import locate, packed_rows

DEFAULT_KIND = "int2"  # 36 bytes a vector at d = 128 (codes and a scale): 4.0 GiB at 1M x 115; int4: 68
# Vectors whose codes one query scores at most (4,000 pages of 115: ~40 ms on the 2-core machine)
MAX_VECTORS = 460_000
_GROWTH = 1.5


class PageCodes:
    """Low-bit codes of every page's vectors, scored for a few candidate pages at a time.

    Args:
        dim: the vectors' dimension.
        kind: "int2" or "int4" (rotated codes, `vdr_app.quantise`).
    """

    def __init__(self, dim: int, kind: str = DEFAULT_KIND) -> None:
        self.dim, self.kind = int(dim), kind
        self._codes = np.empty((0, packed_width(self.dim, kind)), np.uint8)
        self._scales = np.empty(0, np.float32)
        self._rows = 0
        self._dead = 0
        self._where: dict[int, tuple[int, int]] = {}  # page id -> (first row, vector count)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, page_id: int) -> bool:
        return int(page_id) in self._where

    @property
    def nbytes(self) -> int:
        return int(self._codes[:self._rows].nbytes + self._scales[:self._rows].nbytes + len(self._where) * 100)

    def describe(self) -> str:
        return f"{self.kind} codes, {len(self)} pages, {self.nbytes / 2**20:.0f} MiB"

    def add(self, page_ids, packed: np.ndarray, offsets: np.ndarray) -> None:
        """Quantise and keep pages (vectors packed[offsets[i]:offsets[i+1]] for page_ids[i])."""
        ids = np.asarray(page_ids, dtype=np.int64)
        offsets = np.asarray(offsets, np.int64)
        if not ids.size:
            return
        codes, scales = quantise_rotated(np.asarray(packed[offsets[0]:offsets[-1]], np.float32), self.kind)
        with self._lock:
            self._forget(ids)
            need = self._rows + len(codes)
            if need > len(self._codes):
                self._resize(max(need, int(len(self._codes) * _GROWTH)))
            self._codes[self._rows:need] = codes
            self._scales[self._rows:need] = scales
            starts = self._rows + offsets[:-1] - offsets[0]
            self._where.update(zip(ids.tolist(), zip(starts.tolist(), np.diff(offsets).tolist())))
            self._rows = need

    def remove(self, page_ids) -> None:
        with self._lock:
            self._forget(np.asarray(list(page_ids) if not isinstance(page_ids, np.ndarray) else page_ids, np.int64))
            if self._dead > max(64, self._rows // 4):  # a quarter dead: compaction costs amortise
                self._compact()

    def best(self, query: np.ndarray, page_ids, keep: int, max_vectors: int = MAX_VECTORS) -> np.ndarray:
        """The `keep` best of page_ids (candidates, best first) by their codes, among the longest
        prefix of the held ones that holds at most `max_vectors` vectors (and at least `keep`
        pages): the middle stage's cost stays the same whether pages hold 115 vectors or 1,030.
        Ties: the earlier candidate."""
        page_ids = np.asarray(page_ids, np.int64)
        if len(page_ids) <= keep:
            return page_ids
        held, approx = self._scores(query, page_ids, keep, max_vectors)
        return held[np.argsort(-approx, kind="stable")[:keep]]

    def scores(self, query: np.ndarray, page_ids) -> tuple[np.ndarray, np.ndarray]:
        """(kept page ids int64, float32 quantised MaxSim of each), in the given order; ids not
        held are left out. query: float32 (q, d), checked by the caller."""
        return self._scores(query, page_ids)

    def _scores(self, query: np.ndarray, page_ids, min_pages: int = 0,
                max_vectors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`scores` of the held pages among page_ids, cut (with max_vectors) to the longest prefix
        of at most max_vectors vectors and at least min_pages pages: one lookup of each page."""
        with self._lock:
            ids, starts, offsets = locate(self._where, page_ids)
            if max_vectors is not None:
                n = max(int(min_pages), int(np.searchsorted(offsets[1:], max_vectors, side="right")))
                ids, starts, offsets = ids[:n], starts[:n], offsets[:n + 1]
            rows = packed_rows(starts, offsets)
            codes, scales = self._codes[rows], self._scales[rows]  # copies: safe after the lock
        return ids, score_codes(query, self.kind, self.dim, codes, scales, offsets)

    def _forget(self, ids: np.ndarray) -> None:
        for pid in ids.tolist():
            held = self._where.pop(pid, None)
            if held is not None:
                self._dead += held[1]

    def _resize(self, capacity: int) -> None:
        codes = np.empty((capacity, self._codes.shape[1]), np.uint8)
        codes[:self._rows] = self._codes[:self._rows]
        scales = np.empty(capacity, np.float32)
        scales[:self._rows] = self._scales[:self._rows]
        self._codes, self._scales = codes, scales

    def _compact(self) -> None:
        """Keep only held pages' rows (in their order in the arrays)."""
        held = sorted(self._where.items(), key=lambda item: item[1][0])
        ids, starts, offsets = locate(dict(held), [pid for pid, _ in held])
        rows = packed_rows(starts, offsets)
        self._codes, self._scales = self._codes[rows], self._scales[rows]
        self._rows, self._dead = len(rows), 0
        self._where = {pid: (int(s), int(n)) for pid, s, n in zip(ids.tolist(), offsets[:-1].tolist(),
                                                                    np.diff(offsets).tolist())}
