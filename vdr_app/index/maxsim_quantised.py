"""MaxSim over quantised views (int8, int4, int2 or binary codes) with exact rescoring of the top candidates.

Public API (the same shape as `vdr_app.index.maxsim.MaxSimIndex`):

    index = QuantisedMaxSimIndex(pages, kind="int8" | "int4" | "int2" | "binary", dim=d)
                                        # pages: iterable of vdr_app.quantise.QuantisedVectors
    len(index), index.n_vectors, index.dim, index.kind, index.lengths, index.nbytes
    index.scores(query)                 # query float (q, d) -> float32 (N,) quantised scores
                                        # (int8: the query is quantised too, see Scores)
    index.top_k(query, k, rescore=N, float_pages=fn)
                                        # quantised top max(N, k) re-scored exactly with
                                        # fn(positions) -> float pages, then the best k
    index.add(pages), index.remove(indices), index.shrink(), index.page_codes(i)
    exact_scores(query, pages)          # float32 MaxSim of float pages (the rescoring kernel)

Scores:

* int8: the query is quantised per token the same way as the pages (symmetric int8, scale =
  max|t| / 127), and a token t and vector v score (t_scale * v_scale) * (t_codes . v_codes): for a
  block of codes one exact int8 x int8 -> int32 product (`torch._int_mm` through
  `vdr_app.index.int8_matmul`, int8 VNNI on x86: ~2x faster than float32 sgemm) gives the (q, n) dot
  products, converted to float32 and multiplied by each vector's scale; then the page max
  (`np.maximum.reduceat`), each token's scale and the sum over tokens. Scores equal a float64
  loop over the dequantised query tokens and the dequantised codes up to float32 rounding.
  Fallback (torch not importable, `_int_mm` unsupported or failing, or `int_mm=False`): the
  float32 query against the dequantised codes, i.e. the codes cast to float32 per block and one
  sgemm; scores then equal a float loop over `dequantise_int8` with the float query. Either way,
  rescoring is exact float.
* int4 / int2 (rotated codes, vdr_app.quantise): the query tokens are rotated by the same
  `rotation(d)` and quantised to int8 as above; each block's packed codes are unpacked to their
  int8 levels 2u - (2^b - 1) (shift and mask per byte plane, into reused buffers:
  `quantise.unpack_levels`), and the rest is the int8 kernel: one exact `_int_mm` product, the vector scales,
  page max, token scales, sum. Scores equal a float64 loop over the dequantised query tokens
  (rotated, int8, rotated back) and the dequantised codes, up to float32 rounding. Fallback as for
  int8: the rotated float32 query against the levels cast to float32.
* binary: the query tokens are binarised the same way as the pages (sign bits, packed), and a
  token t and vector v score (d - 2 * popcount(t XOR v)) / d, the cosine of the two ±1 vectors
  (= their dot product / d), exactly. The XOR and popcount (`np.bitwise_count`) run on the packed
  words (8, 4, 2 or 1 bytes: the widest that divides the row), the page max is a minimum of
  Hamming distances (`np.minimum.reduceat` on small integers), so no float vector of the view is
  ever built. This is the Hamming first phase of Vespa's ColPali recipe and Qdrant's binary
  quantisation (both binarise the query too).
* Pages without vectors score -inf, as in `MaxSimIndex`; each page's max runs over exactly its
  own rows (padding-safe on ragged pages).

Rescoring: `top_k(..., rescore=N)` takes the quantised top max(N, k), asks `float_pages` for
those pages' float vectors (the engine rebuilds them from the stored full embeddings and the
view's groups, so no float copy of the view stays in RAM) and re-scores them exactly in float32;
the k best of those are returned with their exact scores. N = 0: quantised scores only.

Threads and blocking are those of `vdr_app.index.maxsim` (the same pinned worker pool, one query at a
time per process, BLAS held to one thread per worker). With the torch kernel each worker calls
`_int_mm` on its own blocks (torch's intra-op threads left as they are): measured faster than
one call per large block from the calling thread with torch's threads, whose numpy steps then
run on one core.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from . import int8_matmul
from ..quantise import (
    QUANTISERS, ROTATED, QuantisedVectors, packed_width, quantise_binary, quantise_int8, rotate, unpack_levels,
)
from .maxsim import (
    _Block,
    _make_plan,
    check_query,
    claimed_blocks,
    kept_pages,
    run_kernel,
    top_k_of,
    write_page_sums,
)

# Vectors per block. int8: the float32 copy of a block (4096 x 128 x 4 = 2 MiB) as in
# search.BLOCK_VECTORS. binary: BINARY_BLOCK_BYTES of packed codes per block (16,384 vectors at
# d = 128), large enough that the ~5 numpy calls per block cost little per vector; its XOR
# buffer is q times the block (5 MiB for a 20-token query). Tuned with bench_quantised.py.
INT8_BLOCK_VECTORS = 4096
# int8 with torch._int_mm: no float copy of the block, only its int32 and float32 (q, n)
# similarities (1.3 MiB each for a 20-token query); 16,384 vectors measured fastest (4,096: ~25%
# slower, 32,768: no better).
INT8_MM_BLOCK_VECTORS = 16384
BINARY_BLOCK_BYTES = 1 << 18
_GROWTH = 1.5
_SLOTS: dict[tuple[str, int], tuple[np.ndarray, ...]] = {}  # per participant of a query, kept between queries


def _word_dtype(row_bytes: int) -> np.dtype:
    """The widest unsigned integer whose size divides a packed row (so rows view as whole words)."""
    for size, dtype in ((8, np.uint64), (4, np.uint32), (2, np.uint16)):
        if row_bytes % size == 0:
            return np.dtype(dtype)
    return np.dtype(np.uint8)


def binarise_query(query: np.ndarray) -> np.ndarray:
    """Packed sign bits of the query tokens: uint8 (q, ceil(d/8)), as `quantise_binary`."""
    return quantise_binary(query)


class QuantisedMaxSimIndex:
    """Packed int8 or binary multi-vector index scored by MaxSim (see the module docstring).

    Args:
        pages: iterable of QuantisedVectors (one per page, same kind and dim; n may be 0).
        kind: "int8", "int4", "int2" or "binary".
        dim: the vectors' dimension d before quantisation.
        int_mm: int8, int4, int2: score with the int8-quantised query through `int8_matmul` when
            it is available (False: always the float-query numpy path).

    Raises:
        ValueError: unknown kind, a page of another kind or dimension.
    """

    def __init__(self, pages: Iterable[QuantisedVectors] = (), *, kind: str, dim: int, int_mm: bool = True) -> None:
        if kind not in QUANTISERS:
            raise ValueError(f"kind must be one of {QUANTISERS}, got {kind!r}")
        if int(dim) <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self._kind, self._dim = kind, int(dim)
        self._int_mm = bool(int_mm)  # int8/int4/int2: the int8-query torch kernel when available, else numpy
        self._scaled = kind != "binary"  # one float32 scale per vector
        if kind == "int8":
            width = self._dim
        elif kind in ROTATED:
            width = packed_width(self._dim, kind)
        else:
            width = (self._dim + 7) // 8
        self._codes = np.empty((0, width), dtype=np.int8 if kind == "int8" else np.uint8)
        self._scales = np.empty(0, dtype=np.float32)  # int8, int4, int2
        self._n_vectors = 0
        self._offsets = np.zeros(1, dtype=np.int64)
        self._plans: dict[int, list[_Block]] = {}  # block size -> plan
        self._lock = threading.RLock()
        self.add(pages)
        self.shrink()

    # ---- size and memory -------------------------------------------------------------------

    def __len__(self) -> int:
        return self._offsets.shape[0] - 1

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self._offsets)

    @property
    def n_vectors(self) -> int:
        return self._n_vectors

    @property
    def nbytes(self) -> int:
        """Bytes held: codes, scales (int8, int4, int2), page offsets (spare capacity included)."""
        return int(self._codes.nbytes + self._scales.nbytes + self._offsets.nbytes)

    def page_codes(self, i: int) -> QuantisedVectors:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"page index {i} out of range for an index of {n} pages")
        i %= n
        with self._lock:
            a, b = self._offsets[i], self._offsets[i + 1]
            scales = self._scales[a:b].copy() if self._scaled else None
            return QuantisedVectors(self._kind, self._dim, self._codes[a:b].copy(), scales)

    def __repr__(self) -> str:
        return (f"QuantisedMaxSimIndex(kind={self._kind}, pages={len(self)}, vectors={self._n_vectors}, "
                f"dim={self._dim}, nbytes={self.nbytes})")

    # ---- updates ---------------------------------------------------------------------------

    def _check_page(self, page: QuantisedVectors, position: int) -> None:
        if not isinstance(page, QuantisedVectors):
            raise ValueError(f"page {position} must be QuantisedVectors, got {type(page).__name__}")
        if page.kind != self._kind or page.dim != self._dim:
            raise ValueError(f"page {position} is {page.kind} at d={page.dim}, the index holds {self._kind} at "
                             f"d={self._dim}")
        if page.codes.ndim != 2 or page.codes.shape[1] != self._codes.shape[1]:
            raise ValueError(f"page {position} has codes {page.codes.shape}, expected (n, {self._codes.shape[1]})")
        if self._scaled and (page.scales is None or page.scales.shape != (page.codes.shape[0],)):
            raise ValueError(f"page {position} needs one scale per vector")

    def add(self, pages: Iterable[QuantisedVectors]) -> None:
        """Append pages (indices len(self), len(self) + 1, ...); nothing is added if one is invalid."""
        with self._lock:
            row, lengths = self._n_vectors, []
            for j, page in enumerate(pages):
                self._check_page(page, len(self) + j)
                n = page.n
                if row + n > self._codes.shape[0]:
                    self._reserve(max(row + n, int(self._codes.shape[0] * _GROWTH)), used=row)
                self._codes[row : row + n] = page.codes
                if self._scaled:
                    self._scales[row : row + n] = page.scales
                row += n
                lengths.append(n)
            if lengths:
                self._offsets = np.concatenate([self._offsets, self._offsets[-1] + np.cumsum(lengths, dtype=np.int64)])
                self._n_vectors = row
                self._plans = {}

    def _reserve(self, capacity: int, used: int) -> None:
        codes = np.empty((capacity, self._codes.shape[1]), dtype=self._codes.dtype)
        codes[:used] = self._codes[:used]
        self._codes = codes
        if self._scaled:
            scales = np.empty(capacity, dtype=np.float32)
            scales[:used] = self._scales[:used]
            self._scales = scales

    def shrink(self) -> None:
        with self._lock:
            if self._codes.shape[0] > self._n_vectors:
                self._reserve(self._n_vectors, used=self._n_vectors)

    def remove(self, indices: Iterable[int] | np.ndarray) -> None:
        """Delete pages; later pages move down (IndexError for an out-of-range index)."""
        with self._lock:
            keep = kept_pages(indices, len(self))
            if keep is None:
                return
            lengths = np.diff(self._offsets)
            rows = np.repeat(keep, lengths)  # (V,) rows of kept pages
            self._codes = self._codes[: self._n_vectors][rows]
            if self._scaled:
                self._scales = self._scales[: self._n_vectors][rows]
            self._n_vectors = int(rows.sum())
            self._offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
            self._plans = {}

    # ---- search ----------------------------------------------------------------------------

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Quantised MaxSim of every page: float32 (N,), -inf for pages without vectors."""
        q = check_query(query, self._dim)
        with self._lock:
            return score_codes(q, self._kind, self._dim, self._codes, self._scales, self._offsets,
                               self._get_plan, self._int_mm)

    def top_k(self, query: np.ndarray, k: int, rescore: int = 0,
              float_pages: Callable[[np.ndarray], Sequence[np.ndarray]] | None = None,
              positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k best pages, best first (ties: lower index first).

        Args:
            query: float (q, d).
            k: pages wanted, >= 0.
            rescore: re-score the quantised top max(rescore, k) exactly (0: no rescoring).
            float_pages: positions int64 (c,) -> c float arrays (n_i, d): those pages' float
                vectors (required when rescore > 0).
            positions: only these page positions compete (a document filter); None: all.

        Returns:
            (indices int64 (k',), scores float32 (k',)): exact scores for rescored pages.
        """
        if int(k) != k or k < 0:
            raise ValueError(f"k must be a non-negative integer, got {k}")
        if int(rescore) != rescore or rescore < 0:
            raise ValueError(f"rescore must be a non-negative integer, got {rescore}")
        scores = self.scores(query)
        pool = np.arange(len(self)) if positions is None else np.asarray(positions, dtype=np.int64)
        if rescore == 0 or k == 0:
            best, values = top_k_of(scores[pool], int(k))
            return pool[best], values
        if float_pages is None:
            raise ValueError("rescoring needs float_pages")
        best, _ = top_k_of(scores[pool], max(int(rescore), int(k)))
        cand = pool[best]
        exact = exact_scores(query, float_pages(cand))
        order, values = top_k_of(exact, int(k))  # ties: the quantised order, i.e. lower index among equals
        return cand[order], values

    def _get_plan(self, size: int | None = None) -> list[_Block]:
        size = _block_size(self._kind, self._codes.shape[1]) if size is None else size
        plan = self._plans.get(size)
        if plan is None:
            plan = self._plans[size] = _make_plan(self._offsets, size)
        return plan


def _block_size(kind: str, width: int) -> int:
    """Vectors per block of the numpy kernels (the torch ones take INT8_MM_BLOCK_VECTORS)."""
    return max(1, BINARY_BLOCK_BYTES // width) if kind == "binary" else INT8_BLOCK_VECTORS


def score_codes(q: np.ndarray, kind: str, dim: int, codes: np.ndarray, scales: np.ndarray, offsets: np.ndarray,
                plan_for: Callable[[int], list[_Block]] | None = None, int_mm: bool = True) -> np.ndarray:
    """Quantised MaxSim of pages packed as codes (V, w) (+ scales (V,) but for binary) with offsets
    (n + 1,): float32 (n,), -inf for pages without vectors. The kernels of the module docstring;
    plan_for(block vectors) gives the blocks (default: made here). q: float32 (q, d), checked."""
    out = np.full(len(offsets) - 1, -np.inf, dtype=np.float32)
    if not offsets[-1]:
        return out
    plan_for = plan_for or (lambda size: _make_plan(np.asarray(offsets, np.int64), size))

    def numpy_plan() -> list[_Block]:
        return plan_for(_block_size(kind, codes.shape[1]))

    if kind == "int8" and int_mm and int8_matmul.available(dim):
        qcodes, qscales = quantise_int8(q)
        try:
            run_kernel(_score_int8_mm, (codes, scales, qcodes, qscales), plan_for(INT8_MM_BLOCK_VECTORS), out)
        except RuntimeError:  # torch's kernel failed at this size: the numpy path
            run_kernel(_score_int8, (codes, scales, q), numpy_plan(), out)
    elif kind == "int8":
        run_kernel(_score_int8, (codes, scales, q), numpy_plan(), out)
    elif kind in ROTATED:
        # int4 / int2: the rotated query (padded with zeros to the codes' padded width) against
        # the unpacked levels, through int_mm with the int8 query when available
        padded = codes.shape[1] * (8 // ROTATED[kind])
        q_rot = np.zeros((q.shape[0], padded), dtype=np.float32)
        q_rot[:, :dim] = rotate(q)  # dot products kept: R R^T = I
        if int_mm and int8_matmul.available(padded):
            qcodes, qscales = quantise_int8(q_rot)
            try:
                run_kernel(_score_rotated_mm, (codes, scales, qcodes, qscales, kind),
                           plan_for(INT8_MM_BLOCK_VECTORS), out)
                return out
            except RuntimeError:  # torch's kernel failed at this size: the numpy path
                pass
        run_kernel(_score_rotated, (codes, scales, q_rot, kind), numpy_plan(), out)
    else:
        word = _word_dtype(codes.shape[1])
        qcodes = np.ascontiguousarray(binarise_query(q)).view(word)  # (q, words)
        run_kernel(_score_binary, (codes, qcodes, word, dim), numpy_plan(), out)
    return out


def exact_scores(query: np.ndarray, pages: Sequence[np.ndarray]) -> np.ndarray:
    """float32 MaxSim of a few float pages (the rescoring step): (len(pages),), -inf for empty pages.

    One sgemm per page ((q, d) @ (d, n_i)), its max over the page's vectors and the sum over
    tokens, all float32: the same arithmetic as a plain loop (no packed copy of the candidates).
    """
    q = np.ascontiguousarray(query, dtype=np.float32)
    out = np.full(len(pages), -np.inf, dtype=np.float32)
    for i, page in enumerate(pages):
        if len(page):
            out[i] = (q @ np.asarray(page, dtype=np.float32).T).max(axis=1).sum()  # (q, n) -> (q,) -> ()
    return out


# --------------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------------


def _slot(name: str, slot: int, shapes: tuple[tuple[tuple[int, ...], np.dtype], ...]) -> tuple[np.ndarray, ...]:
    """Participant `slot`'s buffers for one kernel, reused between queries (no page faults per query)."""
    key = (name, slot)
    bufs = _SLOTS.get(key)
    if bufs is None or any(b.dtype != dt or b.size < int(np.prod(shape)) for b, (shape, dt) in zip(bufs, shapes)):
        bufs = tuple(np.empty(int(np.prod(shape)), dtype=dt) for shape, dt in shapes)
        _SLOTS[key] = bufs
    return bufs


def _score_int8(args, plan: list[_Block], out: np.ndarray, ticket, slot: int) -> None:
    """int8 blocks: cast to float32, one sgemm, scale each vector's column, page max, sum over tokens.

    The similarities are laid out (q, n) (query @ block.T): on the project machine the sgemm costs
    the same either way, while the per-vector scaling and the page max along the long axis cost
    2-3x less than on an (n, q) layout (benchmarks/bench_quantised.py --profile).
    """
    codes, scales, q32 = args
    q, dim = q32.shape
    rows = max(b.v1 - b.v0 for b in plan)
    xflat, sflat = _slot("int8", slot, (((rows, dim), np.dtype(np.float32)), ((q, rows), np.dtype(np.float32))))
    for b in claimed_blocks(plan, ticket):
        n = b.v1 - b.v0
        x = xflat[: n * dim].reshape(n, dim)
        np.copyto(x, codes[b.v0 : b.v1], casting="unsafe")  # int8 -> float32, exact
        sims = sflat[: q * n].reshape(q, n)
        np.matmul(q32, x.T, out=sims)  # (q, d) @ (d, n) -> (q, n)
        np.multiply(sims, scales[b.v0 : b.v1], out=sims)  # scale_i * (t . codes_i)
        best = np.maximum.reduceat(sims, b.starts, axis=1)  # (q, pages)
        write_page_sums(best, 0, b, out)


def _score_int8_mm(args, plan: list[_Block], out: np.ndarray, ticket, slot: int) -> None:
    """int8 blocks against the int8 query: one exact int32 product per block (torch._int_mm),
    to float32, scale each vector's column, page max, scale each token's row, sum over tokens.

    The token scales are applied after the page max (max commutes with a non-negative factor),
    on (q, pages) instead of (q, n).
    """
    codes, scales, qcodes, qscales = args
    q = qcodes.shape[0]
    rows = max(b.v1 - b.v0 for b in plan)
    (sflat,) = _slot("int8mm", slot, (((q, rows), np.dtype(np.float32)),))
    qcol = qscales[:, None]  # (q, 1)
    for b in claimed_blocks(plan, ticket):
        n = b.v1 - b.v0
        dots = int8_matmul.int_mm(qcodes, codes[b.v0 : b.v1])  # int32 (q, n), exact
        sims = sflat[: q * n].reshape(q, n)
        np.copyto(sims, dots, casting="unsafe")  # int32 -> float32 (exact below 2**24)
        np.multiply(sims, scales[b.v0 : b.v1], out=sims)  # code_scale_i * (t_codes . codes_i)
        best = np.maximum.reduceat(sims, b.starts, axis=1)  # (q, pages)
        np.multiply(best, qcol, out=best)  # * token scale (>= 0)
        write_page_sums(best, 0, b, out)


def _score_rotated_mm(args, plan: list[_Block], out: np.ndarray, ticket, slot: int) -> None:
    """int4 / int2 blocks: unpack the codes to their int8 levels (shifts and masks), then the int8
    kernel (`_score_int8_mm`): exact int32 product with the int8 query, scales, page max, sum."""
    codes, scales, qcodes, qscales, kind = args
    q, padded = qcodes.shape
    rows = max(b.v1 - b.v0 for b in plan)
    width = codes.shape[1]
    lflat, uflat, sflat = _slot("rotmm", slot, (
        ((rows, padded), np.dtype(np.int8)), ((rows, width), np.dtype(np.uint8)), ((q, rows), np.dtype(np.float32)),
    ))
    qcol = qscales[:, None]  # (q, 1)
    for b in claimed_blocks(plan, ticket):
        n = b.v1 - b.v0
        levels = unpack_levels(codes[b.v0 : b.v1], kind, out=lflat[: n * padded].reshape(n, padded),
                               scratch=uflat[: n * width].reshape(n, width))
        dots = int8_matmul.int_mm(qcodes, levels)  # int32 (q, n), exact
        sims = sflat[: q * n].reshape(q, n)
        np.copyto(sims, dots, casting="unsafe")  # int32 -> float32 (exact below 2**24)
        np.multiply(sims, scales[b.v0 : b.v1], out=sims)
        best = np.maximum.reduceat(sims, b.starts, axis=1)  # (q, pages)
        np.multiply(best, qcol, out=best)  # * token scale (>= 0)
        write_page_sums(best, 0, b, out)


def _score_rotated(args, plan: list[_Block], out: np.ndarray, ticket, slot: int) -> None:
    """int4 / int2 blocks without the torch kernel: levels to float32, one sgemm with the rotated
    float query, scale each vector's column, page max, sum over tokens."""
    codes, scales, q_rot, kind = args
    q, padded = q_rot.shape
    rows = max(b.v1 - b.v0 for b in plan)
    width = codes.shape[1]
    lflat, uflat, xflat, sflat = _slot("rot", slot, (
        ((rows, padded), np.dtype(np.int8)), ((rows, width), np.dtype(np.uint8)),
        ((rows, padded), np.dtype(np.float32)), ((q, rows), np.dtype(np.float32)),
    ))
    for b in claimed_blocks(plan, ticket):
        n = b.v1 - b.v0
        levels = unpack_levels(codes[b.v0 : b.v1], kind, out=lflat[: n * padded].reshape(n, padded),
                               scratch=uflat[: n * width].reshape(n, width))
        x = xflat[: n * padded].reshape(n, padded)
        np.copyto(x, levels, casting="unsafe")  # int8 -> float32, exact
        sims = sflat[: q * n].reshape(q, n)
        np.matmul(q_rot, x.T, out=sims)
        np.multiply(sims, scales[b.v0 : b.v1], out=sims)
        best = np.maximum.reduceat(sims, b.starts, axis=1)
        write_page_sums(best, 0, b, out)


def _score_binary(args, plan: list[_Block], out: np.ndarray, ticket, slot: int) -> None:
    """binary blocks: XOR with every query token, popcount, sum over words, page min, to cosines.

    Layout (q, words, n): the block's words are transposed once (n x words, a few KB), so the XOR
    with each query word and the popcount run over long contiguous rows (one numpy call each for
    the whole block); an (n, q, words) broadcast has a 1-2 element inner loop and was 4-8x
    slower.
    """
    codes, qcodes, word, dim = args
    q, words = qcodes.shape
    rows = max(b.v1 - b.v0 for b in plan)
    tflat, xflat, cflat, hflat = _slot("binary", slot, (
        ((words, rows), word), ((q, words, rows), word), ((q, words, rows), np.dtype(np.uint8)),
        ((q, rows), np.dtype(np.uint16)),
    ))
    qcol = qcodes[:, :, None]  # (q, words, 1)
    for b in claimed_blocks(plan, ticket):
        n = b.v1 - b.v0
        t = tflat[: words * n].reshape(words, n)
        np.copyto(t, codes[b.v0 : b.v1].view(word).T)  # (words, n)
        x = xflat[: q * words * n].reshape(q, words, n)
        np.bitwise_xor(t[None], qcol, out=x)
        counts = cflat[: q * words * n].reshape(q, words, n)
        np.bitwise_count(x, out=counts)
        h = hflat[: q * n].reshape(q, n)  # Hamming distance of every (token, vector) pair
        if words == 1:
            np.copyto(h, counts[:, 0])
        else:
            np.add(counts[:, 0], counts[:, 1], out=h, dtype=np.uint16)
            for w in range(2, words):
                np.add(h, counts[:, w], out=h)
        nearest = np.minimum.reduceat(h, b.starts, axis=1)  # (q, pages): best match = fewest differing bits
        total = nearest.sum(axis=0, dtype=np.int64)  # sum over tokens of (d - 2 h) / d, exactly
        out[b.dest] = ((q * dim - 2 * total) / dim).astype(np.float32)


__all__ = ["BINARY_BLOCK_BYTES", "INT8_BLOCK_VECTORS", "INT8_MM_BLOCK_VECTORS",
           "QuantisedMaxSimIndex", "binarise_query", "exact_scores", "score_codes"]
