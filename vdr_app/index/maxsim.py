"""Late-interaction (MaxSim) search over one view of the store: an in-memory index and top-k.

MaxSim score of a page for a query:

    score(page) = sum over query tokens t of  max over the page's vectors v of  dot(t, v)

Public API:

    index = MaxSimIndex(pages)          # pages: iterable of (n_i, d) float arrays; n_i may differ
                                        # (0 allowed); a generator is consumed page by page
    len(index), index.n_vectors         # pages N, stored vectors V
    index.dim, index.dtype, index.lengths  # d; "bfloat16" | "float16"; int64 (N,) vectors per page
    index.nbytes                        # bytes held by the packed vectors and page offsets
    index.scores(query)                 # query (q, d) -> float32 (N,)
    index.top_k(query, k)               # -> (int64 (k',), float32 (k',)), k' = min(k, N), best
                                        #    first, equal scores in ascending page index
    index.add(pages)                    # append pages; they get indices N, N+1, ...
    index.remove(indices)               # delete pages; later pages move down (like `del list[i]`),
                                        #    so the caller deletes the same positions from its ids
    index.shrink()                      # drop spare capacity left by add()
    index.page_vectors(i)               # float32 (n_i, d): page i exactly as it is scored
    top_k_of(scores, k)                 # the same top-k on any score vector

Design (figures: benchmarks/bench_search.py; ../shared/notes/search-performance.md):

* Storage: one packed (V, d) array of half-precision bits (uint16; numpy has no bfloat16) plus
  page offsets (N + 1,): half the bytes of float32, no padding. **bfloat16 by default**: widening
  it to float32 is exact and is a 16-bit integer shift, which numpy runs at memory speed (~16 ns
  per 128-d vector per core), whereas numpy's own float16 -> float32 cast costs ~2 ns per value
  (~260 ns per vector, over twice the whole kernel). bfloat16 keeps 8 significant bits (relative
  rounding <= 2**-8); the ColPali-family encoders compute in bfloat16 anyway. `dtype="float16"`
  keeps 11 bits (<= 2**-11, 8x finer; bit-identical to the float16 store) and is widened exactly
  by integer ops too (~31 ns per vector), about 10-15 % slower overall. Vectors are rounded to nearest-even
  once, when added; `page_vectors` returns what is stored.
* Arithmetic: the query stays float32 and every product and sum is float32. Pages are widened in
  page-aligned blocks of about BLOCK_VECTORS vectors into per-thread float32 buffers, multiplied
  by one BLAS sgemm per block ((n, d) @ (d, q) -> (n, q)), and reduced with
  `np.maximum.reduceat` over the block's page starts (faster here than reshape(...).max(1), so
  equal-length and ragged pages share one path). Scores equal a float32 per-page loop over the
  stored vectors up to float32 summation order.
* Padding-safe: each page's max runs over exactly its own rows, so a page whose dot products are
  all negative keeps its negative score (colpali-engine's zero padding raises such maxima to 0).
* Threads: blocks are handed out dynamically to one worker thread per usable CPU, pinned to it
  (numpy releases the GIL in every call of the loop), with BLAS held to one thread per worker
  while the query runs (via `threadpoolctl`, which the dependency tree installs; without it the
  kernel runs on the calling thread and BLAS keeps its own threads, which busy-wait during the
  numpy reductions). Queries are serialised process-wide, since one
  already uses every core; calls on one index are serialised with its updates.
* A page with no vectors scores -inf (the max over an empty set) and ranks last.
* Cost (2-vCPU Zen 4 project machine, 20-token query): ~115-120 ns of CPU per stored vector (sgemm
  ~70, widening ~25, reduceat ~15), near-linear on 2 cores: 10,000 pages x 115 vectors in ~72 ms,
  x 1030 in ~0.7 s; 1.4-2x faster than maxsim-cpu / fast-maxsim and 2.3-8x faster than
  colpali-engine's score_multi_vector on the same values.
* Updates: `add` writes pages straight into the packed array, growing it geometrically in place
  (ndarray.resize -> realloc/mremap, no second copy); `remove` compacts in place and releases
  the freed tail. The constructor leaves no spare capacity.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import InvalidQueryError

logger = logging.getLogger(__name__)

# Vectors per block. The block's float32 copy (BLOCK_VECTORS * d * 4 bytes = 2 MiB at d = 128) and
# its (n, q) similarities stay in the per-core L2/L3 while sgemm and reduceat read them; tuned on
# the 2-core project machine (benchmarks/bench_search.py --tune-blocks).
BLOCK_VECTORS = 4096
# Growth factor of the packed array in `add`; rows moved at a time in `remove`.
_GROWTH = 1.5
_MOVE_ROWS = 1 << 16

_KERNEL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None
_POOL_THREADS = 1
_BLAS = None  # threadpoolctl.ThreadpoolController, False when threadpoolctl is unavailable
_SLOT_BUFFERS: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per participant of a query


# --------------------------------------------------------------------------------------------------
# half-precision bits <-> float32
# --------------------------------------------------------------------------------------------------

DTYPES = ("bfloat16", "float16")
_F16_EXP_MASK = np.int32(~0x70000000)  # clears the 3 sign-extension bits that land in the exponent
_F16_SCALE = np.float32(2.0**112)  # float32 exponent bias 127 minus float16 bias 15


def _round_bits(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round float32 values to `dtype` (nearest, ties to even) and return the raw bits.

    Args:
        x: float32 array of any shape, finite.
        dtype: "bfloat16" or "float16".

    Returns:
        uint16 array of the same shape.
    """
    if dtype == "float16":
        with np.errstate(over="ignore"):  # out-of-range values become inf; the caller rejects them
            return x.astype(np.float16).view(np.uint16)
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    # Round to nearest even on the 16 dropped bits: add 0x7FFF plus the lowest kept bit.
    rounded = u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def _widen_into(bits: np.ndarray, out: np.ndarray, dtype: str) -> None:
    """Write the float32 values of half-precision `bits` into `out` (exact; no numpy float16 cast).

    numpy's float16 -> float32 cast costs ~2 ns per value on the project machine, more than the
    whole kernel budget; integer ops run at memory speed.

    Args:
        bits: uint16 (n, d) bit patterns of finite values.
        out: float32 (n, d), C-contiguous.
        dtype: "bfloat16" or "float16".
    """
    if dtype == "bfloat16":
        # bfloat16 is the high half of a float32.
        u = out.view(np.uint32)
        np.copyto(u, bits)
        np.left_shift(u, 16, out=u)
        return
    # float16 s|eeeee|mmmmmmmmmm: sign-extend to int32 and shift so the mantissa lines up with
    # float32's; the sign lands in bit 31 (sign extension also sets bits 28-30, cleared by the
    # mask) and the exponent in bits 23-27. Multiplying by 2**112 rebiases the exponent, exactly,
    # and also turns float16 subnormals (float32 subnormals at this point) into normal values.
    i = out.view(np.int32)
    np.copyto(i, bits.view(np.int16))
    np.left_shift(i, 13, out=i)
    np.bitwise_and(i, _F16_EXP_MASK, out=i)
    np.multiply(out, _F16_SCALE, out=out)


# --------------------------------------------------------------------------------------------------
# the index
# --------------------------------------------------------------------------------------------------


class MaxSimIndex:
    """Packed half-precision multi-vector index scored by MaxSim (see the module docstring).

    Args:
        pages: iterable of float arrays (n_i, d), one per page; n_i may differ and may be 0.
        dim: vector dimension d. Needed only to fix d for an index created without pages
            (otherwise taken from the first page).
        dtype: storage precision, "bfloat16" (default, fastest) or "float16" (8x finer rounding,
            ~15 % slower; holds exactly what the float16 store holds).

    Raises:
        ValueError: unknown dtype; a page is not 2-D, has another dimension than the others (or
            `dim`), or holds NaN / infinite values (or values beyond float16's range).
    """

    def __init__(self, pages: Iterable[np.ndarray] = (), *, dim: int | None = None, dtype: str = "bfloat16") -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self._dtype = dtype
        self._dim: int | None = int(dim) if dim is not None else None
        if self._dim is not None and self._dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self._bits = np.empty((0, self._dim or 0), dtype=np.uint16)  # (capacity, d) half bits
        self._n_vectors = 0
        self._offsets = np.zeros(1, dtype=np.int64)  # (N + 1,) start of each page in _bits
        self._plan: list[_Block] | None = None
        self._lock = threading.RLock()  # guards the arrays against concurrent add/remove/scores
        self.add(pages)
        self.shrink()  # a freshly built index holds no spare capacity

    # ---- size and memory -------------------------------------------------------------------

    def __len__(self) -> int:
        return self._offsets.shape[0] - 1

    @property
    def dim(self) -> int | None:
        """Vector dimension d, or None for an index that has never seen a page or a `dim`."""
        return self._dim

    @property
    def dtype(self) -> str:
        """Storage precision: "bfloat16" or "float16"."""
        return self._dtype

    @property
    def lengths(self) -> np.ndarray:
        """int64 (N,): number of vectors of each page."""
        return np.diff(self._offsets)

    @property
    def n_vectors(self) -> int:
        """Total number of stored vectors V."""
        return self._n_vectors

    @property
    def nbytes(self) -> int:
        """Bytes of memory held: packed vectors (spare capacity included) plus page offsets."""
        return int(self._bits.nbytes + self._offsets.nbytes)

    def page_vectors(self, i: int) -> np.ndarray:
        """float32 (n_i, d): page i's vectors as stored (rounded to `dtype`), i.e. what is scored."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"page index {i} out of range for an index of {n} pages")
        i %= n
        with self._lock:
            bits = self._bits[self._offsets[i] : self._offsets[i + 1]]
            out = np.empty(bits.shape, dtype=np.float32)
            _widen_into(bits, out, self._dtype)
        return out

    def __repr__(self) -> str:
        return (
            f"MaxSimIndex(pages={len(self)}, vectors={self._n_vectors}, dim={self._dim}, "
            f"dtype={self._dtype}, nbytes={self.nbytes})"
        )

    # ---- updates ---------------------------------------------------------------------------

    def add(self, pages: Iterable[np.ndarray]) -> None:
        """Append pages; they get indices len(self), len(self) + 1, ... in order.

        Pages are rounded and written straight into the packed array one at a time, so any
        iterable (a generator over a store, say) is consumed without holding a second copy.

        Args:
            pages: iterable of float arrays (n_i, d).

        Raises:
            ValueError: as for the constructor. Nothing is added when any page is invalid.
        """
        with self._lock:
            dim_before, row, lengths = self._dim, self._n_vectors, []
            try:
                for j, page in enumerate(pages):
                    bits = self._round_page(page, len(self) + j)
                    n = bits.shape[0]
                    if row + n > self._bits.shape[0]:
                        self._reserve(max(row + n, int(self._bits.shape[0] * _GROWTH)), used=row)
                    self._bits[row : row + n] = bits
                    row += n
                    lengths.append(n)
            except BaseException:
                if not len(self):
                    self._dim = dim_before  # an invalid first page does not fix the dimension
                raise
            if lengths:
                self._offsets = np.concatenate([self._offsets, self._offsets[-1] + np.cumsum(lengths, dtype=np.int64)])
                self._n_vectors = row
                self._plan = None

    def _reserve(self, capacity: int, used: int) -> None:
        """Resize the packed array to `capacity` rows, keeping its first `used` rows.

        ndarray.resize reallocates (mremap for large arrays: no copy, no second buffer). It is safe
        here because no view of `_bits` outlives a call holding `_lock`.
        """
        if self._bits.shape[0] == 0 or not self._bits.flags.owndata:
            grown = np.empty((capacity, self._bits.shape[1]), dtype=np.uint16)
            grown[:used] = self._bits[:used]
            self._bits = grown
        else:
            self._bits.resize((capacity, self._bits.shape[1]), refcheck=False)

    def shrink(self) -> None:
        """Release spare capacity (left by `add`), so `nbytes` is exactly the stored vectors."""
        with self._lock:
            if self._bits.shape[0] > self._n_vectors:
                self._reserve(self._n_vectors, used=self._n_vectors)

    def remove(self, indices: Iterable[int] | np.ndarray) -> None:
        """Delete pages; the remaining pages keep their order, so later indices move down.

        Args:
            indices: page indices to delete (duplicates allowed, negative indices count from the
                end as in Python).

        Raises:
            IndexError: an index is out of range (nothing is removed).
        """
        with self._lock:
            keep = kept_pages(indices, len(self))
            if keep is None:
                return
            lengths = np.diff(self._offsets)
            # Move each run of kept pages down over the removed ones, in place, in chunks so an
            # overlapping move never needs a temporary copy larger than a chunk.
            write = 0
            edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
            for start, stop in zip(edges[::2], edges[1::2]):
                v0, v1 = int(self._offsets[start]), int(self._offsets[stop])
                if v0 != write:
                    for c in range(v0, v1, _MOVE_ROWS):
                        rows = min(_MOVE_ROWS, v1 - c)
                        self._bits[write + c - v0 : write + c - v0 + rows] = self._bits[c : c + rows]
                write += v1 - v0
            self._n_vectors = write
            self._offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
            self._plan = None
            self.shrink()

    def _round_page(self, page: np.ndarray, position: int) -> np.ndarray:
        """Validate one page and return its uint16 (n, d) bits in the storage dtype."""
        arr = np.asarray(page)
        if arr.ndim != 2:
            raise ValueError(f"page {position} must have shape (n, d), got {arr.shape}")
        if self._dim is None:
            if arr.shape[1] == 0:
                raise ValueError(f"page {position} has dimension 0")
            self._dim = int(arr.shape[1])
            self._bits = np.empty((0, self._dim), dtype=np.uint16)
        if arr.shape[1] != self._dim:
            raise ValueError(f"page {position} has dimension {arr.shape[1]}, the index has {self._dim}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ValueError(f"page {position} holds NaN or infinite values")
        bits = _round_bits(arr, self._dtype)
        if self._dtype == "float16" and not np.isfinite(bits.view(np.float16)).all():
            raise ValueError(f"page {position} has values beyond float16's range (max |x| {np.abs(arr).max():.4g})")
        return bits

    # ---- search ----------------------------------------------------------------------------

    def scores(self, query: np.ndarray) -> np.ndarray:
        """MaxSim score of every page.

        Args:
            query: float (q, d) query token vectors, q >= 1.

        Returns:
            float32 (N,): score of page i at position i; -inf for pages without vectors.

        Raises:
            InvalidQueryError (a ValueError): the query is not (q, d) with q >= 1 and the index's
                d, or holds NaN / infinite values.
        """
        q = check_query(query, self._dim)
        with self._lock:
            return score_bits(q, self._bits, self._offsets, self._dtype, self._get_plan())

    def top_k(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best pages, best first; equal scores are ordered by lower page index first.

        Args:
            query: float (q, d).
            k: number of pages wanted, >= 0.

        Returns:
            (indices int64 (k',), scores float32 (k',)) with k' = min(k, N).

        Raises:
            ValueError: k < 0; InvalidQueryError as for `scores`.
        """
        if int(k) != k or k < 0:
            raise ValueError(f"k must be a non-negative integer, got {k}")
        return top_k_of(self.scores(query), int(k))

    def _get_plan(self) -> list[_Block]:
        if self._plan is None:
            self._plan = _make_plan(self._offsets, BLOCK_VECTORS)
        return self._plan


def score_bits(query: np.ndarray, bits: np.ndarray, offsets: np.ndarray, dtype: str = "bfloat16",
               plan: list[_Block] | None = None) -> np.ndarray:
    """float32 MaxSim of pages packed as half-precision bits (V, d) uint16 with offsets (n + 1,),
    by `MaxSimIndex`'s kernel (its blocks, its threads, its arithmetic: the scores equal
    `MaxSimIndex.scores` of the same pages up to float32 rounding where the blocks differ); -inf for
    pages without vectors. query: float32 (q, d), checked."""
    out = np.full(len(offsets) - 1, -np.inf, dtype=np.float32)
    if bits.shape[0]:
        plan = _make_plan(np.asarray(offsets, np.int64), BLOCK_VECTORS) if plan is None else plan
        run_kernel(_score_blocks, (bits, dtype, np.ascontiguousarray(query.T)), plan, out)
    return out


def check_query(query: np.ndarray, dim: int | None) -> np.ndarray:
    """The query as C-contiguous float32 (q, d); InvalidQueryError for a wrong shape, a dimension
    other than the index's `dim` (None: any), or NaN/infinite values."""
    q = np.asarray(query)
    if q.ndim != 2 or q.shape[0] == 0:
        raise InvalidQueryError(f"query must have shape (q, d) with q >= 1, got {q.shape}")
    if dim is not None and q.shape[1] != dim:
        raise InvalidQueryError(f"query has dimension {q.shape[1]}, the index has {dim}")
    q = np.ascontiguousarray(q, dtype=np.float32)
    if not np.isfinite(q).all():
        raise InvalidQueryError("query holds NaN or infinite values")
    return q


def kept_pages(indices: Iterable[int] | np.ndarray, n: int) -> np.ndarray | None:
    """bool (n,): the pages that stay after removing `indices` (negative ones count from the end);
    None when there is nothing to remove. IndexError for an index out of range."""
    idx = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices), dtype=np.int64).reshape(-1)
    bad = idx[(idx < -n) | (idx >= n)]
    if bad.size:
        raise IndexError(f"page index {int(bad[0])} out of range for an index of {n} pages")
    if idx.size == 0:
        return None
    keep = np.ones(n, dtype=bool)
    keep[idx % n] = False
    return keep


def top_k_of(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k of a score vector, best first, ties broken by lower index.

    Args:
        scores: float (N,), no NaN.
        k: >= 0.

    Returns:
        (indices int64 (min(k, N),), scores float32 (min(k, N),)).
    """
    scores = np.asarray(scores, dtype=np.float32)
    n = scores.shape[0]
    k = min(k, n)
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    if k < n:
        # Every page scoring at least the k-th best value: ties at the cut are all candidates, so
        # the index tie-break below decides among them (argpartition would pick arbitrarily).
        kth = np.partition(scores, n - k)[n - k]
        cand = np.flatnonzero(scores >= kth)
    else:
        cand = np.arange(n)
    order = np.lexsort((cand, -scores[cand]))[:k]
    best = cand[order].astype(np.int64)
    return best, scores[best]


# --------------------------------------------------------------------------------------------------
# kernel
# --------------------------------------------------------------------------------------------------


class _Block:
    """Consecutive pages [p0, p1) holding vectors [v0, v1) of the packed array.

    Attributes:
        starts: intp (m,) start of each non-empty page, relative to v0 (reduceat segments).
        dest: slice(p0, p1) when no page in the block is empty, else int64 (m,) page indices.
    """

    __slots__ = ("dest", "p0", "p1", "starts", "v0", "v1")

    def __init__(self, p0: int, p1: int, offsets: np.ndarray) -> None:
        self.p0, self.p1 = p0, p1
        self.v0, self.v1 = int(offsets[p0]), int(offsets[p1])
        starts = offsets[p0:p1]
        nonempty = np.diff(offsets[p0 : p1 + 1]) > 0
        if nonempty.all():
            self.dest: slice | np.ndarray = slice(p0, p1)
        else:
            self.dest = p0 + np.flatnonzero(nonempty)
            starts = starts[nonempty]
        self.starts = (starts - self.v0).astype(np.intp)


def _make_plan(offsets: np.ndarray, block_vectors: int) -> list[_Block]:
    """Greedy page-aligned blocks of at most `block_vectors` vectors (one larger page alone)."""
    n = offsets.shape[0] - 1
    blocks = []
    p0 = 0
    while p0 < n:
        p1 = int(np.searchsorted(offsets, offsets[p0] + block_vectors, side="right")) - 1
        p1 = min(max(p1, p0 + 1), n)
        if offsets[p1] > offsets[p0]:  # skip runs of empty pages: their score stays -inf
            blocks.append(_Block(p0, p1, offsets))
        p0 = p1
    return blocks


def _usable_cpus(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> tuple[list[int], int]:
    """(CPUs this process may run on, how many of them it may use at once).

    The second number is lower than the first's length when a cgroup CPU quota (a container
    limit such as Docker's --cpus) caps the process below the CPUs it can see.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = list(range(os.cpu_count() or 1))
    usable = len(cpus)
    try:
        with open(cpu_max) as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            usable = min(usable, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus, max(1, usable)


def _blas_controller():
    """threadpoolctl's controller, or None when threadpoolctl is not installed."""
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        except ImportError:
            # Without it BLAS keeps its own threads, which busy-wait while numpy reduces: slower,
            # and much slower on a loaded host. threadpoolctl comes with scikit-learn.
            logger.warning(
                "threadpoolctl is not installed: MaxSim search runs on one thread (pip install threadpoolctl)"
            )
            _BLAS = False
    return _BLAS or None


def _pool() -> tuple[ThreadPoolExecutor, int]:
    """The process-wide worker threads and their number (created on first use).

    One worker per usable CPU. When the process may use every CPU it sees, worker i is pinned to
    the i-th of them: right after an idle spell Linux tends to wake a worker on the CPU of the
    thread that woke it, and on the project's 2-vCPU VM the two then shared one CPU for most of
    a 10-20 ms query (measured: 15 ms unpinned vs 10 ms pinned for 1,000 x 115 vectors).
    """
    global _POOL, _POOL_THREADS
    if _POOL is None:
        cpus, usable = _usable_cpus()
        pin = usable == len(cpus) and usable > 1
        slots = itertools.count()

        def pin_worker() -> None:
            if pin:
                try:
                    os.sched_setaffinity(0, {cpus[next(slots) % usable]})  # 0 = this thread
                except OSError:  # affinity changed meanwhile: run unpinned
                    pass

        _POOL = ThreadPoolExecutor(max_workers=usable, thread_name_prefix="maxsim", initializer=pin_worker)
        _POOL_THREADS = usable
    return _POOL, _POOL_THREADS


def _buffers(slot: int, rows: int, dim: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Participant `slot`'s float32 block buffer (rows, dim) and flat similarity buffer (rows * q,).

    Kept between queries (no page faults per query); safe to share because `_KERNEL_LOCK` lets one
    query run at a time and each participant of a query has its own slot.
    """
    bufs = _SLOT_BUFFERS.get(slot)
    if bufs is None or bufs[0].shape[0] < rows or bufs[0].shape[1] != dim or bufs[1].shape[0] < rows * q:
        bufs = (np.empty((rows, dim), dtype=np.float32), np.empty(rows * q, dtype=np.float32))
        _SLOT_BUFFERS[slot] = bufs
    return bufs


def claimed_blocks(plan: list[_Block], ticket):
    """The blocks of `plan` this participant draws from `ticket` (a counter shared by all the
    participants of one query: atomic under the GIL, so blocks are handed out dynamically)."""
    n_blocks = len(plan)
    while (i := next(ticket)) < n_blocks:
        yield plan[i]


def write_page_sums(best: np.ndarray, axis: int, block: _Block, out: np.ndarray) -> None:
    """out[block's pages] = best (pages and query tokens on two axes) summed over `axis` (the tokens)."""
    if isinstance(block.dest, slice):
        np.sum(best, axis=axis, out=out[block.dest])
    else:
        out[block.dest] = best.sum(axis=axis)


def _score_blocks(args, plan: list[_Block], out: np.ndarray, ticket, slot: int) -> None:
    """Score the blocks this worker draws from `ticket` (a kernel of `run_kernel`).

    Args:
        args: (bits uint16 (V, d) packed half-precision bits, their format "bfloat16" or
            "float16", qT float32 (d, q) C-contiguous transposed query).
        plan: the blocks.
        out: float32 (N,) scores, written at each block's pages.
        ticket: iterator of block numbers shared by all participants of this query.
        slot: this participant's number (0 = the calling thread), selects its buffers.
    """
    bits, dtype, qT = args
    dim, q = qT.shape
    rows = max(b.v1 - b.v0 for b in plan)
    xbuf, sbuf = _buffers(slot, rows, dim, q)
    for b in claimed_blocks(plan, ticket):
        n = b.v1 - b.v0
        x = xbuf[:n]
        _widen_into(bits[b.v0 : b.v1], x, dtype)
        sims = sbuf[: n * q].reshape(n, q)
        np.matmul(x, qT, out=sims)  # (n, d) @ (d, q) -> (n, q), float32 sgemm
        # (pages, q): max over exactly each page's rows; (n, q) row order makes the sgemm ~2x
        # faster than (q, n), and reduceat beats reshape(...).max(1) even for equal lengths.
        best = np.maximum.reduceat(sims, b.starts, axis=0)
        write_page_sums(best, 1, b, out)


def run_kernel(kernel, args, plan: list[_Block], out: np.ndarray) -> None:
    """Score every block of `plan` into `out` on all usable cores: `kernel(args, plan, out, ticket,
    slot)` runs on each participant and draws its blocks from the shared `ticket`."""
    with _KERNEL_LOCK:
        ticket = itertools.count()
        blas = _blas_controller()
        if blas is None:
            kernel(args, plan, out, ticket, 0)
            return
        pool, threads = _pool()
        # One BLAS thread per worker: BLAS's own threads would oversubscribe the cores (and they
        # busy-wait while numpy reduces).
        with blas.limit(limits=1, user_api="blas"):
            if threads == 1 or len(plan) == 1:
                kernel(args, plan, out, ticket, 0)
                return
            # The calling thread only waits, so that exactly one (pinned) worker runs per CPU.
            futures = [pool.submit(kernel, args, plan, out, ticket, i) for i in range(threads)]
            for f in futures:
                f.result()


__all__ = ["BLOCK_VECTORS", "DTYPES", "MaxSimIndex", "top_k_of"]
