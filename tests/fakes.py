"""A deterministic, model-free encoder for engine and store mechanics tests.

It turns each cell of an 8×8 grid over the page into a vector from the cell's mean colour and
position (through a fixed random projection), and each query word into a seeded random vector.
Retrieval quality is meaningless; shapes, geometry and bookkeeping are real.
"""

from __future__ import annotations

import hashlib

import numpy as np

from vdr_app.models.base import Encoder
from vdr_app.types import PageEmbedding, QueryEmbedding

GRID = 8


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class GridEncoder(Encoder):
    family = "fake-grid"
    kind = "visual"

    def __init__(self, model_id: str = "fake-grid", dim: int = 16, fail_on_page: int | None = None):
        self.model_id = model_id
        self.dim = dim
        self.fail_on_page = fail_on_page
        self._projection = np.random.default_rng(0).standard_normal((5, dim))
        self.pages_encoded = 0

    def encode_pages(self, pages, progress=None):
        out = []
        for i, page in enumerate(pages):
            if self.fail_on_page is not None and i == self.fail_on_page:
                raise RuntimeError("simulated encoder crash")
            img = np.asarray(page.image.convert("RGB").resize((GRID * 4, GRID * 4)), dtype=np.float32) / 255
            cells = img.reshape(GRID, 4, GRID, 4, 3).mean(axis=(1, 3))  # (rows, cols, 3)
            rows, cols = np.meshgrid(np.arange(GRID), np.arange(GRID), indexing="ij")
            feats = np.concatenate([cells, rows[..., None] / GRID, cols[..., None] / GRID], axis=-1)
            patches = _unit(feats.reshape(-1, 5) @ self._projection + 1e-3)
            boxes = np.stack(
                [cols.ravel() / GRID, rows.ravel() / GRID, (cols.ravel() + 1) / GRID, (rows.ravel() + 1) / GRID], 1
            )
            attention = 1.0 - cells.mean(-1).ravel()  # ink attracts attention
            extra = _unit(np.random.default_rng(1).standard_normal((2, self.dim)))
            out.append(PageEmbedding(patches=patches, boxes=boxes, attention=attention / attention.sum(),
                                     extra=extra, model_id=self.model_id))
            self.pages_encoded += 1
            if progress:
                progress((i + 1) / len(pages), f"encoded page {i + 1}/{len(pages)}")
        return out

    def encode_queries(self, queries):
        out = []
        for text in queries:
            words = text.lower().split()
            vecs = [
                np.random.default_rng(int(hashlib.md5(w.encode()).hexdigest()[:8], 16)).standard_normal(self.dim)
                for w in words
            ]
            out.append(QueryEmbedding(vectors=_unit(np.array(vecs)), tokens=words, text=text))
        return out
