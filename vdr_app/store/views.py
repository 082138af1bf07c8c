"""Reduced views: each view's vectors and groups per page, written, read for search and deleted."""

from __future__ import annotations

import json
from typing import Callable, Iterable

import numpy as np

from ..errors import NotFoundError
from ..quantise import QUANTISERS
from ..types import Reduction
from .schema import FULL_VIEW, _array, _blob, _now
from .sqlite_errors import translate_errors


_SAP_WINDOW = "sap_window:"  # meta key prefix, followed by the model id


@translate_errors
class ViewsMixin:
    """Views (a part of `Store`)."""

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

    # -- SAP's calibrated window --------------------------------------------------------------------

    def sap_window(self, model_id: str) -> dict | None:
        """The SAP layer window `record_sap_window` stored for a model ({"layers": "4-5", "n_layers": 6,
        ...}), or None."""
        with self._lock:
            value = self._meta(_SAP_WINDOW + model_id)
        return None if value is None else json.loads(value)

    def record_sap_window(self, model_id: str, record: dict, renames: dict[str, str]) -> None:
        """Store a model's SAP window and rename views in the same transaction.

        Args:
            record: JSON-able, at least {"layers": "a-b", "n_layers": L}.
            renames: stored view -> the name it takes (a view whose new name is already stored is
                deleted instead: the two hold the same rows).
        """
        with self._write():
            stored = set(self.view_specs())
            for old, new in renames.items():
                if old not in stored:
                    continue
                if new in stored:
                    self.db.execute("DELETE FROM view_pages WHERE spec = ?", [old])
                    self.db.execute("DELETE FROM views WHERE spec = ?", [old])
                    continue
                # new row first, then the pages, then the old row: view_pages always names a stored view
                self.db.execute("INSERT INTO views (spec, created_at, quant) SELECT ?, created_at, quant FROM views "
                                "WHERE spec = ?", [new, old])
                rows = self.db.execute("SELECT page_id, info FROM view_pages WHERE spec = ?", [old]).fetchall()
                self.db.execute("UPDATE view_pages SET spec = ? WHERE spec = ?", [new, old])
                for page_id, info in rows:  # each page's reduction info names its view
                    info = json.loads(info) if info else {}
                    if info.get("spec") == old:
                        info["spec"] = new
                        self.db.execute("UPDATE view_pages SET info = ? WHERE spec = ? AND page_id = ?",
                                        [json.dumps(info), new, page_id])
                self.db.execute("DELETE FROM views WHERE spec = ?", [old])
                stored = (stored - {old}) | {new}
            self.db["meta"].insert({"key": _SAP_WINDOW + model_id, "value": json.dumps(record)}, replace=True)

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
