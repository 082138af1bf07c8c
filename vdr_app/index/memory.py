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
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .maxsim import MaxSimIndex, top_k_of
from .maxsim_quantised import QuantisedMaxSimIndex
from ..store import FULL_VIEW, Store
from ..types import Progress
from .base import IndexStatus, SearchIndex, SyncReport, ViewState

log = logging.getLogger(__name__)


@dataclass
class _View:
    page_ids: np.ndarray  # int64 (N,): page id at each index position
    doc_ids: np.ndarray  # int64 (N,): its document
    index: MaxSimIndex | QuantisedMaxSimIndex | None  # None while the view has no pages
    shas: dict  # document id -> sha256 of what is held (ids are reused after deletes: see sync)


class MemoryIndex(SearchIndex):
    """MaxSim by brute force over packed half-precision vectors (see `vdr_app.index.maxsim`).

    Args:
        store: the store to mirror.
        dtype: storage precision of the in-RAM copy ("bfloat16", the fast default, or "float16").
    """

    backend = "memory"

    def __init__(self, store: Store, dtype: str = "bfloat16"):
        super().__init__(store)
        self.dtype = dtype
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

    def _load(self, spec: str) -> _View:
        view = self._views.get(spec)
        if view is None:
            page_ids, vectors = self._read(spec)
            index = self._new_index(spec, vectors) if page_ids else None
            view = _View(np.array(page_ids, dtype=np.int64), self._doc_of(page_ids), index, self._shas())
            self._views[spec] = view
        return view

    def _append(self, spec: str, view: _View, page_ids: list[int]) -> int:
        ids, vectors = self._read(spec, page_ids)
        if not ids:
            return 0
        if view.index is None:
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
                    self._views.pop(spec, None)

    def remove_document(self, doc_id: int) -> None:
        with self._lock:
            for view in self._views.values():
                self._drop_positions(view, np.flatnonzero(view.doc_ids == doc_id))
                view.shas.pop(doc_id, None)

    def add_view(self, spec: str, progress: Progress | None = None) -> None:
        with self._lock:
            self._views.pop(spec, None)  # (re)loaded from the store on its first search

    def remove_view(self, spec: str) -> None:
        with self._lock:
            self._views.pop(spec, None)

    # -- search ---------------------------------------------------------------------------------

    def top_k(self, spec: str, query: np.ndarray, k: int, doc_ids: Iterable[int] | None = None,
              rescore: int = 0) -> list[tuple[int, float]]:
        with self._lock:
            view = self._load(spec)
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
                n_vectors = view.index.n_vectors if view.index is not None else 0
                states.append(ViewState(spec, pages, vectors, len(held), n_vectors))
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
                    self._views.pop(spec)
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
                    self._views.pop(spec, None)
        if progress:
            progress(1.0, str(report))
        return report
