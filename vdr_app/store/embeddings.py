"""A page's full embedding and the signals stored beside it (layout, attention, per-layer
centrality): read back, replaced after a re-encode."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from ..errors import NotFoundError
from ..types import PageEmbedding, Reduction, derive_cells
from .schema import _BOX_SCALE, _array, _blob
from .sqlite_errors import translate_errors


@translate_errors
class EmbeddingsMixin:
    """Full embeddings and their signals (a part of `Store`)."""

    def _write_centrality(self, page_id: int, emb: PageEmbedding) -> None:
        self.db.execute("DELETE FROM centrality WHERE page_id = ?", [page_id])
        if emb.centrality is not None:
            self.db["centrality"].insert(
                {"page_id": page_id, "n_layers": emb.centrality.shape[0], "values": _blob(emb.centrality, "<f2")}
            )

    def replace_embeddings(
        self, doc_id: int, model_id: str, embeddings: list[PageEmbedding],
        reduce_view: Callable[[str], list[Reduction]],
    ) -> list[int]:
        """Swap a stored document's page embeddings (and every view's rows of them) for new ones.

        What `reencode` writes: the same PDF encoded again (e.g. to capture a signal older pages
        lack). Page ids, images and the document row stay; everything derived from the encoder is
        replaced, all in one transaction, so a failure leaves the document as it was.

        Args:
            doc_id: the stored document.
            model_id: the encoder that made `embeddings` (must be the store's model).
            embeddings: one per stored page, in page order.
            reduce_view: the reductions of `embeddings` for a stored view spec (called inside the
                transaction, for every view stored at that moment).

        Returns:
            the document's page ids, in page order.
        """
        with self._write():
            self.check_model(model_id, embeddings[0].dim if embeddings else None)
            page_ids = [r[0] for r in self.db.execute(
                "SELECT id FROM pages WHERE doc_id = ? ORDER BY page_number", [doc_id]).fetchall()]
            if not page_ids:
                raise NotFoundError(f"no document with id {doc_id}")
            if len(page_ids) != len(embeddings):
                raise ValueError(f"document {doc_id} has {len(page_ids)} pages, {len(embeddings)} embeddings given")
            views = {spec: reduce_view(spec) for spec in self.view_specs()}
            quants = {spec: self._view_quant(spec) for spec in views}
            for index, (page_id, emb) in enumerate(zip(page_ids, embeddings)):
                self.db.execute("UPDATE pages SET info = ? WHERE id = ?", [json.dumps(emb.info), page_id])
                self.db["embeddings"].update(page_id, {
                    "n_patches": emb.n_patches, "n_extra": len(emb.extra), "dim": emb.dim,
                    "patches": _blob(emb.patches, "<f2"), "extra": _blob(emb.extra, "<f2"),
                })
                boxes = np.clip(np.round(emb.boxes * _BOX_SCALE), 0, _BOX_SCALE).astype("<u2")
                derivable = np.array_equal(derive_cells(boxes / _BOX_SCALE), emb.cells)
                self.db["layouts"].update(page_id, {
                    "boxes": boxes.tobytes(), "cells": None if derivable else _blob(emb.cells, "<i2"),
                    "attention": None if emb.attention is None else _blob(emb.attention, "<f4"),
                })
                self._write_centrality(page_id, emb)
                for spec, reductions in views.items():
                    self.db.execute("DELETE FROM view_pages WHERE spec = ? AND page_id = ?", [spec, page_id])
                    self._insert_view_page(spec, page_id, reductions[index], quants[spec])
        return page_ids

    def centrality_layers(self) -> int | None:
        """The decoder layers of the stored centrality (one model per store), or None if no page has any."""
        with self._lock:
            row = self.db.execute("SELECT n_layers FROM centrality LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def pages_without_centrality(self, doc_id: int | None = None) -> int:
        """How many pages (of one document, or all) have no stored centrality (encoded before it)."""
        sql = "SELECT COUNT(*) FROM pages p LEFT JOIN centrality c ON c.page_id = p.id WHERE c.page_id IS NULL"
        with self._lock:
            if doc_id is None:
                return self.db.execute(sql).fetchone()[0]
            return self.db.execute(sql + " AND p.doc_id = ?", [doc_id]).fetchone()[0]

    def page_embedding(self, page_id: int) -> PageEmbedding:
        """The full embedding of one page, as stored (float16 values, returned as float32)."""
        with self._lock:
            row = self.db.execute(
                "SELECT e.n_patches, e.n_extra, e.dim, e.patches, e.extra, l.boxes, l.cells, l.attention, "
                "c.n_layers, c.\"values\" "
                "FROM embeddings e JOIN layouts l ON l.page_id = e.page_id "
                "LEFT JOIN centrality c ON c.page_id = e.page_id WHERE e.page_id = ?",
                [page_id],
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no embedding for page {page_id}")
        return self._embedding_from_row(row)

    def _embedding_from_row(self, row) -> PageEmbedding:
        n, m, d, patches, extra, boxes, cells, attention, n_layers, centrality = row
        return PageEmbedding(
            patches=_array(patches, "<f2", (n, d)).astype(np.float32),
            extra=_array(extra, "<f2", (m, d)).astype(np.float32),
            boxes=_array(boxes, "<u2", (n, 4)).astype(np.float32) / _BOX_SCALE,
            cells=None if cells is None else _array(cells, "<i2", (n, 3)),
            attention=None if attention is None else _array(attention, "<f4", (n,)).copy(),
            centrality=None if centrality is None else _array(centrality, "<f2", (n_layers, n)).astype(np.float32),
            model_id=self.model_id or "",
        )

    def iter_page_embeddings(self, page_ids: Iterable[int] | None = None) -> Iterator[tuple[int, PageEmbedding]]:
        """(page_id, PageEmbedding) for the given pages, or all pages in index order."""
        for page_id in self.page_ids() if page_ids is None else page_ids:
            yield page_id, self.page_embedding(page_id)
