"""The embedded index: one `MaxSimIndex` per view in this process's RAM, updated in place.

A view is loaded from the store on its first search (as before). After that, adding a document
appends only its pages (`MaxSimIndex.add`), deleting one removes only its pages
(`MaxSimIndex.remove`, compaction in place), and adding or deleting a view touches only that
view: no write pays a full rebuild any more (figures: benchmarks/bench_index.py).

Each loaded view keeps, beside its index, the page id and document id at every position, so
search maps positions to pages and filters by document without asking the store.

A quantised view (`...@int8`, `...@int4`, `...@int2`, `...@binary`) is held as its codes in a
`maxsim_quantised.QuantisedMaxSimIndex`; rescoring rebuilds the float vectors of the candidates
from the store's full embeddings and the view's groups (`reduce.rebuild_vectors`), so no float
copy of such a view is kept in RAM.

Two-stage search (`search_mode`, Settings.search_mode): a float view loaded in two-stage mode
keeps no vectors in RAM; its pages' vectors go to a memory-mapped file and a first stage
(`token_stage.TokenStage`: each vector's centroid; or `first_stage.FirstStage`: one summary per
page) finds candidates; a search re-scores the first stage's `depth` candidates exactly
(`first_stage.two_stage_top_k`). "auto" uses it for views of at least `two_stage_min_vectors`
vectors. Adds and deletes update both in place, as for exhaustive views.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .maxsim import MaxSimIndex, top_k_of
from .maxsim_quantised import QuantisedMaxSimIndex
from ..store import Store
from ..types import Progress
from .base import IndexStatus, SearchIndex, SyncReport, ViewState
from .first_stage import DEFAULT_CODE_DEPTH, DEFAULT_DEPTH, FirstStage, VectorFile, make_first_stage, two_stage_top_k
from .page_codes import PageCodes
from .token_stage import TokenStage

SEARCH_MODES = ("exhaustive", "two-stage", "auto")
# auto: two-stage from this many stored vectors of a view on. Exhaustive MaxSim costs ~115 ns of CPU
# per stored vector on the 2-core machine (search-performance notes): 5M vectors (43k pages x 115,
# 4.9k x 1,030) is ~0.3 s per query, where two-stage answers in tens of ms (docs/scale.md).
TWO_STAGE_MIN_VECTORS = 5_000_000
LOAD_PAGES = 2048  # pages read from the store at a time when building a two-stage view
TOKEN_TRAIN_PAGES = 4096  # pages, spread over the view, whose vectors train a token stage's centroids

log = logging.getLogger(__name__)


@dataclass
class _View:
    page_ids: np.ndarray  # int64 (N,): page id at each index position
    doc_ids: np.ndarray  # int64 (N,): its document
    index: MaxSimIndex | QuantisedMaxSimIndex | None  # None while the view has no pages (or two-stage)
    shas: dict  # document id -> sha256 of what is held (ids are reused after deletes: see sync)
    stage: FirstStage | TokenStage | None = None  # two-stage views: the first stage ...
    vectors: VectorFile | None = None  # ... the pages' vectors on disk ...
    codes: PageCodes | None = None  # ... and, with a middle stage, their int2 codes in RAM

    @property
    def n_vectors(self) -> int:
        if self.vectors is not None:
            return self.vectors.n_vectors
        return self.index.n_vectors if self.index is not None else 0


class MemoryIndex(SearchIndex):
    """MaxSim by brute force over packed half-precision vectors (see `vdr_app.index.maxsim`).

    Args:
        store: the store to mirror.
        dtype: storage precision of the in-RAM copy ("bfloat16", the fast default, or "float16").
    """

    backend = "memory"

    def __init__(self, store: Store, dtype: str = "bfloat16", search_mode: str = "exhaustive",
                 depth: int = DEFAULT_DEPTH, two_stage_min_vectors: int = TWO_STAGE_MIN_VECTORS,
                 first_stage: str = "tokens", vectors_dir: str | Path | None = None,
                 code_depth: int = DEFAULT_CODE_DEPTH):
        super().__init__(store)
        if search_mode not in SEARCH_MODES:
            raise ValueError(f"search_mode must be one of {SEARCH_MODES}, got {search_mode!r}")
        self.dtype = dtype
        self.search_mode, self.depth = search_mode, int(depth)
        self.two_stage_min_vectors, self.first_stage_kind = int(two_stage_min_vectors), first_stage
        self.code_depth = int(code_depth)  # 0: no middle stage
        self._vectors_parent = vectors_dir
        self._vectors_dir: Path | None = None  # created on the first two-stage view, removed by close()
        self._file_numbers = itertools.count()
        self._views: dict[str, _View] = {}
        # One lock for loads, updates and searches: positions and ids must change together, and the
        # MaxSim kernel already runs one query at a time per process.
        self._lock = threading.RLock()

    @property
    def location(self) -> str:
        return "in-process"

    @property
    def loaded_views(self) -> list[str]:
        with self._lock:
            return list(self._views)

    # -- loading --------------------------------------------------------------------------------

    def _doc_of(self, page_ids: list[int]) -> np.ndarray:
        docs = dict(self.store.page_docs())
        return np.array([docs[p] for p in page_ids], dtype=np.int64)

    def _shas(self) -> dict:
        return self.store.document_shas()

    def _read(self, spec: str, page_ids: list[int] | None = None) -> tuple[list[int], list]:
        """(page ids, per-page vectors or codes) of a view, as its index takes them."""
        if self.store.view_quant(spec) is not None:
            return self.store.load_quantised(spec, page_ids)
        return self.store.load_vectors(spec, page_ids)

    def _new_index(self, spec: str, pages: list):
        quant = self.store.view_quant(spec)
        if quant is not None:
            return QuantisedMaxSimIndex(pages, kind=quant, dim=self.store.dim)
        return MaxSimIndex(pages, dtype=self.dtype)

    def _two_stage(self, spec: str) -> bool:
        """Whether a view is searched in two stages (quantised views are always exhaustive)."""
        if self.search_mode == "exhaustive" or self.store.view_quant(spec) is not None:
            return False
        return self.search_mode == "two-stage" or self.store_counts(spec)[1] >= self.two_stage_min_vectors

    def _vector_file(self, spec: str) -> VectorFile:
        if self._vectors_dir is None:
            parent = self._vectors_parent
            if parent is None and self.store.path not in (None, ":memory:"):
                parent = Path(self.store.path).parent  # on the store's disk, not a RAM-backed /tmp
            if parent is not None:
                Path(parent).mkdir(parents=True, exist_ok=True)
            self._vectors_dir = Path(tempfile.mkdtemp(prefix="vdr-two-stage-", dir=parent))
        return VectorFile(self._vectors_dir / f"view-{next(self._file_numbers)}.bf16", self.store.dim)

    def _load(self, spec: str) -> _View:
        view = self._views.get(spec)
        if view is None:
            if self._two_stage(spec):
                view = _View(np.empty(0, np.int64), np.empty(0, np.int64), None, self._shas(),
                             make_first_stage(self.first_stage_kind, self.store.dim), self._vector_file(spec),
                             PageCodes(self.store.dim) if self.code_depth else None)
                order = self.store.page_ids()
                if isinstance(view.stage, TokenStage):
                    self._train_token_stage(spec, view.stage, order)
                for start in range(0, len(order), LOAD_PAGES):  # never the whole view in RAM at once
                    self._append(spec, view, order[start:start + LOAD_PAGES])
            else:
                page_ids, vectors = self._read(spec)
                index = self._new_index(spec, vectors) if page_ids else None
                view = _View(np.array(page_ids, dtype=np.int64), self._doc_of(page_ids), index, self._shas())
            self._views[spec] = view
        return view

    def _train_token_stage(self, spec: str, stage: TokenStage, order: list[int]) -> None:
        """Train the centroids on pages spread over the whole view (the first pages of a store are
        often one document), sized for the view's vectors."""
        n_vectors = self.store_counts(spec)[1]
        stage.expect(n_vectors)
        if n_vectors < stage.min_train_vectors or not order:
            return  # trains itself once it holds enough vectors
        step = max(1, len(order) // TOKEN_TRAIN_PAGES)
        _, sample = self._read(spec, order[::step][:TOKEN_TRAIN_PAGES])
        if sample:
            stage.train(np.concatenate(sample).astype(np.float32), n_vectors)

    def _append(self, spec: str, view: _View, page_ids: list[int]) -> int:
        ids, vectors = self._read(spec, page_ids)
        if not ids:
            return 0
        if view.stage is not None:
            lengths = np.array([len(v) for v in vectors], dtype=np.int64)
            packed = (np.concatenate(vectors).astype(np.float32) if lengths.sum()
                      else np.empty((0, self.store.dim), np.float32))
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            view.vectors.append(ids, vectors)
            view.stage.add(ids, packed, offsets)
            if view.codes is not None:
                view.codes.add(ids, packed, offsets)
        elif view.index is None:
            view.index = self._new_index(spec, vectors)
        else:
            view.index.add(vectors)
        view.page_ids = np.concatenate([view.page_ids, np.array(ids, dtype=np.int64)])
        view.doc_ids = np.concatenate([view.doc_ids, self._doc_of(ids)])
        view.shas.update(self._shas())
        return len(ids)

    def _drop_positions(self, view: _View, positions: np.ndarray) -> int:
        if positions.size == 0:
            return 0
        if view.stage is not None:
            view.stage.remove(view.page_ids[positions])
            view.vectors.remove(view.page_ids[positions].tolist())
            if view.codes is not None:
                view.codes.remove(view.page_ids[positions])
        else:
            view.index.remove(positions)
        keep = np.ones(view.page_ids.shape[0], dtype=bool)
        keep[positions] = False
        view.page_ids, view.doc_ids = view.page_ids[keep], view.doc_ids[keep]
        return int(positions.size)

    # -- writes ---------------------------------------------------------------------------------

    def add_document(self, doc_id: int, progress: Progress | None = None) -> None:
        page_ids = [pid for pid, doc in self.store.page_docs() if doc == doc_id]
        with self._lock:
            for spec, view in list(self._views.items()):
                if view.doc_ids.size and (view.doc_ids == doc_id).any():
                    continue  # already there (a repeated call is a no-op)
                try:
                    self._append(spec, view, page_ids)
                except Exception:  # noqa: BLE001 - never serve a half-updated view: reload it on next use
                    log.exception("could not add document %s to the in-memory view %s; it reloads on next use",
                                  doc_id, spec)
                    self._forget(spec)

    def remove_document(self, doc_id: int) -> None:
        with self._lock:
            for view in self._views.values():
                self._drop_positions(view, np.flatnonzero(view.doc_ids == doc_id))
                view.shas.pop(doc_id, None)

    def _forget(self, spec: str) -> None:
        view = self._views.pop(spec, None)
        if view is not None and view.vectors is not None:
            view.vectors.close(delete=True)

    def add_view(self, spec: str, progress: Progress | None = None) -> None:
        with self._lock:
            self._forget(spec)  # (re)loaded from the store on its first search

    def remove_view(self, spec: str) -> None:
        with self._lock:
            self._forget(spec)

    def close(self) -> None:
        with self._lock:
            for spec in list(self._views):
                self._forget(spec)
            if self._vectors_dir is not None:
                shutil.rmtree(self._vectors_dir, ignore_errors=True)
                self._vectors_dir = None

    # -- search ---------------------------------------------------------------------------------

    def top_k(self, spec: str, query: np.ndarray, k: int, doc_ids: Iterable[int] | None = None,
              rescore: int = 0) -> list[tuple[int, float]]:
        with self._lock:
            view = self._load(spec)
            if view.stage is not None:
                allowed = (None if doc_ids is None else
                           set(view.page_ids[np.isin(view.doc_ids, np.fromiter(doc_ids, dtype=np.int64))].tolist()))
                if not len(view.stage) or allowed == set():
                    return []
                ids, scores = two_stage_top_k(query, k, view.stage, view.vectors, self.depth, allowed,
                                              view.codes, self.code_depth)
                return [(int(p), float(s)) for p, s in zip(ids, scores)]
            if view.index is None:
                return []
            # Positions of the filtered documents' pages (None: every page competes).
            allowed = (None if doc_ids is None else
                       np.flatnonzero(np.isin(view.doc_ids, np.fromiter(doc_ids, dtype=np.int64))))
            if isinstance(view.index, QuantisedMaxSimIndex):
                page_ids = view.page_ids
                positions, scores = view.index.top_k(
                    query, k, rescore, lambda cand: self.float_view_pages(spec, page_ids[cand]), positions=allowed)
            elif allowed is None:
                positions, scores = view.index.top_k(query, k)
            else:
                best, scores = top_k_of(view.index.scores(query)[allowed], k)
                positions = allowed[best]
            return [(int(view.page_ids[p]), float(s)) for p, s in zip(positions, scores)]

    # -- bookkeeping ----------------------------------------------------------------------------

    def status(self) -> IndexStatus:
        with self._lock:
            store_pages = {pid for pid, _ in self.store.page_docs()}
            states, missing, stale = [], set(), set()
            for spec in self.store_views():
                pages, vectors = self.store_counts(spec)
                view = self._views.get(spec)
                if view is None:
                    states.append(ViewState(spec, pages, vectors, None, None))
                    continue
                held = set(view.page_ids.tolist())
                missing |= store_pages - held
                stale |= held - store_pages
                first = view.stage.describe() if view.stage is not None else "none (exhaustive)"
                if view.codes is not None:
                    first += f"; middle stage: {view.codes.describe()}"
                states.append(ViewState(spec, pages, vectors, len(held), view.n_vectors, first))
            stale_views = [s for s in self._views if s not in set(self.store_views())]
        return IndexStatus(self.backend, self.location, self.store.model_id, states, self.document_names(missing),
                           len(stale), stale_views)

    def sync(self, progress: Progress | None = None) -> SyncReport:
        """Bring every loaded view in step with the store (views not loaded load fresh anyway)."""
        report = SyncReport()
        with self._lock:
            specs = set(self.store_views())
            order = [pid for pid, _ in self.store.page_docs()]
            wanted = set(order)
            shas = self._shas()
            for spec in list(self._views):
                if spec not in specs:
                    self._forget(spec)
                    report.removed_views.append(spec)
                    continue
                view = self._views[spec]
                # A document deleted and another added meanwhile (by another process) can reuse
                # the same ids: a changed sha256 means the pages held are not the stored ones.
                replaced = [d for d, sha in view.shas.items() if shas.get(d) not in (None, sha)]
                gone = np.flatnonzero(~np.isin(view.page_ids, np.fromiter(wanted, dtype=np.int64))
                                      | np.isin(view.doc_ids, np.array(replaced, dtype=np.int64)))
                try:
                    report.removed_pages += self._drop_positions(view, gone)
                    held = set(view.page_ids.tolist())
                    report.added_pages += self._append(spec, view, [p for p in order if p not in held])
                except Exception:  # noqa: BLE001 - same rule as add_document
                    log.exception("could not update the in-memory view %s; it reloads on next use", spec)
                    self._forget(spec)
        if progress:
            progress(1.0, str(report))
        return report
