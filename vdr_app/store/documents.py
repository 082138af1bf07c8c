"""The SQLite store (sqlite-utils): documents, pages, full embeddings and reduced views.

Layout (schema version in `PRAGMA user_version`, upgraded by the ordered `MIGRATIONS`):

    meta        key -> value: model_id, dim (a store holds one model's vectors)
    documents   id, sha256 (unique: adding the same PDF twice is a no-op), name, n_pages, n_bytes, added_at
    pages       id, doc_id, page_number, width, height, image (JPEG), info (JSON)
    embeddings  page_id, n_patches, n_extra, dim, patches (float16 n×d), extra (float16 m×d)
    layouts     page_id, boxes (uint16 n×4, 0-1 scaled by 65535), cells (int16 n×3, NULL when
                `derive_cells(boxes)` gives them), attention (float32 n, or NULL)
    views       spec (canonical view spec), created_at, quant (NULL, "int8", "int4", "int2" or "binary"; v2)
    view_pages  spec, page_id, n_vectors, vectors (float16 k×d), groups (int32 n), info (JSON),
                scales (v2: float32 per vector of an int8, int4 or int2 view, else NULL)
    centrality  (v3) page_id, n_layers, values (float16 layers×n): each patch's in-degree
                centrality per decoder layer (what `sap` ranks by); no row for a page encoded
                before it was captured (`reencode` fills it)

Vectors are stored once, in float16, as raw little-endian BLOBs with their counts beside them.
A quantised view (`...@int8`, `...@binary`, vdr_app.quantise) stores instead the codes of all its
n_vectors rows, extra tokens included: int8 (n_vectors×d) plus the float32 scales, packed rotated
int4 / int2 codes (n_vectors×ceil(d/2) or ceil(d/4) bytes) plus the scales, or packed sign bits
(n_vectors×ceil(d/8) bytes). No float copy of such a view is kept: its float vectors
are rebuilt from the full embeddings and the groups (`rescore_inputs`).
Every multi-row write runs in one transaction (`Database.atomic`): a crash or error halfway
leaves the file as it was. The class is thread-safe (one connection behind a lock) because the web
app calls it from worker threads.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import sqlite_utils
from PIL import Image

from ..errors import ModelMismatchError, NotFoundError, StoreError
from ..quantise import QUANTISERS, ROTATED, QuantisedVectors, bytes_per_vector, packed_width
from ..types import PageEmbedding, PageImage, Reduction, derive_cells
from .sqlite_errors import ReadOnlyStoreError, StoreDamagedError, open_error, translate_errors

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
FULL_VIEW = "full"
_BOX_SCALE = 65535.0
_JPEG_QUALITY = 85


def _blob(array: np.ndarray, dtype) -> bytes:
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def _array(blob: bytes | None, dtype, shape) -> np.ndarray | None:
    if blob is None:
        return None
    return np.frombuffer(blob, dtype=dtype).reshape(shape)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _create_v1(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["documents"].create(
        {"id": int, "sha256": str, "name": str, "n_pages": int, "n_bytes": int, "added_at": str}, pk="id"
    )
    db["documents"].create_index(["sha256"], unique=True)
    db["pages"].create(
        {"id": int, "doc_id": int, "page_number": int, "width": int, "height": int, "image": bytes, "info": str},
        pk="id",
        foreign_keys=[("doc_id", "documents", "id")],
    )
    db["pages"].create_index(["doc_id", "page_number"], unique=True)
    # Vectors and per-patch layout live in separate tables so vector storage stays dense.
    db["embeddings"].create(
        {"page_id": int, "n_patches": int, "n_extra": int, "dim": int, "patches": bytes, "extra": bytes},
        pk="page_id",
        foreign_keys=[("page_id", "pages", "id")],
    )
    db["layouts"].create(
        {"page_id": int, "boxes": bytes, "cells": bytes, "attention": bytes},
        pk="page_id",
        foreign_keys=[("page_id", "pages", "id")],
    )
    db["views"].create({"spec": str, "created_at": str}, pk="spec")
    db["view_pages"].create(
        {"spec": str, "page_id": int, "n_vectors": int, "vectors": bytes, "groups": bytes, "info": str},
        pk=("spec", "page_id"),
        foreign_keys=[("spec", "views", "spec"), ("page_id", "pages", "id")],
    )
    db["view_pages"].create_index(["page_id"])


def _quantised_views_v2(db: sqlite_utils.Database) -> None:
    """Quantised views: the view's quantiser, and the int8 scales beside the codes."""
    db["views"].add_column("quant", str)
    db["view_pages"].add_column("scales", bytes)


def _centrality_v3(db: sqlite_utils.Database) -> None:
    """Per-layer patch centrality (SAP), in its own table: older pages simply have no row."""
    db["centrality"].create(
        {"page_id": int, "n_layers": int, "values": bytes}, pk="page_id", foreign_keys=[("page_id", "pages", "id")]
    )


# MIGRATIONS[i] upgrades a store from version i to i + 1.
MIGRATIONS = [_create_v1, _quantised_views_v2, _centrality_v3]


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


BUSY_TIMEOUT_S = 15.0  # how long a write waits for another process's write before "busy"


@translate_errors
class Store:
    """One SQLite file (or ":memory:") holding one model's page embeddings and views.

    Several processes may use one file (the app, CLI commands): writes take SQLite's write lock
    up front (BEGIN IMMEDIATE) and wait up to `busy_timeout` for it; `data_version()` tells a
    reader that another connection has committed. Every SQLite failure surfaces as one
    `StoreError` line saying what to do (store_errors.py).

    Args:
        path: SQLite file, created with its folder if missing, or ":memory:".
        read_only: open for reading only (also chosen when the file or its folder is not
            writable): search and browse work, writes are refused with one line.
        busy_timeout: seconds a write waits for another writer.
    """

    def __init__(self, path: str | Path = ":memory:", read_only: bool = False, busy_timeout: float = BUSY_TIMEOUT_S):
        self.path = str(path)
        self.busy_timeout = float(busy_timeout)
        self._lock = threading.RLock()
        memory = self.path == ":memory:"
        if not memory:
            _make_parent(Path(self.path))
        self.read_only = bool(read_only) or (not memory and not _writable(Path(self.path)))
        try:
            if self.read_only:
                conn = sqlite3.connect(_read_only_uri(Path(self.path)), uri=True, check_same_thread=False,
                                       timeout=busy_timeout)
            else:
                conn = sqlite3.connect(self.path, check_same_thread=False, timeout=busy_timeout)
            self.db = sqlite_utils.Database(conn)
            self._refuse_foreign()
            if not memory and not self.read_only and self._page_count() == 0:
                # A new file gives freed pages back to the disk (`_give_back_space`); only possible
                # before the first table: an older store switches with `compact`.
                self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            if not memory and not self.read_only and self.db.journal_mode != "wal":
                self.db.enable_wal()
            self._migrate()
        except sqlite3.Error as error:
            raise open_error(error, self.path) from error

    # -- schema ---------------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _refuse_foreign(self) -> None:
        """An SQLite file that is not a vdr_app store is left exactly as it is (never converted)."""
        if self.schema_version != 0:
            return
        tables = [r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        if tables:
            shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
            raise StoreError(
                f"{self.path} is an SQLite database but not a vdr_app store (it has the tables {shown}); "
                "it was left unchanged: give a new file with --store (or VDR_STORE)"
            )

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this vdr_app understands "
                f"({SCHEMA_VERSION}); upgrade vdr_app"
            )
        if version == SCHEMA_VERSION:
            return  # opening an up-to-date store writes nothing
        if self.read_only:
            raise ReadOnlyStoreError(f"{self.path} is read-only and not yet a vdr_app store: nothing can be read")
        with self._write():
            for step in MIGRATIONS[version:]:
                step(self.db)
            # PRAGMA user_version is transactional in SQLite, so it commits with the steps.
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction holding SQLite's write lock from the start (BEGIN IMMEDIATE).

        Taking the lock up front means the checks made inside it (which pages, which views)
        still hold at commit, also against other processes; a busy store is waited for up to
        the busy timeout instead of failing halfway.
        """
        if self.read_only:
            raise ReadOnlyStoreError(
                f"{self.path} is read-only: searching and browsing work, but adding or deleting needs a "
                "writable file (check its permissions, or copy it with `python -m vdr_app backup DEST`)"
            )
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self.db.conn.in_transaction:
                    self.db.conn.rollback()
                raise
            self.db.conn.commit()

    def data_version(self) -> int:
        """A number that changes whenever another connection (another process: the CLI, a second
        app) commits to this file; this connection's own writes do not change it."""
        with self._lock:
            return self.db.execute("PRAGMA data_version").fetchone()[0]

    # -- model binding ----------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    @property
    def model_id(self) -> str | None:
        """The model whose vectors this store holds, or None while empty of any."""
        return self._meta("model_id")

    @property
    def dim(self) -> int | None:
        value = self._meta("dim")
        return int(value) if value else None

    def check_model(self, model_id: str, dim: int | None = None) -> None:
        """Raise ModelMismatchError if the store holds another model's vectors."""
        stored = self.model_id
        if stored is not None and stored != model_id:
            raise ModelMismatchError(
                f"this store holds vectors of '{stored}', not '{model_id}': use the same model "
                f"(--model {stored}) or another store (--store PATH)"
            )
        if stored is not None and dim is not None and self.dim != dim:
            raise ModelMismatchError(f"this store holds {self.dim}-d vectors, the model gives {dim}-d")

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

    def pages_without_centrality(self, doc_id: int | None = None) -> int:
        """How many pages (of one document, or all) have no stored centrality (encoded before it)."""
        sql = "SELECT COUNT(*) FROM pages p LEFT JOIN centrality c ON c.page_id = p.id WHERE c.page_id IS NULL"
        with self._lock:
            if doc_id is None:
                return self.db.execute(sql).fetchone()[0]
            return self.db.execute(sql + " AND p.doc_id = ?", [doc_id]).fetchone()[0]

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

    # -- vectors for search -----------------------------------------------------------------------

    def load_vectors(self, spec: str = FULL_VIEW, page_ids: Iterable[int] | None = None) -> tuple[list[int], list[np.ndarray]]:
        """Every page's searchable vectors for one view, in index order (or only `page_ids`'s).

        Returns:
            (page_ids, vectors) where vectors[i] is float16 (n_i, d): the full view's patches
            followed by extra tokens, or a reduced view's vectors followed by the extra tokens.
            For a quantised view: the dequantised codes, float32 (±1 for binary); search uses
            `load_quantised` instead.
        """
        where, params = "", []
        if page_ids is not None:  # the search index loads one document's pages on add (vdr_app.index)
            wanted = sorted({int(i) for i in page_ids})
            if not wanted:
                return [], []
            if len(wanted) > 500:  # under SQLite's bound-parameter limit
                ids, vectors = [], []
                for start in range(0, len(wanted), 500):
                    chunk_ids, chunk_vectors = self.load_vectors(spec, wanted[start : start + 500])
                    ids += chunk_ids
                    vectors += chunk_vectors
                position = {pid: i for i, (pid, _) in enumerate(self.page_docs())}
                order = sorted(range(len(ids)), key=lambda i: position[ids[i]])
                return [ids[i] for i in order], [vectors[i] for i in order]
            where, params = f" AND p.id IN ({','.join('?' * len(wanted))})", wanted
        with self._lock:
            if spec == FULL_VIEW:
                rows = self.db.execute(
                    "SELECT e.page_id, e.n_patches, e.n_extra, e.dim, e.patches, e.extra FROM embeddings e "
                    f"JOIN pages p ON p.id = e.page_id WHERE 1{where} ORDER BY p.doc_id, p.page_number",
                    params,
                ).fetchall()
                ids = [r[0] for r in rows]
                vectors = [
                    np.concatenate([_array(r[4], "<f2", (r[1], r[3])), _array(r[5], "<f2", (r[2], r[3]))])
                    for r in rows
                ]
                return ids, vectors
            if self._view_quant(spec) is not None:
                ids, codes = self.load_quantised(spec, None if page_ids is None else wanted)
                return ids, [c.dequantise() for c in codes]
            rows = self.db.execute(
                "SELECT v.page_id, v.n_vectors, e.n_extra, e.dim, v.vectors, e.extra FROM view_pages v "
                "JOIN embeddings e ON e.page_id = v.page_id JOIN pages p ON p.id = v.page_id "
                f"WHERE v.spec = ?{where} ORDER BY p.doc_id, p.page_number",
                [spec, *params],
            ).fetchall()
        ids = [r[0] for r in rows]
        vectors = [
            np.concatenate([_array(r[4], "<f2", (r[1] - r[2], r[3])), _array(r[5], "<f2", (r[2], r[3]))])
            for r in rows
        ]
        return ids, vectors

    # -- views ------------------------------------------------------------------------------------

    def view_specs(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT spec FROM views ORDER BY created_at, spec").fetchall()]

    def has_view(self, spec: str) -> bool:
        return spec == FULL_VIEW or spec in self.view_specs()

    def _require_view(self, spec: str) -> None:
        if not self.db.execute("SELECT 1 FROM views WHERE spec = ?", [spec]).fetchone():
            raise NotFoundError(f"no view '{spec}' in this store (see `views`)")

    def add_view(
        self, spec: str, reductions: dict[int, Reduction], reduce_page: Callable[[int], Reduction] | None = None,
        quant: str | None = None,
    ) -> None:
        """Store a view: one Reduction per stored page (all pages, one transaction).

        Args:
            quant: "int8", "int4", "int2" or "binary" for a quantised view (every Reduction then carries its
                `quantised` codes of that kind), None for float16 vectors.
            reduce_page: computes the reduction of a page added after `reductions` was made (by
                another process, or an add racing this view add), inside the transaction; pages
                deleted meanwhile are skipped. Without it, a missing page is a ValueError.
        """
        if spec == FULL_VIEW:
            raise ValueError("'full' is the stored embeddings themselves, not a view to add")
        if quant is not None and quant not in QUANTISERS:
            raise ValueError(f"quant must be None or one of {QUANTISERS}, got {quant!r}")
        with self._write():
            page_ids = self.page_ids()
            missing = set(page_ids) - set(reductions)
            if missing and reduce_page is not None:
                reductions = {**reductions, **{page_id: reduce_page(page_id) for page_id in sorted(missing)}}
            elif missing:
                raise ValueError(f"view {spec}: reductions missing for {len(missing)} pages")
            current = set(page_ids)
            reductions = {page_id: r for page_id, r in reductions.items() if page_id in current}
            self.db["views"].insert({"spec": spec, "created_at": _now(), "quant": quant}, replace=True)
            self.db.execute("DELETE FROM view_pages WHERE spec = ?", [spec])
            for page_id, reduction in reductions.items():
                self._insert_view_page(spec, page_id, reduction, quant)

    def _insert_view_page(self, spec: str, page_id: int, reduction: Reduction, quant: str | None) -> None:
        codes = reduction.quantised
        kind = getattr(codes, "kind", None)
        if kind != quant:
            raise ValueError(f"view {spec} stores {quant or 'float16'} vectors, the reduction of page {page_id} "
                             f"holds {kind or 'float16'} ones")
        if codes is None:
            vectors, scales = _blob(reduction.vectors, "<f2"), None
        else:
            if codes.n != reduction.n_vectors:
                raise ValueError(f"view {spec}: {codes.n} codes for {reduction.n_vectors} vectors of page {page_id}")
            vectors = _blob(codes.codes, "<i1" if kind == "int8" else "u1")
            scales = None if codes.scales is None else _blob(codes.scales, "<f4")
        self.db["view_pages"].insert(
            {
                "spec": spec, "page_id": page_id, "n_vectors": reduction.n_vectors,
                "vectors": vectors, "groups": _blob(reduction.groups, "<i4"),
                "info": json.dumps(reduction.info, default=float), "scales": scales,
            },
            replace=True,
        )

    def _view_quant(self, spec: str) -> str | None:
        if spec == FULL_VIEW:
            return None
        row = self.db.execute("SELECT quant FROM views WHERE spec = ?", [spec]).fetchone()
        if row is None:
            raise NotFoundError(f"no view '{spec}' in this store (see `views`)")
        return row[0]

    def view_quant(self, spec: str) -> str | None:
        """A stored view's quantiser: None (float16), "int8", "int4", "int2" or "binary"."""
        with self._lock:
            return self._view_quant(spec)

    def bytes_per_vector(self, spec: str = FULL_VIEW) -> int:
        """Stored bytes of one vector of a view (vdr_app.quantise.bytes_per_vector)."""
        return bytes_per_vector(self.dim or 0, self.view_quant(spec))

    @staticmethod
    def _codes(kind: str, blob: bytes, scales: bytes | None, n: int, d: int) -> QuantisedVectors:
        if kind == "int8":
            return QuantisedVectors(kind, d, _array(blob, "<i1", (n, d)), _array(scales, "<f4", (n,)))
        if kind in ROTATED:
            return QuantisedVectors(kind, d, _array(blob, "u1", (n, packed_width(d, kind))), _array(scales, "<f4", (n,)))
        return QuantisedVectors(kind, d, _array(blob, "u1", (n, (d + 7) // 8)))

    def load_quantised(self, spec: str, page_ids: Iterable[int] | None = None
                       ) -> tuple[list[int], list[QuantisedVectors]]:
        """A quantised view's codes per page, in index order (or only `page_ids`'s): extra tokens
        included, exactly as stored."""
        kind = self.view_quant(spec)
        if kind is None:
            raise ValueError(f"view {spec} is not quantised")
        out_ids, out = [], []
        wanted = None if page_ids is None else sorted({int(i) for i in page_ids})
        chunks = [None] if wanted is None else [wanted[i : i + 500] for i in range(0, len(wanted), 500)]
        d = self.dim or 0
        for chunk in chunks:
            where, params = ("", []) if chunk is None else (f" AND p.id IN ({','.join('?' * len(chunk))})", chunk)
            with self._lock:
                rows = self.db.execute(
                    "SELECT v.page_id, v.n_vectors, v.vectors, v.scales FROM view_pages v "
                    "JOIN pages p ON p.id = v.page_id "
                    f"WHERE v.spec = ?{where} ORDER BY p.doc_id, p.page_number", [spec, *params]).fetchall()
            out_ids += [r[0] for r in rows]
            out += [self._codes(kind, r[2], r[3], r[1], d) for r in rows]
        if chunk is not None and len(chunks) > 1:
            position = {pid: i for i, (pid, _) in enumerate(self.page_docs())}
            order = sorted(range(len(out_ids)), key=lambda i: position[out_ids[i]])
            out_ids, out = [out_ids[i] for i in order], [out[i] for i in order]
        return out_ids, out

    def rescore_inputs(self, spec: str, page_ids: Iterable[int]
                       ) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """What rebuilds a view's float vectors for some pages: page id -> (patches float16 (n, d),
        extra float16 (m, d), groups int32 (n,)), read-only arrays straight from the stored full
        embeddings and the view's groups (pages no longer stored are left out). The caller widens
        them (numpy's own float16 -> float32 cast is slow; see vdr_app.index.maxsim)."""
        wanted = sorted({int(i) for i in page_ids})
        out = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            with self._lock:
                rows = self.db.execute(
                    "SELECT e.page_id, e.n_patches, e.n_extra, e.dim, e.patches, e.extra, v.groups FROM embeddings e "
                    "JOIN view_pages v ON v.page_id = e.page_id AND v.spec = ? "
                    f"WHERE e.page_id IN ({','.join('?' * len(chunk))})", [spec, *chunk]).fetchall()
            for pid, n, m, d, patches, extra, groups in rows:
                out[pid] = (_array(patches, "<f2", (n, d)), _array(extra, "<f2", (m, d)), _array(groups, "<i4", (n,)))
        return out

    def view_reduction(self, spec: str, page_id: int) -> Reduction:
        """A stored view of one page, with its groups (for heatmaps). For a quantised view,
        vectors and extra are the dequantised codes and `quantised` holds the codes."""
        with self._lock:
            row = self.db.execute(
                "SELECT v.n_vectors, v.vectors, v.groups, v.info, e.n_patches, e.n_extra, e.dim, e.extra, v.scales, "
                "w.quant FROM view_pages v JOIN embeddings e ON e.page_id = v.page_id JOIN views w ON w.spec = v.spec "
                "WHERE v.spec = ? AND v.page_id = ?",
                [spec, page_id],
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no view '{spec}' for page {page_id}")
        n_vectors, vectors, groups, info, n, m, d, extra, scales, quant = row
        if quant is not None:  # the dequantised codes stand for the vectors (and extra tokens)
            codes = self._codes(quant, vectors, scales, n_vectors, d)
            values = codes.dequantise()
            return Reduction(vectors=values[: n_vectors - m], groups=_array(groups, "<i4", (n,)).astype(np.int64),
                             extra=values[n_vectors - m :], info=json.loads(info or "{}"), quantised=codes)
        return Reduction(
            vectors=_array(vectors, "<f2", (n_vectors - m, d)).astype(np.float32),
            groups=_array(groups, "<i4", (n,)).astype(np.int64),
            extra=_array(extra, "<f2", (m, d)).astype(np.float32),
            info=json.loads(info or "{}"),
        )

    def delete_view(self, spec: str) -> None:
        with self._write():
            self._require_view(spec)
            self.db.execute("DELETE FROM view_pages WHERE spec = ?", [spec])
            self.db.execute("DELETE FROM views WHERE spec = ?", [spec])
        self._give_back_space()

    # -- accounting -------------------------------------------------------------------------------

    def vector_counts(self, spec: str = FULL_VIEW) -> np.ndarray:
        """int64 (N,): vectors stored per page for a view (extra tokens included), index order."""
        with self._lock:
            if spec == FULL_VIEW:
                sql = (
                    "SELECT e.n_patches + e.n_extra FROM embeddings e JOIN pages p ON p.id = e.page_id "
                    "ORDER BY p.doc_id, p.page_number"
                )
                rows = self.db.execute(sql).fetchall()
            else:
                self._require_view(spec)
                rows = self.db.execute(
                    "SELECT v.n_vectors FROM view_pages v JOIN pages p ON p.id = v.page_id WHERE v.spec = ? "
                    "ORDER BY p.doc_id, p.page_number",
                    [spec],
                ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def file_bytes(self) -> int:
        """Bytes of the SQLite file and its WAL (0 for an in-memory store)."""
        if self.path == ":memory:":
            return 0
        return sum(p.stat().st_size for p in (Path(self.path), Path(self.path + "-wal")) if p.exists())

    def _page_count(self) -> int:
        return self.db.execute("PRAGMA page_count").fetchone()[0]

    def reclaimable_bytes(self) -> int:
        """Bytes of free pages inside the file: what `compact` would give back to the disk."""
        with self._lock:
            free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
            return free * self.db.execute("PRAGMA page_size").fetchone()[0]

    def _give_back_space(self) -> None:
        """After a delete: on a store with incremental auto-vacuum, hand the freed pages back to
        the disk (the Lab adds and removes views by the dozen). Best effort: when another process
        holds the store the pages stay free inside the file until the next delete or `compact`."""
        if self.read_only or self.path == ":memory:":
            return
        with self._lock:
            try:
                if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                    return
                self.db.execute("PRAGMA incremental_vacuum").fetchall()
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # lets the file shrink now
            except sqlite3.OperationalError as error:
                log.info("freed pages of %s stay in the file for now: %s", self.path, error)

    def compact(self) -> tuple[int, int]:
        """Rebuild the file without its free pages (SQLite VACUUM) and switch it to incremental
        auto-vacuum, so later deletes give their space back by themselves. Needs the store to
        itself for a moment (other writers wait or get "busy") and free disk space about the size
        of the store. Returns (bytes before, bytes after), WAL included."""
        if self.read_only:
            raise ReadOnlyStoreError(f"{self.path} is read-only: it cannot be compacted")
        with self._lock:
            before = self.file_bytes()
            self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self.db.execute("VACUUM")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            return before, self.file_bytes()

    def compact_copy(self, destination: str | Path) -> Path:
        """Write a compact copy of the store (SQLite VACUUM INTO: no free pages) to a new file;
        works on a read-only store. A public-demo visitor's private copy of the sample is one."""
        target = Path(destination)
        if target.exists():
            raise StoreError(f"{target} already exists: a copy never overwrites")
        _make_parent(target)
        with self._lock:
            self.db.execute("VACUUM INTO ?", [str(target)])
        return target

    def integrity_ok(self) -> bool:
        with self._lock:
            return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def check(self) -> dict[str, list[str]]:
        """The schema against this version's, then SQLite's integrity check, table by table:
        {table: problems} for the missing, incomplete or damaged ones (empty when the store is
        sound). A table's indexes are checked with it."""
        damaged = self._schema_problems()
        with self._lock:
            tables = [r[0] for r in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()]
            for table in tables:
                try:
                    rows = [r[0] for r in self.db.execute(f"PRAGMA integrity_check('{table}')").fetchall()]
                except sqlite3.DatabaseError as error:
                    rows = [str(error)]
                if rows != ["ok"]:
                    damaged[table] = rows
            return damaged

    def _schema_problems(self) -> dict[str, list[str]]:
        """{table: problems} where the store lacks a table or column that schema SCHEMA_VERSION has."""
        expected = _expected_schema()
        with self._lock:
            version = self.schema_version
            found = {t: {r[1] for r in self.db.execute(f"PRAGMA table_info('{t}')")} for t in expected}
        problems: dict[str, list[str]] = {}
        if version != SCHEMA_VERSION:
            problems["user_version"] = [f"schema version {version}, expected {SCHEMA_VERSION}"]
        for table, columns in expected.items():
            if not found[table]:
                problems[table] = [f"table missing (schema version {SCHEMA_VERSION} has it)"]
            elif columns - found[table]:
                problems[table] = [f"column(s) missing: {', '.join(sorted(columns - found[table]))}"]
        return problems

    def backup(self, destination: str | Path, force: bool = False) -> Path:
        """Copy the store to a new file with SQLite's online backup (safe while others write),
        then check the copy (`PRAGMA integrity_check`): a damaged copy is deleted and the backup
        fails in one line, unless `force` (a damaged copy may still save some of the data).

        Returns:
            the file written (`destination`, or `destination/vdr.sqlite` for a folder).
        """
        target = Path(destination)
        if target.is_dir():
            target = target / Path(self.path).name
        if target.exists():
            raise StoreError(f"{target} already exists: give a new file name (a backup never overwrites)")
        _make_parent(target)
        staging = target.with_name(f".{target.name}.partial")
        try:
            destination_db = sqlite3.connect(str(staging))
            try:
                with self._lock:
                    self.db.conn.backup(destination_db)
                problem = _integrity_problem(destination_db)
            finally:
                destination_db.close()
            if problem and force:
                log.warning("the copy %s is damaged like its source (%s); written because of --force", target, problem)
            elif problem:
                raise StoreDamagedError(
                    f"{self.path} is damaged ({problem}), so no backup was written: run `python -m vdr_app check` "
                    "to see which part; `backup --force` copies it anyway"
                )
            os.replace(staging, target)
        finally:
            staging.unlink(missing_ok=True)
        return target


_EXPECTED_SCHEMA: dict[str, set[str]] = {}


def _expected_schema() -> dict[str, set[str]]:
    """{table: columns} of a new store, made by running MIGRATIONS on an empty in-memory database."""
    if not _EXPECTED_SCHEMA:
        db = sqlite_utils.Database(memory=True)
        for step in MIGRATIONS:
            step(db)
        _EXPECTED_SCHEMA.update({t.name: {c.name for c in t.columns} for t in db.tables})
        db.close()
    return _EXPECTED_SCHEMA


def _integrity_problem(conn: sqlite3.Connection) -> str | None:
    """SQLite's first complaint about a database (None when the integrity check passes)."""
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check(5)").fetchall()]
    except sqlite3.DatabaseError as error:
        return str(error)
    return None if rows == ["ok"] else rows[0]


def _make_parent(path: Path) -> None:
    """Create the folder of a store file; one line when a part of it is a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in [path.parent, *path.parent.parents] if p.is_file()), path.parent)
        raise StoreError(f"cannot put the store at {path}: {blocking} is a file, not a folder") from None
    except OSError as error:
        raise StoreError(f"cannot create the folder of the store {path}: {error.strerror}") from None


def _read_only_uri(path: Path) -> str:
    """The URI that opens `path` for reading only.

    A WAL store needs its `-shm` file beside it even to be read; where the folder cannot be
    written (a read-only mount, a folder of another user) SQLite could not create it and every
    read would fail with "unable to open". `immutable=1` tells SQLite that nobody writes the file,
    so it reads it without `-shm` or locks. A `-wal` left beside such a file is not read (SQLite
    folds it in the next time the store is opened writable), hence the warning.
    """
    uri = f"{path.resolve().as_uri()}?mode=ro"
    if os.access(path.parent, os.W_OK):
        return uri
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        log.warning("%s is read-only and has an unmerged %s: its latest changes are not seen", path, wal.name)
    return uri + "&immutable=1"


def _writable(path: Path) -> bool:
    """Whether SQLite can write the file (and its journal beside it)."""
    if path.exists():
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    return os.access(path.parent, os.W_OK)
