"""A token-level first stage: candidates from the query's tokens, not from one summary per page.

    stage = TokenStage(dim=128)
    stage.expect(n_vectors)                 # size the centroids for the whole view (optional)
    stage.add(page_ids, packed, offsets)    # assign every vector to its centroid (incremental)
    stage.remove(page_ids)
    stage.candidates(query, n)              # -> int64 page ids, the n best by centroid score

Why: a page summary (MUVERA's 1,024 values, the mean vector) has to stand for every query at once,
and at 100k-1M pages it leaves 10-50 % of the exact top 10 outside the best 1,000 candidates
(docs/scale.md). Here every stored vector keeps its identity, reduced to the nearest of K
centroids (PLAID, Santhanam et al. 2022: "centroid interaction"; WARP's missing-similarity
imputation, Scheerer et al. 2025):

1. **Centroids**: two-level k-means (k1 coarse cells x k2 centroids inside each; K = k1 * k2,
   about 16 sqrt(vectors), PLAID's rule). Assigning a vector costs k1 + k2 dot products instead
   of K, which is what makes 115M vectors assignable on 2 cores.
2. **Inverted lists**: centroid -> the page slots of the vectors assigned to it (int32, 4 bytes a
   stored vector: 460 MB at 1M pages x 115; no vector values are held).
3. **Query**: each query token j probes its `nprobe` best centroids (found through its best
   coarse cells). A page's approximate score is sum over j of the best centroid score q_j . c it
   holds among j's probed centroids, or, when it holds none, the lowest probed score (an upper
   bound of what it could have: WARP's imputation). The `n` best approximate scores are the
   candidates; the exact MaxSim over their vectors (`first_stage.two_stage_top_k`) ranks them.

Adds assign the new vectors with the trained centroids and append them to the lists (a pending
block merged in linear time, no re-sort); removals mark the page's slot dead, and the lists are
compacted when a quarter of the slots are dead. Centroids are not retrained as the view grows:
reload the view when it has grown many times over. Recall and speed against MUVERA:
benchmarks/bench_scale.py (`--kinds tokens`), docs/scale.md.
"""

from __future__ import annotations

import threading

import numpy as np

# Below this many vectors the stage holds pages untrained and offers every page as a candidate
# (the exact stage then scores them all: a few thousand pages at most).
MIN_TRAIN_VECTORS = 50_000
TRAIN_PER_CENTROID = 16  # sample vectors per centroid when training (faiss warns below 39; enough here)
COARSE_PROBE = 8  # coarse cells searched per query token for its nearest centroids
DEFAULT_NPROBE = 64  # centroids probed per query token (1M x 115, depth 1000: 64 recalls 0.93, 32 0.91)


def centroid_count(n_vectors: int) -> tuple[int, int]:
    """(k1, k2): powers of two with k1 * k2 about PLAID's 16 sqrt(vectors), k1 <= k2."""
    target = max(256, 16 * np.sqrt(max(n_vectors, 1)))
    bits = int(np.floor(np.log2(target)))
    return 1 << (bits // 2), 1 << (bits - bits // 2)


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k centroids (float32, unit rows) of the rows of x (spherical k-means, faiss)."""
    import faiss

    if len(x) <= k:  # fewer points than centroids: every point is one, the rest repeat them
        reps = np.resize(np.arange(len(x)), k)
        return np.ascontiguousarray(x[reps], dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=12, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=256)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return km.centroids.astype(np.float32)


class TokenStage:
    """Centroid-interaction candidates over every stored vector (see the module docstring).

    Args:
        dim: the pages' vector dimension.
        nprobe: centroids probed per query token (more: higher recall, slower).
        min_train_vectors: vectors to hold before the centroids are trained.
    """

    kind = "tokens"

    def __init__(self, dim: int, nprobe: int | None = None, min_train_vectors: int = MIN_TRAIN_VECTORS,
                 seed: int = 0) -> None:
        self.dim, self.seed = int(dim), int(seed)
        self.nprobe = DEFAULT_NPROBE if nprobe is None else int(nprobe)
        self.min_train_vectors = int(min_train_vectors)
        self._expected = 0
        self._coarse: np.ndarray | None = None  # (k1, d)
        self._fine: np.ndarray | None = None  # (k1, k2, d)
        self._untrained: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (slots, packed, offsets)
        self._slot_page = np.empty(0, np.int64)  # slot -> page id
        self._alive = np.empty(0, bool)
        self._slots = 0
        self._page_slot: dict[int, int] = {}
        self._dead = 0
        self._lists = np.empty(0, np.int32)  # slots sorted by centroid ...
        self._starts = np.zeros(1, np.int64)  # ... centroid c owns _lists[_starts[c]:_starts[c + 1]]
        self._pending_leaf: list[np.ndarray] = []  # (centroid, slot) of vectors added since the last merge
        self._pending_slot: list[np.ndarray] = []
        self._pending = 0
        self._lock = threading.Lock()

    # -- size and description -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._page_slot)

    @property
    def trained(self) -> bool:
        return self._coarse is not None

    @property
    def n_centroids(self) -> int:
        return 0 if self._fine is None else self._fine.shape[0] * self._fine.shape[1]

    @property
    def n_entries(self) -> int:
        """Vectors held in the lists (dead pages' included until the lists are compacted)."""
        return len(self._lists) + self._pending

    @property
    def nbytes(self) -> int:
        """Bytes held: the lists, the centroids, the slot tables (untrained pages' vectors too)."""
        held = self._lists.nbytes + self._starts.nbytes + self._pending * 8
        held += 0 if self._fine is None else self._fine.nbytes + self._coarse.nbytes
        held += self._slot_page.nbytes + self._alive.nbytes + len(self._page_slot) * 100  # dict entries
        return int(held + sum(p.nbytes for _, p, _ in self._untrained))

    @property
    def state(self) -> str:
        if not self.trained:
            return "untrained (every page is a candidate)"
        k1, k2 = self._fine.shape[:2]
        return f"{self.n_centroids} centroids ({k1} x {k2}), nprobe {self.nprobe}"

    def describe(self) -> str:
        return f"token centroids, {self.state}, {len(self)} pages"

    def set_nprobe(self, nprobe: int) -> None:
        with self._lock:
            self.nprobe = int(nprobe)

    def expect(self, n_vectors: int) -> None:
        """Size the centroids for a view of about n_vectors (a bulk load knows its size)."""
        self._expected = int(n_vectors)

    # -- training and assignment ----------------------------------------------------------------

    def train(self, sample: np.ndarray, expected_vectors: int = 0) -> None:
        """Train the centroids on a sample of vectors (spread over the view), sized for
        `expected_vectors` (default: what `expect` said, or the sample's size)."""
        with self._lock:
            self._train(np.asarray(sample, np.float32), expected_vectors or self._expected or len(sample))

    def _train(self, sample: np.ndarray, expected: int) -> None:
        k1, k2 = centroid_count(expected)
        rng = np.random.default_rng(self.seed)
        if len(sample) > k1 * k2 * TRAIN_PER_CENTROID:
            sample = sample[np.sort(rng.choice(len(sample), k1 * k2 * TRAIN_PER_CENTROID, replace=False))]
        coarse = _kmeans(sample, k1, self.seed)
        cell = np.argmax(sample @ coarse.T, axis=1)
        fine = np.empty((k1, k2, self.dim), np.float32)
        for c in range(k1):
            members = sample[cell == c]
            fine[c] = _kmeans(members if len(members) else coarse[c:c + 1], k2, self.seed + 1 + c)
        self._coarse, self._fine = coarse, fine
        self._starts = np.zeros(k1 * k2 + 1, np.int64)
        waiting, self._untrained = self._untrained, []
        for slots, packed, offsets in waiting:
            self._assign(slots, packed, offsets)

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Centroid of each row of x (int32): its best coarse cell, then its best centroid there."""
        x = np.asarray(x, np.float32)
        k2 = self._fine.shape[1]
        leaf = np.empty(len(x), np.int32)
        for s in range(0, len(x), 65_536):  # blocks keep the (block, k1) product small
            block = x[s:s + 65_536]
            cell = np.argmax(block @ self._coarse.T, axis=1)
            order = np.argsort(cell, kind="stable")
            bounds = np.searchsorted(cell[order], np.arange(self._coarse.shape[0] + 1))
            out = np.empty(len(block), np.int32)
            for c in np.flatnonzero(np.diff(bounds)):
                rows = order[bounds[c]:bounds[c + 1]]
                out[rows] = c * k2 + np.argmax(block[rows] @ self._fine[c].T, axis=1)
            leaf[s:s + len(block)] = out
        return leaf

    def _assign(self, slots: np.ndarray, packed: np.ndarray, offsets: np.ndarray) -> None:
        lengths = np.diff(offsets)
        self._pending_leaf.append(self.assign(packed))
        self._pending_slot.append(np.repeat(slots, lengths).astype(np.int32))
        self._pending += int(lengths.sum())
        if self._pending >= max(1_000_000, len(self._lists)):  # merges double: linear total cost
            self._merge()

    def _merge(self) -> None:
        """Fold the pending vectors into the lists: only the pending block is sorted by centroid;
        every held entry's new place is computed (linear in the lists' size, no re-sort)."""
        if not self._pending:
            return
        leaf = np.concatenate(self._pending_leaf)
        slot = np.concatenate(self._pending_slot)
        self._pending_leaf, self._pending_slot, self._pending = [], [], 0
        order = np.argsort(leaf, kind="stable")
        k = len(self._starts) - 1
        add_counts = np.bincount(leaf, minlength=k).astype(np.int64)
        old_counts = np.diff(self._starts)
        starts = np.concatenate([[0], np.cumsum(old_counts + add_counts)])
        out = np.empty(int(starts[-1]), np.int32)
        if len(self._lists):
            shift = np.repeat(starts[:-1] - self._starts[:-1], old_counts)
            out[np.arange(len(self._lists)) + shift] = self._lists
        add_starts = np.concatenate([[0], np.cumsum(add_counts)])
        shift = np.repeat(starts[:-1] + old_counts - add_starts[:-1], add_counts)
        out[np.arange(len(leaf)) + shift] = slot[order]
        self._lists, self._starts = out, starts

    # -- pages ----------------------------------------------------------------------------------

    def add(self, page_ids, packed: np.ndarray, offsets: np.ndarray) -> None:
        """Add pages (vectors packed[offsets[i]:offsets[i+1]] for page_ids[i]); a page added again
        replaces its old vectors."""
        ids = np.asarray(page_ids, dtype=np.int64)
        if not ids.size:
            return
        packed = np.asarray(packed, np.float32)
        offsets = np.asarray(offsets, np.int64)
        with self._lock:
            self._forget(ids)
            slots = np.arange(self._slots, self._slots + len(ids), dtype=np.int64)
            self._grow(self._slots + len(ids))
            self._slot_page[slots] = ids
            self._alive[slots] = True
            self._slots += len(ids)
            self._page_slot.update(zip(ids.tolist(), slots.tolist()))
            if self.trained:
                self._assign(slots, packed, offsets)
                return
            self._untrained.append((slots, packed[offsets[0]:offsets[-1]].copy(), offsets - offsets[0]))
            held = sum(len(p) for _, p, _ in self._untrained)
            if held >= self.min_train_vectors:
                self._train(np.concatenate([p for _, p, _ in self._untrained]), max(self._expected, held))

    def _grow(self, n: int) -> None:
        if n > len(self._slot_page):
            size = max(n, 2 * len(self._slot_page), 1024)
            self._slot_page = np.resize(self._slot_page, size)
            self._alive = np.concatenate([self._alive, np.zeros(size - len(self._alive), bool)])

    def remove(self, page_ids) -> None:
        ids = np.asarray(list(page_ids) if not isinstance(page_ids, np.ndarray) else page_ids, dtype=np.int64)
        with self._lock:
            self._forget(ids)
            if self._dead > max(64, self._slots // 4):
                self._compact()

    def _forget(self, ids: np.ndarray) -> None:
        for pid in ids.tolist():
            slot = self._page_slot.pop(pid, None)
            if slot is not None:
                self._alive[slot] = False
                self._dead += 1

    def _compact(self) -> None:
        """Drop dead slots' entries from the lists (and untrained pages' buffers)."""
        self._merge()
        if len(self._lists):
            keep = self._alive[self._lists]
            k = len(self._starts) - 1
            owner = np.repeat(np.arange(k, dtype=np.int32), np.diff(self._starts))
            self._starts = np.concatenate([[0], np.cumsum(np.bincount(owner[keep], minlength=k))]).astype(np.int64)
            self._lists = self._lists[keep]
        self._dead = 0

    # -- search ---------------------------------------------------------------------------------

    def candidates(self, query: np.ndarray, n: int) -> np.ndarray:
        """int64 page ids of the n pages with the best approximate (centroid) scores."""
        if n <= 0 or not len(self):
            return np.empty(0, dtype=np.int64)
        with self._lock:
            if self.trained:
                self._merge()
            if not self.trained or n >= len(self):
                slots = np.flatnonzero(self._alive[:self._slots])
                if self.trained and len(slots) > 0:
                    total = self._scores(np.asarray(query, np.float32))
                    slots = slots[np.argsort(-total[slots], kind="stable")]
                return self._slot_page[slots]
            total = self._scores(np.asarray(query, np.float32))
            total[:self._slots][~self._alive[:self._slots]] = -np.inf
            touched = int(np.count_nonzero(total > 0))
            n = min(n, max(touched, 1))
            best = np.argpartition(-total, n - 1)[:n] if n < len(total) else np.arange(len(total))
            best = best[np.argsort(-total[best], kind="stable")]
            return self._slot_page[best[self._alive[best]]]

    def probe(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(centroids (q, nprobe) int64, their scores (q, nprobe) float32) for each query token,
        best first: its nearest centroids among its COARSE_PROBE best coarse cells."""
        k1, k2 = self._fine.shape[:2]
        cells = min(COARSE_PROBE, k1)
        coarse = query @ self._coarse.T
        top_cells = np.argpartition(-coarse, cells - 1, axis=1)[:, :cells] if cells < k1 else \
            np.broadcast_to(np.arange(k1), (len(query), k1))
        # (q, cells * k2) scores of the centroids inside each token's best cells: one small product
        # per cell, over the tokens that need it (all tokens against every needed cell costs 20x the
        # arithmetic; indexing the (k1, k2, d) table per token would copy tens of MB)
        fine = np.empty((len(query) * cells, k2), np.float32)
        flat = top_cells.ravel()
        order = np.argsort(flat, kind="stable")
        for group in np.split(order, np.flatnonzero(np.diff(flat[order])) + 1):
            fine[group] = query[group // cells] @ self._fine[flat[group[0]]].T
        fine = fine.reshape(len(query), -1)
        ids = (top_cells[:, :, None] * k2 + np.arange(k2)).reshape(len(query), -1)
        p = min(self.nprobe, fine.shape[1])
        pick = np.argpartition(-fine, p - 1, axis=1)[:, :p]
        scores = np.take_along_axis(fine, pick, axis=1)
        order = np.argsort(-scores, axis=1)
        return np.take_along_axis(ids[np.arange(len(query))[:, None], pick], order, axis=1), \
            np.take_along_axis(scores, order, axis=1)

    def _scores(self, query: np.ndarray) -> np.ndarray:
        """Per slot: sum over query tokens of (best probed centroid score it holds - the token's
        lowest probed score), >= 0; 0 for pages in none of the probed lists (their imputed score)."""
        total = np.zeros(max(self._slots, 1), np.float32)
        best = np.zeros_like(total)
        centroids, scores = self.probe(query)
        for ids, s in zip(centroids, scores):
            gain = s - s[-1]  # over the imputed value; the last probed centroid adds nothing
            ids, gain = ids[:-1], gain[:-1]
            first, last = self._starts[ids], self._starts[ids + 1]
            if not (last - first).any():
                continue
            # the probed lists are slices of one array: joined, not indexed entry by entry
            slots = np.concatenate([self._lists[a:b] for a, b in zip(first.tolist(), last.tolist())])
            np.maximum.at(best, slots, np.repeat(gain, last - first))  # per slot its best probed centroid
            total += best  # one dense pass: cheaper than gathering and scattering every entry
            best[slots] = 0
        return total
