"""Quantised views: a view's precision, the codes and scales it stores, and the float vectors that
rescoring rebuilds from the full embeddings."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..errors import NotFoundError
from ..quantise import ROTATED, QuantisedVectors, bytes_per_vector, packed_width
from .schema import FULL_VIEW, _array
from .sqlite_errors import translate_errors


@translate_errors
class QuantisedMixin:
    """Quantised views (a part of `Store`)."""

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
