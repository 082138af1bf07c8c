"""The search-index seam: what the engine asks of any index, and the reports it gets back.

SQLite (`vdr_app.store.Store`) is the system of record: documents, page images, full embeddings
and every view's vectors. A search index only mirrors the vectors of the full view and of the
stored views, keyed by page id, with each page's document id for filtering. The engine commits to
SQLite first and then tells the index; an index that missed a write (unreachable, crashed) is
brought back in step from the store by `sync`, which is incremental and idempotent.

Implementations: `memory.MemoryIndex` (in-process, the default) and `qdrant.QdrantIndex`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

from .. import reduce as reduce_lib
from .maxsim import _widen_into
from ..store import FULL_VIEW, Store
from ..types import Progress


def _widen(half: np.ndarray) -> np.ndarray:
    """float32 copy of float16 values, exactly, by integer ops (~8x faster than numpy's cast)."""
    out = np.empty(half.shape, dtype=np.float32)
    if half.size:
        _widen_into(np.ascontiguousarray(half).view(np.uint16), out, "float16")
    return out


@dataclass(frozen=True)
class ViewState:
    """One view in the store and in the index."""

    spec: str
    store_pages: int
    store_vectors: int
    index_pages: int | None  # None: not held right now (the memory index loads a view on first search)
    index_vectors: int | None
    first_stage: str | None = None  # two-stage search: what finds the candidates (None: not loaded)

    @property
    def in_step(self) -> bool:
        return self.index_pages is None or (
            self.index_pages == self.store_pages and self.index_vectors in (None, self.store_vectors)
        )


@dataclass
class IndexStatus:
    """Where the index stands against the store (CLI `index status`, the start-up check)."""

    backend: str
    location: str
    model: str | None
    views: list[ViewState] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # documents with pages missing from the index
    stale_pages: int = 0  # pages the index holds that the store no longer has
    stale_views: list[str] = field(default_factory=list)  # views the index holds that the store does not

    @property
    def in_step(self) -> bool:
        return (not self.pending and not self.stale_pages and not self.stale_views
                and all(v.in_step for v in self.views))

    def problem(self) -> str | None:
        """One line saying what is out of step, or None."""
        if self.in_step:
            return None
        parts = []
        if self.pending:
            shown = ", ".join(self.pending[:3]) + (f" and {len(self.pending) - 3} more" if len(self.pending) > 3 else "")
            parts.append(f"{len(self.pending)} document(s) pending ({shown})")
        if self.stale_pages:
            parts.append(f"{self.stale_pages} deleted page(s) still indexed")
        missing = [v.spec for v in self.views if not v.in_step]
        if missing:
            parts.append("views out of step: " + ", ".join(missing))
        if self.stale_views:
            parts.append("deleted views still indexed: " + ", ".join(self.stale_views))
        return (f"the {self.backend} index ({self.location}) is out of step with the store: "
                + "; ".join(parts) + ". Run `python -m vdr_app index sync`.")

    def as_dict(self) -> dict:
        data = asdict(self)
        data["in_step"] = self.in_step
        return data


@dataclass
class SyncReport:
    """What `sync` changed (all zero when the index was already in step)."""

    added_pages: int = 0
    removed_pages: int = 0
    added_views: list[str] = field(default_factory=list)
    removed_views: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added_pages or self.removed_pages or self.added_views or self.removed_views)

    def __str__(self) -> str:
        if not self.changed:
            return "the index was already in step with the store"
        parts = [f"{self.added_pages} page(s) indexed", f"{self.removed_pages} removed"]
        if self.added_views:
            parts.append("views built: " + ", ".join(self.added_views))
        if self.removed_views:
            parts.append("views dropped: " + ", ".join(self.removed_views))
        return "; ".join(parts)


class SearchIndex(ABC):
    """Top-k MaxSim over the full view and the stored views of one store.

    Page identity is the store's page id. Every method may raise `IndexUnavailableError` (the
    index cannot be reached or written); the store is never changed by this class.
    """

    backend = "?"

    def __init__(self, store: Store):
        self.store = store

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the index lives, for messages ("in-process", a URL, a folder)."""

    @abstractmethod
    def add_document(self, doc_id: int, progress: Progress | None = None) -> None:
        """Index a stored document's pages in the full view and every stored view."""

    @abstractmethod
    def remove_document(self, doc_id: int) -> None:
        """Drop a document's pages from every view (they may already be gone from the store)."""

    @abstractmethod
    def add_view(self, spec: str, progress: Progress | None = None) -> None:
        """Make a stored view searchable (replacing what the index held for that spec)."""

    @abstractmethod
    def remove_view(self, spec: str) -> None:
        """Forget a view."""

    @abstractmethod
    def top_k(self, spec: str, query: np.ndarray, k: int, doc_ids: Iterable[int] | None = None,
              rescore: int = 0) -> list[tuple[int, float]]:
        """The k best (page id, score) for a float32 (q, d) query over one view, best first.

        Args:
            doc_ids: only pages of these documents (None: every page).
            rescore: for a quantised view (`...@int8`, `...@binary`), how many of its best
                candidates (at least k) to re-score exactly with the float view's vectors;
                0 = the quantised scores as they are. Ignored for float views.
        """

    @abstractmethod
    def status(self) -> IndexStatus:
        """Pages and vectors per view in the store and in the index; what is pending or stale."""

    @abstractmethod
    def sync(self, progress: Progress | None = None) -> SyncReport:
        """Bring the index in step with the store: index what is missing, drop what the store no
        longer has. Incremental (only the difference moves) and idempotent. This is also what the
        engine calls when another process has written the store."""

    def close(self) -> None:
        """Release connections or folder locks."""

    # -- helpers for implementations ----------------------------------------------------------

    def store_views(self) -> list[str]:
        """The specs to mirror: the full view and every stored view."""
        return [FULL_VIEW, *self.store.view_specs()]

    def store_counts(self, spec: str) -> tuple[int, int]:
        counts = self.store.vector_counts(spec)
        return len(counts), int(counts.sum())

    def float_view_pages(self, spec: str, page_ids: np.ndarray | list[int]) -> list[np.ndarray]:
        """float32 (n_i, d) vectors of a view for some pages, rebuilt from the store's full
        embeddings and the view's groups (extra tokens last); empty for pages gone from the store."""
        inputs = self.store.rescore_inputs(spec, np.asarray(page_ids, dtype=np.int64).tolist())
        dim = self.store.dim or 0
        out = []
        for pid in np.asarray(page_ids, dtype=np.int64).tolist():
            if pid not in inputs:
                out.append(np.zeros((0, dim), np.float32))
                continue
            patches, extra, groups = (_widen(inputs[pid][0]), _widen(inputs[pid][1]), inputs[pid][2])
            vectors = reduce_lib.rebuild_vectors(patches, groups, spec)
            out.append(np.concatenate([vectors, extra]) if len(extra) else vectors)
        return out

    def document_names(self, page_ids: Iterable[int]) -> list[str]:
        """Names of the documents the given (stored) pages belong to, in document order."""
        wanted = set(page_ids)
        doc_ids = sorted({doc for pid, doc in self.store.page_docs() if pid in wanted})
        names = {d.id: d.name for d in self.store.list_documents()}
        return [f"{names[d]} (document {d})" for d in doc_ids if d in names]
