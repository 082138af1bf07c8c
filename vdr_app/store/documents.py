"""Documents and their pages: adding a PDF's pages in one transaction, finding, listing and deleting
documents, page rows and page images."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from ..errors import NotFoundError
from ..types import PageEmbedding, PageImage, Reduction, derive_cells
from .schema import _BOX_SCALE, _JPEG_QUALITY, _blob, _now
from .sqlite_errors import translate_errors


@dataclass(frozen=True)
class DocumentRow:
    """A stored document and what it costs."""

    id: int
    name: str
    sha256: str
    n_pages: int
    n_bytes: int
    added_at: str
    n_vectors: int
    vector_bytes: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PageRow:
    """A stored page without its image or vectors."""

    id: int
    doc_id: int
    doc_name: str
    page_number: int
    width: int
    height: int
    info: dict


@dataclass(frozen=True)
class AddResult:
    """What `Store.add_document` did."""

    doc_id: int
    added: bool  # False when the same bytes were already stored
    n_pages: int
    # Set by the engine when the document is stored but the search index could not take it: it is
    # pending until `python -m vdr_app index sync` (vdr_app.index).
    index_error: str | None = None


@translate_errors
class DocumentsMixin:
    """Documents and pages (a part of `Store`)."""

    # -- documents --------------------------------------------------------------------------------

    def find_document(self, sha256: str) -> int | None:
        row = self.db.execute("SELECT id FROM documents WHERE sha256 = ?", [sha256]).fetchone()
        return row[0] if row else None

    def add_document(
        self,
        name: str,
        sha256: str,
        n_bytes: int,
        model_id: str,
        pages: list[tuple[PageImage, PageEmbedding]],
        views: dict[str, list[Reduction]] | None = None,
        reduce_view: Callable[[str], list[Reduction]] | None = None,
    ) -> AddResult:
        """Add a document, its pages, their full embeddings and their reductions for every view.

        All of it is written in one transaction. If `sha256` is already stored nothing changes.

        Args:
            name: file name shown to users.
            sha256: hex digest of the PDF bytes.
            n_bytes: size of the PDF.
            model_id: encoder that produced the embeddings (checked against the store).
            pages: (image, embedding) per page, in page order.
            views: for each existing view spec, one Reduction per page (same order). Every stored
                view must be given, so that views never miss a page.
            reduce_view: computes the reductions of a view stored after `views` was made (by
                another process, or a view add racing this add): called inside the transaction,
                so the document lands in every view. Views given but deleted meanwhile are skipped.
        """
        if not pages:
            raise ValueError(f"{name}: no pages to add")
        dim = pages[0][1].dim
        views = dict(views or {})
        with self._write():
            self.check_model(model_id, dim)
            existing = self.find_document(sha256)
            if existing is not None:
                return AddResult(doc_id=existing, added=False, n_pages=len(pages))
            stored = self.view_specs()
            if reduce_view is not None:
                views = {spec: views[spec] if spec in views else reduce_view(spec) for spec in stored}
            if set(views) != set(stored):
                raise ValueError(f"reductions given for views {sorted(views)}, stored views are {stored}")
            if self.model_id is None:
                self.db["meta"].insert_all(
                    [{"key": "model_id", "value": model_id}, {"key": "dim", "value": str(dim)}]
                )
            doc_id = self.db["documents"].insert(
                {"sha256": sha256, "name": name, "n_pages": len(pages), "n_bytes": n_bytes, "added_at": _now()}
            ).last_pk
            quants = {spec: self._view_quant(spec) for spec in views}
            for index, (image, embedding) in enumerate(pages):
                page_id = self._insert_page(doc_id, image, embedding)
                for spec, reductions in views.items():
                    self._insert_view_page(spec, page_id, reductions[index], quants[spec])
        return AddResult(doc_id=doc_id, added=True, n_pages=len(pages))

    def _insert_page(self, doc_id: int, page: PageImage, emb: PageEmbedding) -> int:
        buffer = io.BytesIO()
        page.image.convert("RGB").save(buffer, format="JPEG", quality=_JPEG_QUALITY)
        width, height = page.image.size
        page_id = self.db["pages"].insert(
            {
                "doc_id": doc_id, "page_number": page.page_number, "width": width, "height": height,
                "image": buffer.getvalue(), "info": json.dumps(emb.info),
            }
        ).last_pk
        self.db["embeddings"].insert(
            {
                "page_id": page_id, "n_patches": emb.n_patches, "n_extra": len(emb.extra), "dim": emb.dim,
                "patches": _blob(emb.patches, "<f2"), "extra": _blob(emb.extra, "<f2"),
            }
        )
        boxes = np.clip(np.round(emb.boxes * _BOX_SCALE), 0, _BOX_SCALE).astype("<u2")
        derivable = np.array_equal(derive_cells(boxes / _BOX_SCALE), emb.cells)
        self.db["layouts"].insert(
            {
                "page_id": page_id, "boxes": boxes.tobytes(),
                "cells": None if derivable else _blob(emb.cells, "<i2"),
                "attention": None if emb.attention is None else _blob(emb.attention, "<f4"),
            }
        )
        self._write_centrality(page_id, emb)
        return page_id

    def delete_document(self, doc_id: int) -> None:
        """Delete a document with its pages, embeddings and view rows (one transaction)."""
        with self._write():
            if not self.db.execute("SELECT 1 FROM documents WHERE id = ?", [doc_id]).fetchone():
                raise NotFoundError(f"no document with id {doc_id}")
            pages = "SELECT id FROM pages WHERE doc_id = ?"
            self.db.execute(f"DELETE FROM view_pages WHERE page_id IN ({pages})", [doc_id])
            self.db.execute(f"DELETE FROM embeddings WHERE page_id IN ({pages})", [doc_id])
            self.db.execute(f"DELETE FROM layouts WHERE page_id IN ({pages})", [doc_id])
            self.db.execute(f"DELETE FROM centrality WHERE page_id IN ({pages})", [doc_id])
            self.db.execute("DELETE FROM pages WHERE doc_id = ?", [doc_id])
            self.db.execute("DELETE FROM documents WHERE id = ?", [doc_id])
        self._give_back_space()

    def resolve_document(self, ref: str | int) -> int:
        """A document id from an id, a file name or a sha256 prefix (at least 8 characters)."""
        text = str(ref).strip()
        with self._lock:
            if text.isdigit() and self.db.execute("SELECT 1 FROM documents WHERE id = ?", [int(text)]).fetchone():
                return int(text)
            rows = self.db.execute("SELECT id FROM documents WHERE name = ?", [text]).fetchall()
            if not rows and len(text) >= 8:
                rows = self.db.execute("SELECT id FROM documents WHERE sha256 LIKE ?", [text + "%"]).fetchall()
        if len(rows) == 1:
            return rows[0][0]
        if len(rows) > 1:
            raise NotFoundError(f"'{text}' matches {len(rows)} documents; use the document id")
        raise NotFoundError(f"no document '{text}' (give an id, a file name or a sha256 prefix; see `list`)")

    def list_documents(self) -> list[DocumentRow]:
        sql = """
            SELECT d.id, d.name, d.sha256, d.n_pages, d.n_bytes, d.added_at,
                   COALESCE(SUM(e.n_patches + e.n_extra), 0), COALESCE(SUM((e.n_patches + e.n_extra) * e.dim * 2), 0)
            FROM documents d LEFT JOIN pages p ON p.doc_id = d.id LEFT JOIN embeddings e ON e.page_id = p.id
            GROUP BY d.id ORDER BY d.id
        """
        with self._lock:
            return [DocumentRow(*row) for row in self.db.execute(sql).fetchall()]

    # -- pages ------------------------------------------------------------------------------------

    def page_ids(self) -> list[int]:
        """Every page id, in document then page order (the order of search indexes)."""
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT id FROM pages ORDER BY doc_id, page_number").fetchall()]

    def document_shas(self) -> dict[int, str]:
        """document id -> sha256, for every document (cheap: no join over the embeddings)."""
        with self._lock:
            return dict(self.db.execute("SELECT id, sha256 FROM documents").fetchall())

    def page_docs(self) -> list[tuple[int, int]]:
        """(page id, document id) of every page, in index order (what a search index filters on)."""
        with self._lock:
            return [tuple(r) for r in self.db.execute("SELECT id, doc_id FROM pages ORDER BY doc_id, page_number")]

    def page_rows(self, page_ids: Iterable[int] | None = None) -> list[PageRow]:
        sql = (
            "SELECT p.id, p.doc_id, d.name, p.page_number, p.width, p.height, p.info "
            "FROM pages p JOIN documents d ON d.id = p.doc_id"
        )
        with self._lock:
            if page_ids is None:
                rows = self.db.execute(sql + " ORDER BY p.doc_id, p.page_number").fetchall()
            else:
                # Only the pages asked for: search calls this with its top k on every query.
                page_ids = [int(i) for i in page_ids]
                wanted = sorted(set(page_ids))
                rows = []
                for start in range(0, len(wanted), 500):  # under SQLite's bound-parameter limit
                    chunk = wanted[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows += self.db.execute(f"{sql} WHERE p.id IN ({marks})", chunk).fetchall()
        by_id = {r[0]: PageRow(*r[:6], json.loads(r[6] or "{}")) for r in rows}
        if page_ids is None:
            return list(by_id.values())
        return [by_id[i] for i in page_ids if i in by_id]  # a page deleted meanwhile is left out

    def page_rows_existing(self, page_ids: Iterable[int]) -> list[PageRow]:
        """Like `page_rows(page_ids)` but skips ids no longer stored (a search index may lag)."""
        page_ids = [int(i) for i in page_ids]
        with self._lock:
            present = set()
            for start in range(0, len(page_ids), 500):
                chunk = page_ids[start : start + 500]
                present |= {r[0] for r in self.db.execute(
                    f"SELECT id FROM pages WHERE id IN ({','.join('?' * len(chunk))})", chunk)}
        return self.page_rows([i for i in page_ids if i in present])

    def page_image(self, page_id: int) -> Image.Image:
        return Image.open(io.BytesIO(self.page_jpeg(page_id))).convert("RGB")

    def page_jpeg(self, page_id: int) -> bytes:
        """The page as rendered and stored (JPEG bytes at the store's full resolution)."""
        with self._lock:
            row = self.db.execute("SELECT image FROM pages WHERE id = ?", [page_id]).fetchone()
        if row is None:
            raise NotFoundError(f"no page with id {page_id}")
        return row[0]
